//! The Redis broker: cross-instance fan-out over Redis pub/sub, on the `redis` crate (a
//! multiplexed connection that pipelines PUBLISH, a dedicated pub/sub connection that
//! SUBSCRIBEs; explicit timeouts on both).
//!
//! * Publishing never blocks a request: events go into a bounded queue drained by a publisher
//!   task; while Redis is unreachable they are dropped (and counted), and the threads they
//!   concerned are announced for re-reading once Redis is back.
//! * The subscriber reconnects with capped, jittered backoff and resubscribes; after any gap the
//!   instance re-reads its subscribed threads from the database, because notifications sent
//!   during the gap are lost by Redis and the database is the truth.
//! * Every event carries the instance id; an instance ignores its own echoes.
//! * Sharded fan-out (`broker.sharding = "on"`, the default): a thread's messages and agent
//!   stream events go on the thread's own channel (`<channel>:t:<thread id>`), which an instance
//!   subscribes to only while a socket here follows the thread (plus a linger), so an instance
//!   receives the traffic of the threads it serves, not the fleet's. Instance-wide events
//!   (revocations, membership, stream commands, resync hints) stay on the shared channel.
//!   A first follower waits for the SUBSCRIBE to be acknowledged before reading the database,
//!   so what it reads and what arrives live leave no gap.

use std::{
    collections::HashSet,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU8, Ordering},
    },
    time::Duration,
};

use futures_util::StreamExt;
use redis::{AsyncConnectionConfig, aio::MultiplexedConnection};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{
    Broker, BrokerState, Event,
    broker::{Following, Inbound},
    interest::Interest,
};
use crate::{db::manager::backoff_delay, metrics::Metrics, settings::Sharding};

/// Where Redis is, and the pub/sub channel.
#[derive(Debug, Clone)]
pub struct RedisTarget {
    pub client: redis::Client,
    /// The pub/sub channel.
    pub channel: String,
}

impl RedisTarget {
    /// Parse `redis://[user:password@]host[:port][/db]`.
    pub fn parse(url: &str) -> anyhow::Result<RedisTarget> {
        if !url.starts_with("redis://") {
            anyhow::bail!("EMERGENCE_BROKER_URL must start with redis:// (TLS is not supported)");
        }
        Ok(RedisTarget {
            client: redis::Client::open(url)?,
            channel: "emergence:events".into(),
        })
    }

    /// A connection for commands (PUBLISH), within `timeout`.
    async fn commands(&self, timeout: Duration) -> redis::RedisResult<MultiplexedConnection> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout));
        self.client
            .get_multiplexed_async_connection_with_config(&config)
            .await
    }

    /// A subscribed pub/sub connection, within `timeout`.
    async fn subscribed(
        &self,
        timeout: Duration,
    ) -> anyhow::Result<(redis::aio::PubSubSink, redis::aio::PubSubStream)> {
        let connect = async {
            let (mut sink, stream) = self.client.get_async_pubsub().await?.split();
            sink.subscribe(&self.channel).await?;
            Ok::<_, redis::RedisError>((sink, stream))
        };
        Ok(tokio::time::timeout(timeout, connect)
            .await
            .map_err(|_| anyhow::anyhow!("connecting to Redis timed out"))??)
    }
}

#[derive(Serialize, Deserialize)]
struct Envelope {
    origin: String,
    event: Event,
}

/// Threads to re-read after a gap (published by an instance whose publisher was cut off).
#[derive(Serialize, Deserialize)]
struct ResyncHint {
    origin: String,
    resync: Vec<String>,
}

const UP: u8 = 1;
const DOWN: u8 = 2;

/// Fan-out between instances over Redis pub/sub.
pub struct RedisBroker {
    instance: String,
    sharding: Sharding,
    /// Events to publish, with the thread whose channel carries them (sharded fan-out).
    queue: mpsc::Sender<(Option<String>, Vec<u8>)>,
    /// Threads followed here, and the subscriber's orders to (un)subscribe their channels.
    interest: Arc<Interest>,
    orders: mpsc::UnboundedSender<Order>,
    state: Arc<AtomicU8>,
    metrics: Arc<Metrics>,
    /// What the other instances send, for realtime to apply.
    inbound: mpsc::UnboundedSender<Inbound>,
    /// Threads whose events were dropped while Redis was unreachable.
    dropped_threads: Arc<Mutex<HashSet<String>>>,
}

const QUEUE: usize = 65_536;
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a thread stays subscribed after its last local socket left.
const LINGER: Duration = Duration::from_secs(30);
/// The longest a first follower waits for its SUBSCRIBE (a broker gap is repaired by the
/// resync that follows the reconnection).
const FOLLOW_WAIT: Duration = Duration::from_secs(2);

/// What the subscriber task must change in its subscriptions.
enum Order {
    Subscribe(String),
    Unsubscribe(String),
}

/// The channel of a thread's events.
fn thread_channel(base: &str, thread: &str) -> String {
    format!("{base}:t:{thread}")
}

/// The thread whose channel carries `event` under sharded fan-out; `None`: the shared channel.
/// Membership events stay on the shared channel: every instance must learn a new member and
/// forget the membership it may have cached (removal, deletion), following the thread or not;
/// and notices reach the members' sockets wherever they are.
fn channel_thread(event: &Event) -> Option<&str> {
    match event {
        Event::MemberAdded { .. }
        | Event::MemberRemoved { .. }
        | Event::ThreadDeleted { .. }
        | Event::Notice { .. }
        | Event::ToUser { .. } => None,
        Event::Message { .. }
        | Event::ThreadChanged { .. }
        | Event::MembersChanged { .. }
        | Event::Document { .. }
        | Event::Stream(_)
        | Event::Revoked { .. } => event.thread(),
    }
}

/// The thread the other instances must re-read from the database when `event` is lost: only
/// what the database holds and a re-read delivers (messages, and a new member's thread).
fn resync_thread(event: &Event) -> Option<&str> {
    match event {
        Event::Message { .. } | Event::MemberAdded { .. } => event.thread(),
        _ => None,
    }
}

impl RedisBroker {
    /// Start publishing and subscribing; what arrives from the other instances comes out of
    /// the returned receiver.
    pub fn start(
        target: RedisTarget,
        sharding: Sharding,
        metrics: Arc<Metrics>,
        stop: CancellationToken,
    ) -> (Arc<RedisBroker>, mpsc::UnboundedReceiver<Inbound>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let (inbound, inbound_rx) = mpsc::unbounded_channel();
        let (orders, orders_rx) = mpsc::unbounded_channel();
        let broker = Arc::new(RedisBroker {
            instance: uuid::Uuid::new_v4().to_string(),
            sharding,
            queue: tx,
            interest: Arc::default(),
            orders,
            state: Arc::new(AtomicU8::new(DOWN)),
            metrics: metrics.clone(),
            inbound,
            dropped_threads: Arc::default(),
        });
        metrics.broker_up.set(0);
        tokio::spawn(publisher(target.clone(), rx, broker.clone(), stop.clone()));
        tokio::spawn(subscriber(target, broker.clone(), orders_rx, stop));
        (broker, inbound_rx)
    }

    fn set_state(&self, up: bool) {
        let new = if up { UP } else { DOWN };
        let old = self.state.swap(new, Ordering::AcqRel);
        self.metrics.broker_up.set(up as i64);
        if old != new {
            if up {
                tracing::info!("broker connected");
            } else {
                tracing::warn!("broker connection lost");
            }
            let state = if up {
                BrokerState::Up
            } else {
                BrokerState::Down
            };
            let _ = self.inbound.send(Inbound::State(state));
        }
    }
}

impl Broker for RedisBroker {
    fn publish(&self, event: &Event) {
        let bytes = match serde_json::to_vec(&Envelope {
            origin: self.instance.clone(),
            event: event.clone(),
        }) {
            Ok(b) => b,
            Err(_) => return,
        };
        let sharded = match self.sharding {
            Sharding::Off => None,
            Sharding::On | Sharding::Dual => channel_thread(event).map(str::to_string),
        };
        // Never blocks: a full queue drops the event and remembers its thread for re-reading.
        if self.queue.try_send((sharded, bytes)).is_err()
            && let Some(t) = resync_thread(event)
        {
            self.dropped_threads
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(t.to_string());
        }
    }

    fn state(&self) -> BrokerState {
        if self.state.load(Ordering::Acquire) == UP {
            BrokerState::Up
        } else {
            BrokerState::Down
        }
    }

    fn follow(&self, thread: &str) -> Following {
        let (subscribe, mut ready) = self.interest.follow(thread);
        if self.sharding == Sharding::Off {
            return Box::pin(std::future::ready(()));
        }
        if subscribe {
            let _ = self.orders.send(Order::Subscribe(thread.to_string()));
        }
        if self.state() == BrokerState::Down {
            // Nothing to wait for: the reconnection subscribes and resyncs from the database.
            return Box::pin(std::future::ready(()));
        }
        Box::pin(async move {
            let _ = tokio::time::timeout(FOLLOW_WAIT, ready.wait_for(|r| *r)).await;
        })
    }

    fn unfollow(&self, thread: &str) {
        let Some(generation) = self.interest.unfollow(thread) else {
            return;
        };
        let (interest, orders, thread) = (
            self.interest.clone(),
            self.orders.clone(),
            thread.to_string(),
        );
        let off = self.sharding == Sharding::Off;
        tokio::spawn(async move {
            tokio::time::sleep(LINGER).await;
            if interest.expire(&thread, generation) && !off {
                let _ = orders.send(Order::Unsubscribe(thread));
            }
        });
    }
}

/// Drain the queue into PUBLISH commands, pipelined; reconnect when Redis goes away.
async fn publisher(
    target: RedisTarget,
    mut rx: mpsc::Receiver<(Option<String>, Vec<u8>)>,
    broker: Arc<RedisBroker>,
    stop: CancellationToken,
) {
    let mut attempt = 0u32;
    loop {
        let mut conn = match target.commands(IO_TIMEOUT).await {
            Ok(c) => {
                attempt = 0;
                c
            }
            Err(e) => {
                attempt += 1;
                if attempt == 1 {
                    tracing::warn!(error = %e, "broker publisher cannot reach Redis");
                }
                // Events that cannot be sent now are lost by Redis anyway: remember their
                // threads so the other instances re-read them from the database.
                while let Ok((_, m)) = rx.try_recv() {
                    mark_dropped(&broker, &m);
                }
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(backoff_delay(attempt, 100, 5_000)) => continue,
                }
            }
        };
        // Tell the others which threads to re-read: our events for them were dropped.
        let dropped: Vec<String> = broker
            .dropped_threads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
            .collect();
        if !dropped.is_empty() {
            let hint = serde_json::to_vec(&ResyncHint {
                origin: broker.instance.clone(),
                resync: dropped,
            })
            .unwrap_or_default();
            let sent: redis::RedisResult<()> = redis::cmd("PUBLISH")
                .arg(&target.channel)
                .arg(hint)
                .query_async(&mut conn)
                .await;
            if sent.is_err() {
                continue;
            }
        }
        loop {
            let first = tokio::select! {
                _ = stop.cancelled() => return,
                m = rx.recv() => match m { Some(m) => m, None => return },
            };
            let mut batch = vec![first];
            while batch.len() < 256 {
                match rx.try_recv() {
                    Ok(m) => batch.push(m),
                    Err(_) => break,
                }
            }
            let mut pipe = redis::pipe();
            for (thread, m) in &batch {
                if let Some(thread) = thread {
                    pipe.cmd("PUBLISH")
                        .arg(thread_channel(&target.channel, thread))
                        .arg(m)
                        .ignore();
                }
                // The shared channel: instance-wide events, every event without sharding,
                // and thread events too while upgrading (`dual`).
                if thread.is_none() || broker.sharding == Sharding::Dual {
                    pipe.cmd("PUBLISH").arg(&target.channel).arg(m).ignore();
                }
            }
            let sent: redis::RedisResult<()> = pipe.query_async(&mut conn).await;
            match sent {
                Ok(()) => broker.metrics.broker_published.add(batch.len() as u64),
                Err(e) => {
                    tracing::warn!(error = %e, "broker publisher lost Redis");
                    // What was in flight may be lost: mark its threads for re-reading.
                    for (_, m) in &batch {
                        mark_dropped(&broker, m);
                    }
                    break;
                }
            }
        }
    }
}

fn mark_dropped(broker: &RedisBroker, bytes: &[u8]) {
    if let Ok(env) = serde_json::from_slice::<Envelope>(bytes)
        && let Some(t) = resync_thread(&env.event)
    {
        broker
            .dropped_threads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(t.to_string());
    }
}

/// SUBSCRIBE and apply the other instances' events; resync from the database after any gap.
async fn subscriber(
    target: RedisTarget,
    broker: Arc<RedisBroker>,
    mut orders: mpsc::UnboundedReceiver<Order>,
    stop: CancellationToken,
) {
    let mut attempt = 0u32;
    let mut first = true;
    loop {
        let connected = match target.subscribed(IO_TIMEOUT).await {
            Ok((mut sink, stream)) => {
                // The followed threads' channels, all at once (a reconnection included).
                let channels: Vec<String> = broker
                    .interest
                    .threads()
                    .iter()
                    .map(|t| thread_channel(&target.channel, t))
                    .collect();
                let subscribed = if channels.is_empty() || broker.sharding == Sharding::Off {
                    Ok(())
                } else {
                    tokio::time::timeout(IO_TIMEOUT, sink.subscribe(channels))
                        .await
                        .map_err(|_| anyhow::anyhow!("subscribing timed out"))
                        .and_then(|r| r.map_err(anyhow::Error::from))
                };
                subscribed.map(|()| (sink, stream))
            }
            Err(e) => Err(e),
        };
        let (mut sink, mut stream) = match connected {
            Ok(c) => c,
            Err(e) => {
                attempt += 1;
                if attempt == 1 {
                    tracing::warn!(error = %e, "broker subscriber cannot reach Redis");
                }
                broker.set_state(false);
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(backoff_delay(attempt, 100, 5_000)) => continue,
                }
            }
        };
        attempt = 0;
        broker.interest.mark_all_ready();
        broker.set_state(true);
        if !first {
            broker.metrics.broker_reconnects.inc();
        }
        first = false;
        // Notifications sent before this subscription are lost, a gap's as well as those of an
        // instance whose first connection came after its sockets had subscribed: realtime
        // re-reads from the database (nothing to do when no socket follows a thread yet).
        let _ = broker.inbound.send(Inbound::Reconnected);
        // Read messages and follow orders; a silent connection is checked with PING every 10 s.
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                Some(order) = orders.recv() => {
                    if !follow_order(&mut sink, order, &target, &broker).await {
                        break;
                    }
                }
                m = tokio::time::timeout(Duration::from_secs(10), stream.next()) => match m {
                    Err(_) => {
                        let pong: Result<redis::RedisResult<redis::Value>, _> =
                            tokio::time::timeout(IO_TIMEOUT, sink.ping()).await;
                        if !matches!(pong, Ok(Ok(_))) {
                            break;
                        }
                    }
                    Ok(None) => break,
                    Ok(Some(msg)) => handle_message(msg.get_payload_bytes(), &broker),
                },
            }
        }
        broker.set_state(false);
    }
}

/// (Un)subscribe a thread's channel; `false` when the connection failed.
async fn follow_order(
    sink: &mut redis::aio::PubSubSink,
    order: Order,
    target: &RedisTarget,
    broker: &RedisBroker,
) -> bool {
    let done = match &order {
        // Followed again or dropped meanwhile: the subscriptions already say so.
        Order::Subscribe(t) if !broker.interest.contains(t) => return true,
        Order::Unsubscribe(t) if broker.interest.contains(t) => return true,
        Order::Subscribe(t) => {
            tokio::time::timeout(
                IO_TIMEOUT,
                sink.subscribe(thread_channel(&target.channel, t)),
            )
            .await
        }
        Order::Unsubscribe(t) => {
            tokio::time::timeout(
                IO_TIMEOUT,
                sink.unsubscribe(thread_channel(&target.channel, t)),
            )
            .await
        }
    };
    if !matches!(done, Ok(Ok(()))) {
        return false;
    }
    match order {
        Order::Subscribe(t) => broker.interest.mark_ready(&t),
        Order::Unsubscribe(t) => {
            let _ = broker.inbound.send(Inbound::Unfollowed(t));
        }
    }
    true
}

/// One message from a channel: another instance's event, or its request to re-read threads.
fn handle_message(payload: &[u8], broker: &RedisBroker) {
    if let Ok(env) = serde_json::from_slice::<Envelope>(payload) {
        if env.origin == broker.instance {
            return; // our own echo
        }
        let relevant = channel_thread(&env.event).is_none_or(|t| broker.interest.contains(t));
        broker
            .metrics
            .broker_received
            .with(&[if relevant { "relevant" } else { "irrelevant" }])
            .inc();
        let _ = broker.inbound.send(Inbound::Event(Box::new(env.event)));
    } else if let Ok(hint) = serde_json::from_slice::<ResyncHint>(payload)
        && hint.origin != broker.instance
    {
        let _ = broker.inbound.send(Inbound::Resync(hint.resync));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_redis_urls_and_refuses_tls_ones() {
        for url in [
            "redis://127.0.0.1:6379",
            "redis://:secret@10.0.0.3/2",
            "redis://user:pw@h:1",
        ] {
            assert!(RedisTarget::parse(url).is_ok(), "{url}");
        }
        assert!(RedisTarget::parse("rediss://x").is_err());
        assert!(RedisTarget::parse("http://x").is_err());
    }

    fn event(json: serde_json::Value) -> Event {
        serde_json::from_value(json).expect("an event")
    }

    #[test]
    fn thread_traffic_goes_on_its_channel_membership_stays_shared_and_only_messages_are_re_read() {
        let message = event(serde_json::json!({"kind": "message", "message": {
            "id": "m", "thread_id": "t1", "seq": 1, "client_id": "c", "author_kind": "user",
            "author_id": "u", "author_name": "U", "body": "hi", "created_at": 0, "status": null}}));
        let chunk = event(
            serde_json::json!({"kind": "stream", "stream_event": "chunk",
            "thread": "t2", "stream_id": "s", "offset": 0, "delta": "x"}),
        );
        let cancel = event(
            serde_json::json!({"kind": "stream", "stream_event": "cancel",
            "stream_id": "s"}),
        );
        let added = event(
            serde_json::json!({"kind": "member_added", "thread_id": "t3",
            "user_id": "u"}),
        );
        let deleted = event(serde_json::json!({"kind": "thread_deleted", "thread_id": "t4"}));
        let revoked = event(serde_json::json!({"kind": "revoked", "session_id": "x",
            "expires_at": 0}));
        assert_eq!(channel_thread(&message), Some("t1"));
        assert_eq!(channel_thread(&chunk), Some("t2"));
        for shared in [&cancel, &added, &deleted, &revoked] {
            assert_eq!(channel_thread(shared), None, "{shared:?}");
        }
        assert_eq!(resync_thread(&message), Some("t1"));
        assert_eq!(resync_thread(&added), Some("t3"));
        for not_re_read in [&chunk, &cancel, &deleted, &revoked] {
            assert_eq!(resync_thread(not_re_read), None, "{not_re_read:?}");
        }
    }
}
