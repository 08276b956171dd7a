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

use super::{Broker, BrokerState, Event, broker::Inbound};
use crate::{db::manager::backoff_delay, metrics::Metrics};

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
    queue: mpsc::Sender<Vec<u8>>,
    state: Arc<AtomicU8>,
    metrics: Arc<Metrics>,
    /// What the other instances send, for realtime to apply.
    inbound: mpsc::UnboundedSender<Inbound>,
    /// Threads whose events were dropped while Redis was unreachable.
    dropped_threads: Arc<Mutex<HashSet<String>>>,
}

const QUEUE: usize = 65_536;
const IO_TIMEOUT: Duration = Duration::from_secs(5);

impl RedisBroker {
    /// Start publishing and subscribing; what arrives from the other instances comes out of
    /// the returned receiver.
    pub fn start(
        target: RedisTarget,
        metrics: Arc<Metrics>,
        stop: CancellationToken,
    ) -> (Arc<RedisBroker>, mpsc::UnboundedReceiver<Inbound>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let (inbound, inbound_rx) = mpsc::unbounded_channel();
        let broker = Arc::new(RedisBroker {
            instance: uuid::Uuid::new_v4().to_string(),
            queue: tx,
            state: Arc::new(AtomicU8::new(DOWN)),
            metrics: metrics.clone(),
            inbound,
            dropped_threads: Arc::default(),
        });
        metrics.broker_up.set(0);
        tokio::spawn(publisher(target.clone(), rx, broker.clone(), stop.clone()));
        tokio::spawn(subscriber(target, broker.clone(), stop));
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

fn thread_of(event: &Event) -> Option<String> {
    match event {
        Event::Message { message } => Some(message.thread_id.clone()),
        Event::MemberAdded { thread_id, .. } => Some(thread_id.clone()),
        _ => None,
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
        // Never blocks: a full queue drops the event and remembers its thread for re-reading.
        if self.queue.try_send(bytes).is_err()
            && let Some(t) = thread_of(event)
        {
            self.dropped_threads
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(t);
        }
    }

    fn state(&self) -> BrokerState {
        if self.state.load(Ordering::Acquire) == UP {
            BrokerState::Up
        } else {
            BrokerState::Down
        }
    }
}

/// Drain the queue into PUBLISH commands, pipelined; reconnect when Redis goes away.
async fn publisher(
    target: RedisTarget,
    mut rx: mpsc::Receiver<Vec<u8>>,
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
                while let Ok(m) = rx.try_recv() {
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
            for m in &batch {
                pipe.cmd("PUBLISH").arg(&target.channel).arg(m).ignore();
            }
            let sent: redis::RedisResult<()> = pipe.query_async(&mut conn).await;
            match sent {
                Ok(()) => broker.metrics.broker_published.add(batch.len() as u64),
                Err(e) => {
                    tracing::warn!(error = %e, "broker publisher lost Redis");
                    // What was in flight may be lost: mark its threads for re-reading.
                    for m in &batch {
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
        && let Some(t) = thread_of(&env.event)
    {
        broker
            .dropped_threads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(t);
    }
}

/// SUBSCRIBE and apply the other instances' events; resync from the database after any gap.
async fn subscriber(target: RedisTarget, broker: Arc<RedisBroker>, stop: CancellationToken) {
    let mut attempt = 0u32;
    let mut first = true;
    loop {
        let (mut sink, mut stream) = match target.subscribed(IO_TIMEOUT).await {
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
        broker.set_state(true);
        if !first {
            broker.metrics.broker_reconnects.inc();
            // Notifications sent during the gap are lost: realtime re-reads from the database.
            let _ = broker.inbound.send(Inbound::Reconnected);
        }
        first = false;
        // Read messages; a silent connection is checked with PING every 10 s.
        loop {
            let next = tokio::select! {
                _ = stop.cancelled() => return,
                m = tokio::time::timeout(Duration::from_secs(10), stream.next()) => m,
            };
            match next {
                Err(_) => {
                    let pong: Result<redis::RedisResult<redis::Value>, _> =
                        tokio::time::timeout(IO_TIMEOUT, sink.ping()).await;
                    if !matches!(pong, Ok(Ok(_))) {
                        break;
                    }
                }
                Ok(None) => break,
                Ok(Some(msg)) => handle_message(msg.get_payload_bytes(), &broker),
            }
        }
        broker.set_state(false);
    }
}

/// One message from the channel: another instance's event, or its request to re-read threads.
fn handle_message(payload: &[u8], broker: &RedisBroker) {
    if let Ok(env) = serde_json::from_slice::<Envelope>(payload) {
        if env.origin == broker.instance {
            return; // our own echo
        }
        broker.metrics.broker_received.inc();
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
}
