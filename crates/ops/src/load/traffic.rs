//! The traffic itself: opening many WebSocket connections (ramped), holding idle ones, the
//! fan-out and persist senders on their schedules, and the progress line.

use std::{
    io::Write,
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant},
};

use anyhow::{Context, anyhow, bail};
use emergence_client::contract::ClientFrameShape;
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::{
    net::TcpStream,
    sync::{Semaphore, mpsc},
};
use tokio_tungstenite::{
    WebSocketStream,
    tungstenite::{Message, client::IntoClientRequest, protocol::WebSocketConfig},
};
use tokio_util::sync::CancellationToken;

use super::{LoadConfig, Mode, Protocol, SharedPhase, client::*};

// ---------------------------------------------------------------------------------------------
// Connections

pub(crate) type Ws = WebSocketStream<TcpStream>;

pub(crate) fn ws_config(read_buffer: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(read_buffer)
        .write_buffer_size(0)
        .max_message_size(Some(1 << 20))
        .max_frame_size(Some(1 << 20))
}

/// TCP connect + WebSocket handshake, bounded by a timeout.
pub(crate) async fn open(target: &Target, url: &str, read_buffer: usize) -> anyhow::Result<Ws> {
    let handshake = async {
        let tcp = TcpStream::connect((target.host.as_str(), target.port))
            .await
            .context("TCP connect")?;
        let _ = tcp.set_nodelay(true);
        let request = url.into_client_request().context("WebSocket request")?;
        let (ws, _) =
            tokio_tungstenite::client_async_with_config(request, tcp, Some(ws_config(read_buffer)))
                .await
                .context("WebSocket handshake")?;
        anyhow::Ok(ws)
    };
    tokio::time::timeout(Duration::from_secs(15), handshake)
        .await
        .map_err(|_| anyhow!("connect timed out"))?
}

/// Read frames until one of type `want` arrives; an `error` frame or a close fails.
pub(crate) async fn expect(ws: &mut Ws, want: &str) -> anyhow::Result<()> {
    let wait = async {
        while let Some(frame) = ws.next().await {
            match frame? {
                Message::Text(t) => match frame_type(t.as_str()) {
                    Some(ty) if ty == want => return Ok(()),
                    Some("error") => bail!("server answered {}", t.as_str()),
                    _ => {}
                },
                Message::Close(c) => bail!("closed by the server: {c:?}"),
                _ => {}
            }
        }
        bail!("connection ended before {want}")
    };
    tokio::time::timeout(Duration::from_secs(15), wait)
        .await
        .map_err(|_| anyhow!("no {want} within 15 s"))?
}

/// Connect one client and get it ready: `welcome` (emergence), then `subscribed` when a thread
/// is given.
pub(crate) async fn connect_client(
    target: &Target,
    protocol: Protocol,
    token: Option<&str>,
    subscribe: Option<&str>,
    read_buffer: usize,
) -> anyhow::Result<Ws> {
    let mut ws = open(target, &target.ws_url(token), read_buffer).await?;
    if protocol == Protocol::Emergence {
        expect(&mut ws, "welcome").await?;
        if let Some(thread) = subscribe {
            let frame = serde_json::to_string(&ClientFrameShape::Subscribe {
                thread: thread.to_string(),
                after_seq: None,
            })
            .expect("client frames always serialise");
            ws.send(Message::Text(frame.into())).await?;
            expect(&mut ws, "subscribed").await?;
        }
    }
    Ok(ws)
}

pub(crate) const APP_PING_EVERY: Duration = Duration::from_secs(25);

pub(crate) fn ping_frame() -> Message {
    Message::Text(r#"{"type":"ping"}"#.into())
}

/// A subscriber (or idle connection): read until stopped, timing every load message, and send
/// an app-level ping every 25 s so the server's idle timeout never fires.
pub(crate) async fn hold(
    mut ws: Ws,
    stats: Arc<Stats>,
    clock: Clock,
    stop: CancellationToken,
    time: bool,
) {
    stats.open.fetch_add(1, Ordering::Relaxed);
    // Spread the pings so ten thousand clients do not ping in the same millisecond.
    let jitter = Duration::from_millis(u64::from_le_bytes(rand8()) % 5_000);
    let mut next_ping = tokio::time::Instant::now() + APP_PING_EVERY - jitter;
    // Both made once: a fresh `sleep_until` and `cancelled()` per frame would put a timer into
    // the wheel and a waiter on the token, and take them out again, for every delivery.
    let ping = tokio::time::sleep_until(next_ping);
    let cancelled = stop.cancelled();
    tokio::pin!(ping, cancelled);
    loop {
        tokio::select! {
            _ = &mut cancelled => break,
            _ = &mut ping => {
                next_ping += APP_PING_EVERY;
                ping.as_mut().reset(next_ping);
                if ws.send(ping_frame()).await.is_err() {
                    stats.closed_by_server.fetch_add(1, Ordering::Relaxed);
                    break;
                }
            }
            frame = ws.next() => match frame {
                Some(Ok(Message::Text(t))) => {
                    let t = t.as_str();
                    if time && let Some(ts) = stamp(t) {
                        let now = clock.now_us();
                        stats.latency.record_at(now.saturating_sub(ts), now);
                    } else if frame_type(t) == Some("error") {
                        stats.error(field(t, "code").unwrap_or("unknown"));
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                    stats.closed_by_server.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                Some(Ok(_)) => {}
            }
        }
    }
    stats.open.fetch_sub(1, Ordering::Relaxed);
    let _ = tokio::time::timeout(Duration::from_millis(500), ws.close(None)).await;
}

pub(crate) fn rand8() -> [u8; 8] {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).expect("the OS random source works");
    b
}

/// Connect `n` clients (at most `concurrency` handshakes at once); each ready client is handed
/// to `hold`. Returns when every attempt has finished.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn connect_many(
    n: usize,
    target: &Target,
    protocol: Protocol,
    token: Option<String>,
    subscribe: Option<String>,
    concurrency: usize,
    stats: &Arc<Stats>,
    clock: Clock,
    stop: &CancellationToken,
    time: bool,
    read_buffer: usize,
) -> Vec<tokio::task::JoinHandle<()>> {
    let gate = Arc::new(Semaphore::new(concurrency.max(1)));
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<()>();
    let mut holders = Vec::with_capacity(n);
    for _ in 0..n {
        let permit = gate.clone().acquire_owned().await.expect("never closed");
        let (target, token, subscribe) = (target.clone(), token.clone(), subscribe.clone());
        let (stats, stop, done) = (stats.clone(), stop.clone(), done_tx.clone());
        holders.push(tokio::spawn(async move {
            let started = Instant::now();
            let ws = connect_client(
                &target,
                protocol,
                token.as_deref(),
                subscribe.as_deref(),
                read_buffer,
            )
            .await;
            drop(permit);
            // Counted before `done`: the caller reads `connected` as the number of subscribers
            // every message must reach, so a connection counted late would hide its losses.
            match ws {
                Ok(ws) => {
                    stats.connect.record(started.elapsed().as_micros() as u64);
                    stats.connected.fetch_add(1, Ordering::Relaxed);
                    let _ = done.send(());
                    hold(ws, stats, clock, stop, time).await;
                }
                Err(e) => {
                    stats.connect_failed(format!("{e:#}"));
                    let _ = done.send(());
                }
            }
        }));
    }
    drop(done_tx);
    for _ in 0..n {
        if done_rx.recv().await.is_none() {
            break;
        }
    }
    holders
}

// ---------------------------------------------------------------------------------------------
// Senders

pub(crate) fn pad(bytes: usize) -> String {
    if bytes == 0 {
        return String::new();
    }
    let mut s = String::with_capacity(bytes + 1);
    s.push(' ');
    while s.len() < bytes + 1 {
        s.push('x');
    }
    s
}

pub(crate) fn send_frame(
    protocol: Protocol,
    thread: Option<&str>,
    client_id: &str,
    body: &str,
) -> String {
    match protocol {
        Protocol::Emergence => serde_json::to_string(&ClientFrameShape::Send {
            thread: thread.unwrap_or_default().to_string(),
            client_id: client_id.to_string(),
            body: body.to_string(),
            agent: None,
            agents: None,
        })
        .expect("client frames always serialise"),
        Protocol::Broadcast => {
            json!({"type": "send", "client_id": client_id, "body": body}).to_string()
        }
    }
}

/// Count what the server answers a sender: acks, errors, and (broadcast) its own echoes.
pub(crate) fn on_sender_frame(text: &str, stats: &Stats, clock: &Clock, timing: bool) -> bool {
    match frame_type(text) {
        Some("ack") => match field(text, "status") {
            Some("persisted") => {
                stats.persisted.fetch_add(1, Ordering::Relaxed);
                if timing && let Some(ts) = field(text, "client_id").and_then(sent_at) {
                    stats.latency.record(clock.now_us().saturating_sub(ts));
                }
                true
            }
            Some("queued") => {
                stats.queued.fetch_add(1, Ordering::Relaxed);
                false
            }
            _ => false,
        },
        Some("error") => {
            stats.error(field(text, "code").unwrap_or("unknown"));
            field(text, "client_id").is_some()
        }
        _ => false,
    }
}

/// Persist-mode client ids carry their send time: `lg-<run>-<sender>-<n>-<unix µs>`.
pub(crate) fn sent_at(client_id: &str) -> Option<u64> {
    client_id.rsplit('-').next()?.parse().ok()
}

/// How far past the end of the run a fanout sender may still send what it was scheduled to.
pub(crate) const LATE_SEND_CUTOFF: Duration = Duration::from_millis(500);

/// A fanout sender: `rate` messages per second on a fixed schedule starting at `start + offset`,
/// until `end`. Each body carries its scheduled time; a late send keeps that time.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn fanout_sender(
    ws: Ws,
    protocol: Protocol,
    thread: Option<String>,
    id: usize,
    run: String,
    interval: Duration,
    start: tokio::time::Instant,
    end: tokio::time::Instant,
    padding: String,
    stats: Arc<Stats>,
    clock: Clock,
    stop: CancellationToken,
) {
    let (mut sink, mut stream) = ws.split();
    let reader_stats = stats.clone();
    let reader_stop = stop.clone();
    let reader = tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = reader_stop.cancelled() => break,
                f = stream.next() => match f {
                    Some(Ok(Message::Text(t))) => {
                        on_sender_frame(t.as_str(), &reader_stats, &clock, false);
                    }
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                        reader_stats.closed_by_server.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                    Some(Ok(_)) => {}
                }
            }
        }
    });
    let mut k: u64 = 0;
    loop {
        let at = start + interval.mul_f64(k as f64);
        if at >= end {
            break;
        }
        tokio::time::sleep_until(at).await;
        // Every scheduled send goes out, late or not (its latency keeps the scheduled time),
        // unless the sender is so far behind at the end that the rest would never be timed:
        // those are reported as unsent, not hidden. Timer slack alone never counts.
        if tokio::time::Instant::now() >= end + LATE_SEND_CUTOFF {
            let left = ((end - at).as_secs_f64() / interval.as_secs_f64()).ceil() as u64;
            stats.unsent.fetch_add(left, Ordering::Relaxed);
            break;
        }
        let ts = clock.unix_us(at.into_std());
        let body = format!("lg:{ts}:{id}:{k}{padding}");
        let frame = send_frame(
            protocol,
            thread.as_deref(),
            &format!("lg-{run}-{id}-{k}"),
            &body,
        );
        if sink.send(Message::Text(frame.into())).await.is_err() {
            stats.error("send_failed");
            break;
        }
        stats.sent.fetch_add(1, Ordering::Relaxed);
        k += 1;
    }
    stats.senders_active.fetch_sub(1, Ordering::Relaxed);
    // Keep reading acks until the run stops.
    let _ = reader.await;
    let _ = tokio::time::timeout(Duration::from_millis(500), sink.close()).await;
}

/// A persist sender: keep `window` sends in flight, one more per ack, until `end`.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn persist_sender(
    ws: Ws,
    thread: String,
    id: usize,
    run: String,
    window: usize,
    end: tokio::time::Instant,
    padding: String,
    stats: Arc<Stats>,
    clock: Clock,
    stop: CancellationToken,
) {
    let (mut sink, mut stream) = ws.split();
    let credit = Arc::new(Semaphore::new(window.max(1)));
    let (reader_stats, reader_stop, reader_credit) = (stats.clone(), stop.clone(), credit.clone());
    let reader = tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = reader_stop.cancelled() => break,
                f = stream.next() => match f {
                    Some(Ok(Message::Text(t))) => {
                        if on_sender_frame(t.as_str(), &reader_stats, &clock, true) {
                            reader_credit.add_permits(1);
                        }
                    }
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                        reader_stats.closed_by_server.fetch_add(1, Ordering::Relaxed);
                        reader_credit.close();
                        break;
                    }
                    Some(Ok(_)) => {}
                }
            }
        }
    });
    let mut k: u64 = 0;
    loop {
        let permit = tokio::select! {
            p = credit.acquire() => match p { Ok(p) => p, Err(_) => break },
            _ = tokio::time::sleep_until(end) => break,
        };
        permit.forget();
        if tokio::time::Instant::now() >= end {
            break;
        }
        let now = clock.now_us();
        let body = format!("lg:{now}:{id}:{k}{padding}");
        let frame = send_frame(
            Protocol::Emergence,
            Some(&thread),
            &format!("lg-{run}-{id}-{k}-{now}"),
            &body,
        );
        if sink.send(Message::Text(frame.into())).await.is_err() {
            stats.error("send_failed");
            break;
        }
        stats.sent.fetch_add(1, Ordering::Relaxed);
        k += 1;
    }
    stats.senders_active.fetch_sub(1, Ordering::Relaxed);
    let _ = reader.await;
    let _ = tokio::time::timeout(Duration::from_millis(500), sink.close()).await;
}

// ---------------------------------------------------------------------------------------------
// Progress

/// Redraws one status line on stderr until stopped.
pub(crate) fn spawn_progress(
    enabled: bool,
    cfg: &LoadConfig,
    stats: Arc<Stats>,
    stop: CancellationToken,
    phase: SharedPhase,
) -> tokio::task::JoinHandle<()> {
    let mode = cfg.mode;
    let clients = cfg.clients + if mode == Mode::Idle { 0 } else { cfg.senders };
    tokio::spawn(async move {
        if !enabled {
            return;
        }
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        let (mut last_n, mut last_t) = (0u64, Instant::now());
        let mut err = std::io::stderr();
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tick.tick() => {}
            }
            let (label, window) = phase.lock().unwrap_or_else(|e| e.into_inner()).clone();
            let bar = match window {
                Some((start, len)) => {
                    let f = (start.elapsed().as_secs_f64() / len.as_secs_f64()).clamp(0.0, 1.0);
                    let filled = (f * 24.0) as usize;
                    format!(
                        "[{}{}] {:>5.1}/{:.0}s",
                        "#".repeat(filled),
                        "-".repeat(24 - filled),
                        start.elapsed().as_secs_f64().min(len.as_secs_f64()),
                        len.as_secs_f64()
                    )
                }
                None => format!("[{:24}]", ""),
            };
            let n = match mode {
                Mode::Fanout => stats.latency.count(),
                _ => stats.persisted.load(Ordering::Relaxed),
            };
            let dt = last_t.elapsed().as_secs_f64().max(1e-3);
            let rate = (n - last_n.min(n)) as f64 / dt;
            (last_n, last_t) = (n, Instant::now());
            let conns = format!(
                "conn {}/{} open {} fail {}",
                stats.connected.load(Ordering::Relaxed),
                clients,
                stats.open.load(Ordering::Relaxed),
                stats.connect_failures.load(Ordering::Relaxed)
            );
            let work = match mode {
                Mode::Fanout => format!(
                    " sent {} deliv {} ({}/s) p99 {:.1}ms",
                    stats.sent.load(Ordering::Relaxed),
                    n,
                    human(rate),
                    stats.latency.quantile(0.99) as f64 / 1000.0
                ),
                Mode::Persist => format!(
                    " sent {} persisted {} ({}/s)",
                    stats.sent.load(Ordering::Relaxed),
                    n,
                    human(rate)
                ),
                Mode::Idle => String::new(),
            };
            let _ = write!(
                err,
                "\r\x1b[K{label:<9} {bar} {conns}{work} err {}",
                stats.errors.load(Ordering::Relaxed)
            );
            let _ = err.flush();
        }
        let _ = write!(err, "\r\x1b[K");
        let _ = err.flush();
    })
}

pub(crate) fn human(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}
