//! The WebSocket load generator behind `emergence load`: many real WebSocket clients against a
//! running server (this one, or a peer speaking a plain broadcast protocol), open loop.
//!
//! Three modes:
//! - `fanout`: `clients` subscribers in one thread, `senders` connections sending `rate` messages
//!   per second in total on a fixed schedule. Every message body carries its *scheduled* send
//!   time, and every subscriber records `receive time - scheduled time`, so a server (or a sender)
//!   that falls behind shows up in the latency instead of silently slowing the load down
//!   (no coordinated omission).
//! - `idle`: `clients` authenticated connections held open (app ping every 25 s), to measure the
//!   server's memory per connection from outside.
//! - `persist`: `senders` connections sending as fast as `persisted` acks allow, `window` sends
//!   in flight each; reports stored messages per second.
//!
//! Each connection is one task owning one tokio-tungstenite stream with a small read buffer, so
//! ten thousand of them fit comfortably in the generator. Latencies go into one lock-free
//! histogram (`hdrhistogram`, 2 significant digits) shared by every task.

use std::{
    collections::BTreeMap,
    io::IsTerminal,
    sync::{Arc, Mutex, atomic::Ordering},
    time::{Duration, Instant},
};

use anyhow::bail;
use tokio_util::sync::CancellationToken;

/// The phase shown by the progress bar: a label and, while ramping, when it started and how long it lasts.
type SharedPhase = Arc<Mutex<(String, Option<(Instant, Duration)>)>>;

/// What the generator does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    Fanout,
    Idle,
    Persist,
}

/// Which wire protocol the target speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Protocol {
    /// The Emergence JSON protocol: token auth, `subscribe`, `send`, acks.
    Emergence,
    /// A bare broadcast room (the benchmark peers): every text frame a client sends is relayed
    /// to every connected client. No auth, no subscribe, no acks.
    Broadcast,
}

/// Everything a run needs.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// `http(s)://host:port` of the server.
    pub url: String,
    /// Path of the WebSocket endpoint.
    pub ws_path: String,
    pub mode: Mode,
    pub protocol: Protocol,
    /// Subscribers (fanout) or held connections (idle).
    pub clients: usize,
    pub senders: usize,
    /// Messages per second in total (fanout).
    pub rate: f64,
    pub duration: Duration,
    /// How long to wait after the last scheduled send for deliveries still in flight.
    pub grace: Duration,
    /// In-flight sends per sender (persist).
    pub window: usize,
    /// Bytes of padding added to each message body.
    pub body_bytes: usize,
    /// Use this token for every connection instead of registering users.
    pub token: Option<String>,
    /// Use this thread instead of creating one.
    pub thread: Option<String>,
    /// Concurrent WebSocket handshakes while connecting.
    pub connect_concurrency: usize,
    /// Redraw a progress bar on stderr.
    pub progress: bool,
}

/// The outcome of a run, printed as text or JSON.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    pub mode: &'static str,
    pub protocol: &'static str,
    pub url: String,
    pub thread: Option<String>,
    pub clients: usize,
    pub senders: usize,
    pub rate: f64,
    pub duration_secs: f64,
    /// Connections that completed the handshake (and `welcome`/`subscribed` where relevant).
    pub connected: usize,
    pub connect_failures: usize,
    pub connect_ms: Percentiles,
    /// Connections still open when the run ended.
    pub open_at_end: usize,
    /// Messages sent (fanout, persist).
    pub sent: u64,
    /// Scheduled sends that never went out because the sender could not keep up (fanout).
    pub unsent: u64,
    /// `persisted` acks (emergence protocol).
    pub persisted: u64,
    /// `queued` acks (the database was down).
    pub queued: u64,
    /// Message frames received by subscribers (fanout).
    pub delivered: u64,
    /// `sent × subscribers - delivered` at the end of the grace period (fanout).
    pub undelivered: u64,
    /// Deliveries per second (fanout), or persisted acks per second (persist).
    pub throughput_per_sec: f64,
    /// Fanout: delivery latency from the scheduled send time. Persist: send-to-ack latency.
    pub latency_ms: Percentiles,
    /// Latency distribution: (upper bound in ms, count), only non-empty ranges.
    pub latency_histogram: Vec<(f64, u64)>,
    pub errors: u64,
    pub errors_by_code: BTreeMap<String, u64>,
    /// Connections the server closed during the run.
    pub closed_by_server: u64,
}

/// Percentiles in milliseconds.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Percentiles {
    pub count: u64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub mean: f64,
}

pub mod agentstream;
mod client;
pub mod fake_provider;
pub mod floor_room;
pub mod floor_sweep;
mod histogram;
mod markers;
mod traffic;

use client::*;
pub use histogram::Histogram;
use traffic::*;

// ---------------------------------------------------------------------------------------------
// Runs

/// Run the configured load and return its report.
pub async fn run(cfg: LoadConfig) -> anyhow::Result<Report> {
    if cfg.mode == Mode::Persist && cfg.protocol == Protocol::Broadcast {
        bail!("--mode persist needs the emergence protocol (acks)");
    }
    if cfg.mode == Mode::Fanout && cfg.senders > 0 && cfg.rate <= 0.0 {
        bail!("--rate must be positive in fanout mode");
    }
    let target = Target::parse(&cfg.url, &cfg.ws_path)?;
    let plan = prepare(&cfg, &target).await?;
    let stats = Arc::new(Stats::default());
    let clock = Clock::new();
    let stop = CancellationToken::new();
    let progress_stop = CancellationToken::new();
    let phase = Arc::new(Mutex::new(("connect".to_string(), None)));
    let progress = spawn_progress(
        cfg.progress,
        &cfg,
        stats.clone(),
        progress_stop.clone(),
        phase.clone(),
    );
    let set_phase = |label: &str, window: Option<(Instant, Duration)>| {
        *phase.lock().unwrap_or_else(|e| e.into_inner()) = (label.to_string(), window);
    };

    // Subscribers / idle connections first.
    // A subscriber's read buffer is zero-filled up to this size on every read (tungstenite),
    // including the last read of each wake-up, which finds nothing: 4 KiB holds a dozen
    // coalesced load frames and costs a quarter of the 16 KiB it was (4 % of the machine at
    // 500 msg/s x 1,000 went to that memset).
    let (subscribe, time, read_buffer) = match cfg.mode {
        Mode::Fanout => (plan.thread.clone(), true, 4 * 1024),
        Mode::Idle => (None, false, 4 * 1024),
        Mode::Persist => (None, false, 4 * 1024),
    };
    let clients = if cfg.mode == Mode::Persist {
        0
    } else {
        cfg.clients
    };
    let mut tasks = connect_many(
        clients,
        &target,
        cfg.protocol,
        plan.subscriber.clone(),
        subscribe.filter(|_| cfg.protocol == Protocol::Emergence),
        cfg.connect_concurrency,
        &stats,
        clock,
        &stop,
        time,
        read_buffer,
    )
    .await;
    let subscribers = stats.connected.load(Ordering::Relaxed);

    // Then the senders, each with its own connection (and user).
    let mut sender_ws = Vec::new();
    if cfg.mode != Mode::Idle {
        for token in &plan.senders {
            let token = (cfg.protocol == Protocol::Emergence).then_some(token.as_str());
            let started = Instant::now();
            match connect_client(&target, cfg.protocol, token, None, 16 * 1024).await {
                Ok(ws) => {
                    stats.connect.record(started.elapsed().as_micros() as u64);
                    stats.connected.fetch_add(1, Ordering::Relaxed);
                    sender_ws.push(ws);
                }
                Err(e) => stats.connect_failed(format!("sender: {e:#}")),
            }
        }
        if sender_ws.is_empty() && cfg.senders > 0 {
            progress_stop.cancel();
            let _ = progress.await;
            let why = stats
                .first_error
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
                .unwrap_or_default();
            bail!("no sender could connect: {why}");
        }
    }

    let run_id = random_hex(4);
    let padding = pad(cfg.body_bytes);
    let start = tokio::time::Instant::now() + Duration::from_millis(100);
    let end = start + cfg.duration;
    set_phase("run", Some((start.into_std(), cfg.duration)));
    let senders = sender_ws.len();
    stats.senders_active.store(senders, Ordering::Relaxed);
    match cfg.mode {
        Mode::Fanout => {
            let per_sender = cfg.rate / senders.max(1) as f64;
            let interval = Duration::from_secs_f64(1.0 / per_sender.max(1e-9));
            for (i, ws) in sender_ws.into_iter().enumerate() {
                // Stagger the senders so the total rate is evenly spaced.
                let offset = Duration::from_secs_f64(i as f64 / cfg.rate.max(1e-9));
                tasks.push(tokio::spawn(fanout_sender(
                    ws,
                    cfg.protocol,
                    plan.thread.clone(),
                    i,
                    run_id.clone(),
                    interval,
                    start + offset,
                    end,
                    padding.clone(),
                    stats.clone(),
                    clock,
                    stop.clone(),
                )));
            }
        }
        Mode::Persist => {
            let thread = plan.thread.clone().unwrap_or_default();
            for (i, ws) in sender_ws.into_iter().enumerate() {
                tasks.push(tokio::spawn(persist_sender(
                    ws,
                    thread.clone(),
                    i,
                    run_id.clone(),
                    cfg.window,
                    end,
                    padding.clone(),
                    stats.clone(),
                    clock,
                    stop.clone(),
                )));
            }
        }
        Mode::Idle => {}
    }
    tokio::time::sleep_until(end).await;
    let measured_persisted = stats.persisted.load(Ordering::Relaxed);
    let end_us = clock.unix_us(end.into_std());

    // Grace: let deliveries (or acks) in flight arrive; stop early once nothing is missing or
    // nothing has moved for a second.
    set_phase("drain", None);
    let expected = |s: &Stats| match cfg.mode {
        Mode::Fanout => s.sent.load(Ordering::Relaxed) * subscribers as u64,
        Mode::Persist => s.sent.load(Ordering::Relaxed),
        Mode::Idle => 0,
    };
    let got = |s: &Stats| match cfg.mode {
        Mode::Fanout => s.latency.count(),
        Mode::Persist => {
            s.persisted.load(Ordering::Relaxed)
                + s.queued.load(Ordering::Relaxed)
                + s.errors.load(Ordering::Relaxed)
        }
        Mode::Idle => 0,
    };
    // First let every sender finish its loop (a fanout sender may still send what was
    // scheduled just before the end), so that nothing is sent after the count is taken.
    let senders_deadline = end.into_std() + LATE_SEND_CUTOFF + Duration::from_secs(1);
    while stats.senders_active.load(Ordering::Relaxed) > 0 && Instant::now() < senders_deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let grace_end = Instant::now() + cfg.grace;
    let (mut last, mut last_move) = (got(&stats), Instant::now());
    while cfg.mode != Mode::Idle && got(&stats) < expected(&stats) && Instant::now() < grace_end {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = got(&stats);
        if now != last {
            (last, last_move) = (now, Instant::now());
        } else if last_move.elapsed() > Duration::from_secs(1) {
            break;
        }
    }
    let open_at_end = stats.open.load(Ordering::Relaxed);
    stop.cancel();
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(2), t).await;
    }
    progress_stop.cancel();
    let _ = progress.await;

    let delivered = stats.latency.count();
    let sent = stats.sent.load(Ordering::Relaxed);
    let secs = cfg.duration.as_secs_f64();
    let throughput = match cfg.mode {
        Mode::Fanout => {
            // Deliveries that arrive after the window stretch the denominator: a server that
            // falls behind gets no credit for catching up later.
            let start_us = clock.unix_us(start.into_std());
            let last = stats.latency.last_at().max(end_us);
            delivered as f64 / ((last - start_us) as f64 / 1e6).max(secs)
        }
        Mode::Persist => measured_persisted as f64 / secs,
        Mode::Idle => 0.0,
    };
    if stats.connect_failures.load(Ordering::Relaxed) > 0
        && let Some(why) = stats
            .first_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
    {
        eprintln!("emergence load: first connect failure: {why}");
        if why.contains("Too many open files") {
            eprintln!(
                "emergence load: out of file descriptors: raise the limit (`ulimit -n 65536`, or \
                 `ulimit -n $(ulimit -Hn)`) in the shell that starts the generator"
            );
        }
    }
    let errors_by_code = stats
        .errors_by_code
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    if errors_by_code.contains_key("rate_limited") {
        eprintln!(
            "emergence load: the server rate-limited the senders; for load tests start it with \
             EMERGENCE_SEND_RATE_PER_SEC=0"
        );
    }
    Ok(Report {
        mode: match cfg.mode {
            Mode::Fanout => "fanout",
            Mode::Idle => "idle",
            Mode::Persist => "persist",
        },
        protocol: match cfg.protocol {
            Protocol::Emergence => "emergence",
            Protocol::Broadcast => "broadcast",
        },
        url: cfg.url.clone(),
        thread: plan.thread,
        clients,
        senders,
        rate: cfg.rate,
        duration_secs: secs,
        connected: stats.connected.load(Ordering::Relaxed),
        connect_failures: stats.connect_failures.load(Ordering::Relaxed),
        connect_ms: stats.connect.percentiles(),
        open_at_end,
        sent,
        unsent: stats.unsent.load(Ordering::Relaxed),
        persisted: stats.persisted.load(Ordering::Relaxed),
        queued: stats.queued.load(Ordering::Relaxed),
        delivered,
        undelivered: if cfg.mode == Mode::Fanout {
            (sent * subscribers as u64).saturating_sub(delivered)
        } else {
            0
        },
        throughput_per_sec: throughput,
        latency_ms: stats.latency.percentiles(),
        latency_histogram: stats.latency.coarse(),
        errors: stats.errors.load(Ordering::Relaxed),
        errors_by_code,
        closed_by_server: stats.closed_by_server.load(Ordering::Relaxed),
    })
}

impl Report {
    /// The human-readable summary.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let line = |s: &mut String, k: &str, v: String| s.push_str(&format!("  {k:<18} {v}\n"));
        s.push_str(&format!(
            "emergence load: {} ({} protocol) against {}\n",
            self.mode, self.protocol, self.url
        ));
        line(
            &mut s,
            "connections",
            format!(
                "{} connected, {} failed, {} open at end, {} closed by server (connect p50 {:.1} ms, p99 {:.1} ms)",
                self.connected,
                self.connect_failures,
                self.open_at_end,
                self.closed_by_server,
                self.connect_ms.p50,
                self.connect_ms.p99
            ),
        );
        match self.mode {
            "fanout" => {
                line(
                    &mut s,
                    "load",
                    format!(
                        "{} subscribers, {} senders, {} msg/s for {:.0} s",
                        self.clients, self.senders, self.rate, self.duration_secs
                    ),
                );
                line(
                    &mut s,
                    "messages",
                    format!("{} sent, {} unsent (sender behind)", self.sent, self.unsent),
                );
                line(
                    &mut s,
                    "deliveries",
                    format!(
                        "{} received, {} missing, {:.0}/s",
                        self.delivered, self.undelivered, self.throughput_per_sec
                    ),
                );
            }
            "persist" => {
                line(
                    &mut s,
                    "messages",
                    format!(
                        "{} sent, {} persisted, {} queued",
                        self.sent, self.persisted, self.queued
                    ),
                );
                line(
                    &mut s,
                    "throughput",
                    format!("{:.0} persisted msgs/s", self.throughput_per_sec),
                );
            }
            _ => {}
        }
        if self.latency_ms.count > 0 {
            let l = &self.latency_ms;
            let what = if self.mode == "persist" {
                "ack latency"
            } else {
                "latency"
            };
            line(
                &mut s,
                what,
                format!(
                    "p50 {:.2} ms  p90 {:.2} ms  p99 {:.2} ms  p99.9 {:.2} ms  max {:.2} ms  ({} samples)",
                    l.p50, l.p90, l.p99, l.p999, l.max, l.count
                ),
            );
            let peak = self
                .latency_histogram
                .iter()
                .map(|(_, n)| *n)
                .max()
                .unwrap_or(1)
                .max(1);
            let mut lower = 0.0;
            for (upper, n) in &self.latency_histogram {
                let bar = "#".repeat(((*n as f64 / peak as f64) * 40.0).ceil() as usize);
                let range = if upper.is_infinite() {
                    format!("> {lower} ms")
                } else {
                    format!("{lower}-{upper} ms")
                };
                s.push_str(&format!("    {range:>16} {n:>10} {bar}\n"));
                lower = *upper;
            }
        }
        line(
            &mut s,
            "errors",
            if self.errors_by_code.is_empty() {
                "0".into()
            } else {
                format!("{} {:?}", self.errors, self.errors_by_code)
            },
        );
        s
    }
}

/// Whether to draw the progress bar: only for a terminal, never with `--json`.
pub fn progress_wanted(json: bool) -> bool {
    !json && std::io::stderr().is_terminal()
}
