//! The Redis broker: cross-instance fan-out over Redis pub/sub, with a minimal RESP client of
//! its own (PUBLISH on one connection, SUBSCRIBE on another; no dependency, explicit timeouts).
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

use serde::{Deserialize, Serialize};
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::TcpStream,
    sync::mpsc,
};
use tokio_util::sync::CancellationToken;

use super::{Broker, BrokerState, Event, Realtime, protocol};
use crate::{
    db::{Database, Page, manager::backoff_delay},
    ops::metrics::Metrics,
};

/// Where Redis is and how to log in.
#[derive(Debug, Clone)]
pub struct RedisTarget {
    pub addr: String,
    /// The pub/sub channel.
    pub channel: String,
    pub password: Option<String>,
    pub username: Option<String>,
    pub db: u32,
}

impl RedisTarget {
    /// Parse `redis://[user:password@]host[:port][/db]`.
    pub fn parse(url: &str) -> anyhow::Result<RedisTarget> {
        let rest = url.strip_prefix("redis://").ok_or_else(|| {
            anyhow::anyhow!("EMERGENCE_BROKER_URL must start with redis:// (TLS is not supported)")
        })?;
        let (auth, hostpart) = match rest.rsplit_once('@') {
            Some((a, h)) => (Some(a), h),
            None => (None, rest),
        };
        let (hostport, db) = match hostpart.split_once('/') {
            Some((h, d)) if !d.is_empty() => (
                h,
                d.parse()
                    .map_err(|_| anyhow::anyhow!("bad Redis database number"))?,
            ),
            Some((h, _)) => (h, 0),
            None => (hostpart, 0),
        };
        let addr = if hostport.contains(':') {
            hostport.to_string()
        } else {
            format!("{hostport}:6379")
        };
        let (username, password) = match auth {
            Some(a) => match a.split_once(':') {
                Some((u, p)) => ((!u.is_empty()).then(|| u.to_string()), Some(p.to_string())),
                None => (None, Some(a.to_string())),
            },
            None => (None, None),
        };
        Ok(RedisTarget {
            addr,
            channel: "emergence:events".into(),
            password,
            username,
            db,
        })
    }
}

/// One RESP value.
#[derive(Debug, Clone, PartialEq)]
enum Resp {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Vec<Resp>),
}

fn encode(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

async fn read_value<R: AsyncBufReadExt + Unpin>(r: &mut R) -> std::io::Result<Resp> {
    let mut line = Vec::new();
    let n = r.read_until(b'\n', &mut line).await?;
    if n == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "redis closed the connection",
        ));
    }
    let text = String::from_utf8_lossy(&line[1..line.len().saturating_sub(2).max(1)]).to_string();
    let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, "bad RESP");
    Ok(match line[0] {
        b'+' => Resp::Simple(text),
        b'-' => Resp::Error(text),
        b':' => Resp::Int(text.parse().map_err(|_| bad())?),
        b'$' => {
            let len: i64 = text.parse().map_err(|_| bad())?;
            if len < 0 {
                Resp::Bulk(None)
            } else {
                let mut buf = vec![0u8; len as usize + 2];
                r.read_exact(&mut buf).await?;
                buf.truncate(len as usize);
                Resp::Bulk(Some(buf))
            }
        }
        b'*' => {
            let len: i64 = text.parse().map_err(|_| bad())?;
            let mut items = Vec::with_capacity(len.max(0) as usize);
            for _ in 0..len.max(0) {
                items.push(Box::pin(read_value(r)).await?);
            }
            Resp::Array(items)
        }
        _ => return Err(bad()),
    })
}

/// Connect, authenticate and select the database, within `timeout`.
async fn connect(target: &RedisTarget, timeout: Duration) -> anyhow::Result<BufReader<TcpStream>> {
    let fut = async {
        let stream = TcpStream::connect(&target.addr).await?;
        stream.set_nodelay(true)?;
        let mut conn = BufReader::new(stream);
        if let Some(p) = &target.password {
            let cmd = match &target.username {
                Some(u) => encode(&[b"AUTH", u.as_bytes(), p.as_bytes()]),
                None => encode(&[b"AUTH", p.as_bytes()]),
            };
            command(&mut conn, &cmd).await?;
        }
        if target.db != 0 {
            command(
                &mut conn,
                &encode(&[b"SELECT", target.db.to_string().as_bytes()]),
            )
            .await?;
        }
        command(&mut conn, &encode(&[b"PING"])).await?;
        Ok::<_, anyhow::Error>(conn)
    };
    tokio::time::timeout(timeout, fut)
        .await
        .map_err(|_| anyhow::anyhow!("connecting to Redis timed out"))?
}

async fn command(conn: &mut BufReader<TcpStream>, cmd: &[u8]) -> anyhow::Result<Resp> {
    conn.get_mut().write_all(cmd).await?;
    match read_value(conn).await? {
        Resp::Error(e) => Err(anyhow::anyhow!("redis: {e}")),
        v => Ok(v),
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
    /// Threads whose events were dropped while Redis was unreachable.
    dropped_threads: Arc<Mutex<HashSet<String>>>,
}

const QUEUE: usize = 65_536;
const IO_TIMEOUT: Duration = Duration::from_secs(5);

impl RedisBroker {
    pub fn start(
        target: RedisTarget,
        realtime: Arc<Realtime>,
        db: Database,
        metrics: Arc<Metrics>,
        stop: CancellationToken,
    ) -> Arc<RedisBroker> {
        let (tx, rx) = mpsc::channel(QUEUE);
        let broker = Arc::new(RedisBroker {
            instance: uuid::Uuid::new_v4().to_string(),
            queue: tx,
            state: Arc::new(AtomicU8::new(DOWN)),
            metrics: metrics.clone(),
            dropped_threads: Arc::default(),
        });
        metrics.broker_up.set(0);
        tokio::spawn(publisher(target.clone(), rx, broker.clone(), stop.clone()));
        tokio::spawn(subscriber(target, broker.clone(), realtime, db, stop));
        broker
    }

    fn set_state(&self, up: bool, realtime: Option<&Realtime>, db: Option<&Database>) {
        let new = if up { UP } else { DOWN };
        let old = self.state.swap(new, Ordering::AcqRel);
        self.metrics.broker_up.set(up as i64);
        if old != new {
            if up {
                tracing::info!("broker connected");
            } else {
                tracing::warn!("broker connection lost");
            }
            if let (Some(rt), Some(db)) = (realtime, db) {
                rt.broadcast_all(&protocol::status(
                    db.state().as_str(),
                    if up { "up" } else { "down" },
                ));
            }
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
        let mut conn = match connect(&target, IO_TIMEOUT).await {
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
            if command(
                &mut conn,
                &encode(&[b"PUBLISH", target.channel.as_bytes(), &hint]),
            )
            .await
            .is_err()
            {
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
            let mut out = Vec::new();
            for m in &batch {
                out.extend_from_slice(&encode(&[b"PUBLISH", target.channel.as_bytes(), m]));
            }
            let write = async {
                conn.get_mut().write_all(&out).await?;
                for _ in 0..batch.len() {
                    if let Resp::Error(e) = read_value(&mut conn).await? {
                        tracing::warn!(error = %e, "redis refused a PUBLISH");
                    }
                }
                Ok::<_, std::io::Error>(())
            };
            match tokio::time::timeout(IO_TIMEOUT, write).await {
                Ok(Ok(())) => broker.metrics.broker_published.add(batch.len() as u64),
                _ => {
                    tracing::warn!("broker publisher lost Redis");
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
async fn subscriber(
    target: RedisTarget,
    broker: Arc<RedisBroker>,
    realtime: Arc<Realtime>,
    db: Database,
    stop: CancellationToken,
) {
    let mut attempt = 0u32;
    let mut first = true;
    loop {
        let conn = connect(&target, IO_TIMEOUT).await;
        let mut conn = match conn {
            Ok(mut c) => {
                match command(&mut c, &encode(&[b"SUBSCRIBE", target.channel.as_bytes()])).await {
                    Ok(_) => c,
                    Err(e) => {
                        tracing::warn!(error = %e, "SUBSCRIBE failed");
                        attempt += 1;
                        tokio::time::sleep(backoff_delay(attempt, 100, 5_000)).await;
                        continue;
                    }
                }
            }
            Err(e) => {
                attempt += 1;
                if attempt == 1 {
                    tracing::warn!(error = %e, "broker subscriber cannot reach Redis");
                }
                broker.set_state(false, Some(&realtime), Some(&db));
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(backoff_delay(attempt, 100, 5_000)) => continue,
                }
            }
        };
        attempt = 0;
        broker.set_state(true, Some(&realtime), Some(&db));
        if !first {
            broker.metrics.broker_reconnects.inc();
            resync_all(&realtime, &db, &broker.metrics).await;
        }
        first = false;
        // Read pushes; a silent connection is checked with PING every 10 s.
        loop {
            let next = tokio::select! {
                _ = stop.cancelled() => return,
                v = tokio::time::timeout(Duration::from_secs(10), read_value(&mut conn)) => v,
            };
            match next {
                Err(_) => {
                    // Idle: make sure the connection is alive (a subscribed PING answers "pong").
                    if conn.get_mut().write_all(&encode(&[b"PING"])).await.is_err() {
                        break;
                    }
                    match tokio::time::timeout(IO_TIMEOUT, read_value(&mut conn)).await {
                        Ok(Ok(v)) => handle_push(v, &broker, &realtime, &db).await,
                        _ => break,
                    }
                }
                Ok(Err(_)) => break,
                Ok(Ok(v)) => handle_push(v, &broker, &realtime, &db).await,
            }
        }
        broker.set_state(false, Some(&realtime), Some(&db));
    }
}

async fn handle_push(v: Resp, broker: &RedisBroker, realtime: &Arc<Realtime>, db: &Database) {
    let Resp::Array(items) = v else { return };
    if items.len() != 3 || items[0] != Resp::Bulk(Some(b"message".to_vec())) {
        return;
    }
    let Resp::Bulk(Some(payload)) = &items[2] else {
        return;
    };
    if let Ok(env) = serde_json::from_slice::<Envelope>(payload) {
        if env.origin == broker.instance {
            return; // our own echo
        }
        broker.metrics.broker_received.inc();
        realtime.apply(&env.event);
    } else if let Ok(hint) = serde_json::from_slice::<ResyncHint>(payload)
        && hint.origin != broker.instance
    {
        for thread in hint.resync {
            resync_thread(realtime, db, &thread, &broker.metrics).await;
        }
    }
}

/// Re-read every thread with subscribers here, and ask for snapshots of streams run elsewhere.
async fn resync_all(realtime: &Arc<Realtime>, db: &Database, metrics: &Metrics) {
    for thread in realtime.hub.active_threads() {
        resync_thread(realtime, db, &thread, metrics).await;
    }
    for stream_id in realtime.streams.ids() {
        if let Some(b) = realtime.broker() {
            b.publish(&Event::Stream(
                crate::agents::streams::StreamEvent::SnapshotRequest { stream_id },
            ));
        }
    }
}

async fn resync_thread(realtime: &Arc<Realtime>, db: &Database, thread: &str, metrics: &Metrics) {
    let Some(floor) = realtime.hub.delivery_floor(thread) else {
        return;
    };
    metrics.broker_resync.inc();
    let id = thread.to_string();
    match db
        .run(|s| async move { s.messages(&id, Page::After(floor), 1000).await })
        .await
    {
        Ok(messages) => {
            for m in &messages {
                realtime.hub.publish(m);
            }
        }
        Err(e) => tracing::warn!(error = %e, thread, "resync after a broker gap failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_redis_urls() {
        let t = RedisTarget::parse("redis://127.0.0.1:6379").unwrap();
        assert_eq!(
            (t.addr.as_str(), t.password, t.db),
            ("127.0.0.1:6379", None, 0)
        );
        let t = RedisTarget::parse("redis://:secret@10.0.0.3/2").unwrap();
        assert_eq!(
            (t.addr.as_str(), t.password.as_deref(), t.db),
            ("10.0.0.3:6379", Some("secret"), 2)
        );
        let t = RedisTarget::parse("redis://user:pw@h:1").unwrap();
        assert_eq!(
            (t.username.as_deref(), t.password.as_deref()),
            (Some("user"), Some("pw"))
        );
        assert!(RedisTarget::parse("rediss://x").is_err());
    }

    #[tokio::test]
    async fn resp_round_trip_against_a_buffer() {
        let data = b"*3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$5\r\nhello\r\n:12\r\n-ERR no\r\n".to_vec();
        let mut r = BufReader::new(&data[..]);
        let v = read_value(&mut r).await.unwrap();
        assert_eq!(
            v,
            Resp::Array(vec![
                Resp::Bulk(Some(b"message".to_vec())),
                Resp::Bulk(Some(b"c".to_vec())),
                Resp::Bulk(Some(b"hello".to_vec()))
            ])
        );
        assert_eq!(read_value(&mut r).await.unwrap(), Resp::Int(12));
        assert_eq!(
            read_value(&mut r).await.unwrap(),
            Resp::Error("ERR no".into())
        );
    }
}
