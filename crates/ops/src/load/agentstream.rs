//! `emergence load agentstream`: the watchers of the agent-stream scenario (issue #20,
//! `bench/agentstream.py`). S threads, W sockets subscribed to each; once every socket is
//! subscribed, one socket per thread sends a message naming the agent, all threads at once, and
//! every socket reads its answer's `stream_chunk` frames.
//!
//! The fake provider (`emergence load fake-provider`, or `bench/peers/fake_provider.mjs`) starts
//! each chunk's text with `[seq/total@emit_us]`, `emit_us` being `CLOCK_MONOTONIC` microseconds
//! on this machine, so each marker found gives one provider-emit -> watcher-receipt latency,
//! and per socket and answer *lost* is the announced total minus the distinct sequence numbers
//! seen, *dup* the repeats. It replaces the Node watchers (`bench/peers/stream_watchers.mjs`,
//! kept for comparison), which cost more CPU than the server they measured; the report has the
//! same fields, so the bench reads either.

use std::{
    borrow::Cow,
    collections::{BTreeMap, HashMap},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use emergence_client::{Client, contract::ClientFrameShape, contract::http::NewThread};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{Notify, Semaphore};
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use super::{
    Histogram, Percentiles, Protocol,
    client::{Target, random_hex, register},
    markers::{Answer, Tally},
    traffic::{Ws, connect_client},
};

/// What one agent-stream run needs.
#[derive(Debug, Clone)]
pub struct AgentStreamConfig {
    pub url: String,
    pub ws_path: String,
    /// Token of every socket (and of the asks); `None` registers a user (Emergence) or sends
    /// none (a peer relay without accounts, with `threads` given).
    pub token: Option<String>,
    /// Threads to watch; empty: create `answers` threads with `agent` over the API.
    pub threads: Vec<String>,
    pub answers: usize,
    /// Sockets per thread.
    pub watchers: usize,
    /// The agent every ask names.
    pub agent: String,
    /// How long to wait for every answer to end once asked.
    pub timeout: Duration,
    pub connect_concurrency: usize,
    /// Tokens per provider chunk (for the tokens-delivered count).
    pub tokens_per_chunk: u64,
    /// Between connecting and asking, print `READY`, wait for a line on stdin, then print `GO`
    /// (the bench samples the server's memory and CPU in between).
    pub stdin_go: bool,
}

/// The outcome, with the field names `bench/agentstream.py` reads (those of the Node watchers).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct AgentStreamReport {
    pub answers: usize,
    pub watchers: usize,
    pub sockets: usize,
    pub connect_errors: usize,
    /// Distinct markers received (every watcher's copy counts).
    pub chunks: u64,
    pub duplicates: u64,
    pub lost: u64,
    /// Chunks whose `offset` was not the length of the text received before it.
    pub gaps: u64,
    pub streams_seen: u64,
    pub streams_ended: u64,
    pub streams_expected: u64,
    pub streams_missing: u64,
    /// `chunks × tokens_per_chunk`.
    pub tokens: u64,
    /// Seconds from the asks to the last answer's end (or the timeout).
    pub seconds: f64,
    /// Emit -> receipt latency of every marker.
    pub latency_ms: Percentiles,
    /// The same latencies as counts per 0.1 ms bucket (`"bucket": count`), as the Node watchers
    /// report them.
    pub hist: BTreeMap<u64, u64>,
    /// CPU time (user + system) of this process during the answers.
    pub client_cpu_seconds: f64,
    /// Worst lateness of a 10 ms timer on the generator's runtime during the answers.
    pub loop_delay_max_ms: f64,
    pub errors: Vec<String>,
}

/// `CLOCK_MONOTONIC` in microseconds: the clock the fake provider stamps its chunks with.
pub fn monotonic_us() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the valid, exclusive `ts`.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1_000
}

/// CPU seconds (user + system) this process has used so far.
pub fn process_cpu_seconds() -> f64 {
    // SAFETY: an all-zero rusage is a valid value; getrusage only writes into it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a valid, exclusive rusage for the call to fill.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

/// What every socket task shares.
#[derive(Default)]
struct Shared {
    latency: Histogram,
    /// Sockets subscribed so far.
    subscribed: AtomicUsize,
    /// (socket, answer) pairs that ended (`stream_end` or `stream_error`).
    ended: AtomicUsize,
    /// How many ends make the run complete: the sockets that subscribed.
    want: AtomicUsize,
    all_ended: Notify,
    errors: Mutex<Vec<String>>,
    frames: AtomicU64,
}

impl Shared {
    fn error(&self, e: String) {
        let mut errors = self.errors.lock().unwrap_or_else(|e| e.into_inner());
        if errors.len() < 20 {
            errors.push(e);
        }
    }
}

/// The fields of a server frame this tool reads (every other one is skipped unparsed).
#[derive(serde::Deserialize)]
struct Frame<'a> {
    #[serde(rename = "type", borrow)]
    ty: Cow<'a, str>,
    #[serde(default, borrow)]
    stream_id: Option<Cow<'a, str>>,
    #[serde(default)]
    offset: Option<u64>,
    #[serde(default, borrow)]
    delta: Option<Cow<'a, str>>,
}

/// Everything one socket does, from subscribed to the end of the run.
struct Watcher {
    ws: Ws,
    thread: Arc<str>,
    /// This socket asks the agent when told to go.
    asks: bool,
    answers: HashMap<String, Answer>,
    tally: Tally,
}

impl Watcher {
    async fn run(
        mut self,
        agent: Arc<str>,
        shared: Arc<Shared>,
        go: CancellationToken,
        done: CancellationToken,
    ) -> Tally {
        let mut asked = !self.asks;
        loop {
            tokio::select! {
                biased;
                _ = done.cancelled() => break,
                _ = go.cancelled(), if !asked => {
                    asked = true;
                    let frame = serde_json::to_string(&ClientFrameShape::Send {
                        thread: self.thread.to_string(),
                        client_id: uuid::Uuid::new_v4().to_string(),
                        body: format!("@{agent} go"),
                        agent: Some(agent.to_string()),
                        agents: None,
                    })
                    .expect("client frames always serialise");
                    if let Err(e) = self.ws.send(Message::Text(frame.into())).await {
                        shared.error(format!("ask: {e}"));
                    }
                }
                frame = self.ws.next() => match frame {
                    Some(Ok(Message::Text(t))) => self.on_frame(t.as_str(), &shared),
                    Some(Ok(Message::Close(c))) => {
                        shared.error(format!("closed {c:?}"));
                        break;
                    }
                    None => {
                        shared.error("closed".into());
                        break;
                    }
                    Some(Err(e)) => {
                        shared.error(format!("socket: {e}"));
                        break;
                    }
                    Some(Ok(_)) => {}
                }
            }
        }
        self.finish()
    }

    fn on_frame(&mut self, text: &str, shared: &Shared) {
        let now = monotonic_us();
        shared.frames.fetch_add(1, Ordering::Relaxed);
        let Ok(f) = serde_json::from_str::<Frame>(text) else {
            shared.error(format!(
                "unreadable frame: {}",
                &text[..text.len().min(120)]
            ));
            return;
        };
        let id = f.stream_id.as_deref().unwrap_or_default();
        match f.ty.as_ref() {
            "stream_start" => {
                self.answers.entry(id.to_string()).or_default();
            }
            "stream_chunk" => {
                let answer = match self.answers.get_mut(id) {
                    Some(a) => a,
                    None => self.answers.entry(id.to_string()).or_default(),
                };
                let delta = f.delta.as_deref().unwrap_or_default();
                answer.chunk(
                    f.offset.unwrap_or(0),
                    delta,
                    now,
                    &mut self.tally,
                    &shared.latency,
                );
            }
            "stream_end" | "stream_error" => {
                if f.ty == "stream_error" {
                    shared.error(format!("stream_error {}", error_code(text)));
                }
                let answer = self.answers.entry(id.to_string()).or_default();
                if !answer.ended {
                    answer.ended = true;
                    let want = shared.want.load(Ordering::Acquire);
                    if shared.ended.fetch_add(1, Ordering::AcqRel) + 1 == want {
                        shared.all_ended.notify_one();
                    }
                }
            }
            "error" => shared.error(format!("error {}", error_code(text))),
            _ => {}
        }
    }

    fn finish(mut self) -> Tally {
        if self.answers.is_empty() {
            self.tally.streams_missing += 1;
        }
        for a in self.answers.values() {
            self.tally.streams_seen += 1;
            self.tally.streams_ended += u64::from(a.ended);
            match a.total {
                Some(total) => self.tally.lost += total.saturating_sub(a.distinct),
                None => self.tally.streams_missing += 1,
            }
        }
        self.tally
    }
}

/// `code` (and `message`) of an error frame, for the report.
fn error_code(text: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(text).unwrap_or_default();
    let s = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or("").to_string();
    format!("{}: {}", s("code"), s("message"))
}

/// Register a user and create `n` threads with the agent, when none were given.
async fn prepare(
    cfg: &AgentStreamConfig,
    target: &Target,
) -> anyhow::Result<(String, Vec<String>)> {
    let api = Client::new(target.http.clone())?;
    let token = match &cfg.token {
        Some(t) => t.clone(),
        None => {
            register(&api, &format!("{}_as", random_hex(4)))
                .await?
                .token
        }
    };
    if !cfg.threads.is_empty() {
        return Ok((token, cfg.threads.clone()));
    }
    let api = api.with_token(&token);
    let gate = Arc::new(Semaphore::new(16));
    let mut made = Vec::with_capacity(cfg.answers);
    for i in 0..cfg.answers {
        let (api, gate, agent) = (api.clone(), gate.clone(), cfg.agent.clone());
        made.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await;
            let thread = NewThread {
                title: format!("answer {i}"),
                agents: Some(vec![agent]),
            };
            api.create_thread(&thread).await.map(|t| t.id)
        }));
    }
    let mut threads = Vec::with_capacity(cfg.answers);
    for m in made {
        threads.push(m.await?.context("creating a thread with the agent")?);
    }
    Ok((token, threads))
}

/// Connect, subscribe, ask, read every answer, and report.
pub async fn run(cfg: AgentStreamConfig) -> anyhow::Result<AgentStreamReport> {
    if cfg.watchers == 0 {
        bail!("--watchers must be at least 1");
    }
    let target = Target::parse(&cfg.url, &cfg.ws_path)?;
    let (token, threads) = if cfg.token.is_none() && !cfg.threads.is_empty() {
        (None, cfg.threads.clone())
    } else {
        let (t, th) = prepare(&cfg, &target).await?;
        (Some(t), th)
    };
    let want = threads.len() * cfg.watchers;
    let shared = Arc::new(Shared::default());
    let (go, done) = (CancellationToken::new(), CancellationToken::new());
    let agent: Arc<str> = cfg.agent.as_str().into();

    // Connect every socket (at most `connect_concurrency` handshakes at once).
    let gate = Arc::new(Semaphore::new(cfg.connect_concurrency.max(1)));
    let mut connecting = Vec::with_capacity(want);
    for thread in &threads {
        let thread: Arc<str> = thread.as_str().into();
        for w in 0..cfg.watchers {
            let permit = gate.clone().acquire_owned().await.expect("never closed");
            let (target, token, thread) = (target.clone(), token.clone(), thread.clone());
            let (shared, agent, go, done) =
                (shared.clone(), agent.clone(), go.clone(), done.clone());
            connecting.push(tokio::spawn(async move {
                let ws = connect_client(
                    &target,
                    Protocol::Emergence,
                    token.as_deref(),
                    Some(&thread),
                    4 * 1024,
                )
                .await;
                // Counted before the permit goes back: the count is read once every permit is.
                let ws = match ws {
                    Ok(ws) => ws,
                    Err(e) => {
                        shared.error(format!("connect: {e:#}"));
                        return None;
                    }
                };
                shared.subscribed.fetch_add(1, Ordering::Relaxed);
                drop(permit);
                let watcher = Watcher {
                    ws,
                    thread,
                    asks: w == 0,
                    answers: HashMap::new(),
                    tally: Tally::default(),
                };
                Some(watcher.run(agent, shared, go, done).await)
            }));
        }
    }
    // Every attempt has finished once every permit is back.
    let _all = gate
        .acquire_many(cfg.connect_concurrency.max(1) as u32)
        .await
        .expect("never closed");
    let sockets = shared.subscribed.load(Ordering::Relaxed);
    shared.want.store(sockets, Ordering::Release);
    if sockets == 0 {
        let errors = shared.errors.lock().unwrap_or_else(|e| e.into_inner());
        bail!("no socket could subscribe: {:?}", errors.first());
    }

    if cfg.stdin_go {
        println!("READY");
        let mut line = String::new();
        tokio::task::spawn_blocking(move || std::io::stdin().read_line(&mut line))
            .await?
            .context("reading the go line on stdin")?;
    }
    let cpu0 = process_cpu_seconds();
    let started = Instant::now();
    go.cancel();
    if cfg.stdin_go {
        println!("GO");
    }
    let lag = spawn_lag_probe(done.clone());
    tokio::select! {
        _ = shared.all_ended.notified() => {}
        _ = tokio::time::sleep(cfg.timeout) => {
            shared.error(format!(
                "timeout: {} of {want} answers ended",
                shared.ended.load(Ordering::Relaxed)
            ));
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let cpu = process_cpu_seconds() - cpu0;
    done.cancel();
    let loop_delay_max_ms = lag.await.unwrap_or(0.0);

    let mut report = AgentStreamReport {
        answers: threads.len(),
        watchers: cfg.watchers,
        sockets,
        connect_errors: want - sockets,
        streams_expected: want as u64,
        seconds,
        client_cpu_seconds: cpu,
        loop_delay_max_ms,
        ..Default::default()
    };
    let mut missing_sockets = want - sockets;
    for c in connecting {
        match c.await {
            Ok(Some(t)) => {
                report.chunks += t.chunks;
                report.duplicates += t.duplicates;
                report.lost += t.lost;
                report.gaps += t.gaps;
                report.streams_seen += t.streams_seen;
                report.streams_ended += t.streams_ended;
                report.streams_missing += t.streams_missing;
            }
            Ok(None) => {}
            Err(_) => missing_sockets += 1,
        }
    }
    report.streams_missing += missing_sockets as u64;
    report.tokens = report.chunks * cfg.tokens_per_chunk;
    report.latency_ms = shared.latency.percentiles();
    report.hist = shared.latency.buckets(100);
    report.errors = shared
        .errors
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    Ok(report)
}

/// The worst lateness of a 10 ms timer until `done`: how far behind the runtime ran.
fn spawn_lag_probe(done: CancellationToken) -> tokio::task::JoinHandle<f64> {
    tokio::spawn(async move {
        let period = Duration::from_millis(10);
        let mut worst = Duration::ZERO;
        let mut due = Instant::now() + period;
        loop {
            tokio::select! {
                _ = done.cancelled() => break,
                _ = tokio::time::sleep_until(due.into()) => {}
            }
            let now = Instant::now();
            worst = worst.max(now.saturating_duration_since(due));
            due = now + period;
        }
        worst.as_secs_f64() * 1000.0
    })
}

impl AgentStreamReport {
    /// The human-readable summary.
    pub fn to_text(&self) -> String {
        let l = &self.latency_ms;
        let mut s = format!(
            "emergence load agentstream: {} answers x {} watchers ({} sockets, {} connect errors)\n",
            self.answers, self.watchers, self.sockets, self.connect_errors
        );
        s.push_str(&format!(
            "  chunks      {} received, {} lost, {} duplicated, {} offset gaps; {} tokens in {:.1} s ({:.0}/s)\n",
            self.chunks,
            self.lost,
            self.duplicates,
            self.gaps,
            self.tokens,
            self.seconds,
            self.tokens as f64 / self.seconds.max(1e-9)
        ));
        s.push_str(&format!(
            "  answers     {} of {} seen, {} ended, {} missing\n",
            self.streams_seen, self.streams_expected, self.streams_ended, self.streams_missing
        ));
        s.push_str(&format!(
            "  latency     p50 {:.2} ms  p90 {:.2} ms  p99 {:.2} ms  p99.9 {:.2} ms  max {:.2} ms  ({} chunks)\n",
            l.p50, l.p90, l.p99, l.p999, l.max, l.count
        ));
        s.push_str(&format!(
            "  client      {:.2} CPU s, worst timer lateness {:.1} ms\n",
            self.client_cpu_seconds, self.loop_delay_max_ms
        ));
        if !self.errors.is_empty() {
            s.push_str(&format!("  errors      {:?}\n", self.errors));
        }
        s
    }
}
