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
//! log-linear histogram (about 3 % resolution) shared by every task.

use std::{
    collections::BTreeMap,
    io::{IsTerminal, Write},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context, anyhow, bail};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::{
    net::TcpStream,
    sync::{Semaphore, mpsc},
};
use tokio_tungstenite::{
    WebSocketStream,
    tungstenite::{Message, client::IntoClientRequest, protocol::WebSocketConfig},
};
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

// ---------------------------------------------------------------------------------------------
// Histogram

const SUB_BITS: u32 = 5;
const SUB: u64 = 1 << SUB_BITS;
const LINEAR: u64 = 2 * SUB;
const BUCKETS: usize = (LINEAR + (64 - (SUB_BITS as u64 + 1)) * SUB) as usize;

/// A lock-free log-linear histogram of microseconds: exact below 64 µs, then 32 buckets per
/// power of two (at most ~3 % error), up to `u64::MAX`.
pub struct Histogram {
    buckets: Box<[AtomicU64]>,
    count: AtomicU64,
    sum: AtomicU64,
    max: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum: AtomicU64::new(0),
            max: AtomicU64::new(0),
        }
    }
}

impl Histogram {
    fn index(v: u64) -> usize {
        if v < LINEAR {
            return v as usize;
        }
        let exp = 63 - v.leading_zeros(); // >= SUB_BITS + 1
        let shift = exp - SUB_BITS;
        let sub = (v >> shift) & (SUB - 1);
        (LINEAR + (exp as u64 - (SUB_BITS as u64 + 1)) * SUB + sub) as usize
    }

    /// Largest value that falls in bucket `i`.
    fn upper(i: usize) -> u64 {
        let i = i as u64;
        if i < LINEAR {
            return i;
        }
        let exp = (i - LINEAR) / SUB + SUB_BITS as u64 + 1;
        let sub = (i - LINEAR) % SUB;
        let shift = exp - SUB_BITS as u64;
        // Computed as `low + (width - 1)` so the top bucket does not overflow.
        ((SUB + sub) << shift) + ((1u64 << shift) - 1)
    }

    pub fn record(&self, micros: u64) {
        self.buckets[Self::index(micros)].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum.fetch_add(micros, Ordering::Relaxed);
        self.max.fetch_max(micros, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// The value at quantile `q` (0..=1), in microseconds (a bucket's upper bound, capped at max).
    pub fn quantile(&self, q: f64) -> u64 {
        let total = self.count();
        if total == 0 {
            return 0;
        }
        let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for (i, b) in self.buckets.iter().enumerate() {
            seen += b.load(Ordering::Relaxed);
            if seen >= rank {
                return Self::upper(i).min(self.max.load(Ordering::Relaxed));
            }
        }
        self.max.load(Ordering::Relaxed)
    }

    pub fn percentiles(&self) -> Percentiles {
        let count = self.count();
        let ms = |us: u64| us as f64 / 1000.0;
        Percentiles {
            count,
            p50: ms(self.quantile(0.50)),
            p90: ms(self.quantile(0.90)),
            p99: ms(self.quantile(0.99)),
            p999: ms(self.quantile(0.999)),
            max: ms(self.max.load(Ordering::Relaxed)),
            mean: if count == 0 {
                0.0
            } else {
                ms(self.sum.load(Ordering::Relaxed)) / count as f64
            },
        }
    }

    /// Counts per coarse range (1-2-5 steps in ms), for the printed histogram.
    pub fn coarse(&self) -> Vec<(f64, u64)> {
        const BOUNDS_MS: [f64; 19] = [
            0.1,
            0.2,
            0.5,
            1.0,
            2.0,
            5.0,
            10.0,
            20.0,
            50.0,
            100.0,
            200.0,
            500.0,
            1e3,
            2e3,
            5e3,
            1e4,
            2e4,
            5e4,
            f64::INFINITY,
        ];
        let mut out: Vec<(f64, u64)> = BOUNDS_MS.iter().map(|b| (*b, 0)).collect();
        for (i, b) in self.buckets.iter().enumerate() {
            let n = b.load(Ordering::Relaxed);
            if n == 0 {
                continue;
            }
            let ms = Self::upper(i) as f64 / 1000.0;
            let slot = BOUNDS_MS
                .iter()
                .position(|b| ms <= *b)
                .unwrap_or(BOUNDS_MS.len() - 1);
            out[slot].1 += n;
        }
        out.retain(|(_, n)| *n > 0);
        out
    }
}

// ---------------------------------------------------------------------------------------------
// Shared counters and the clock

/// Wall-clock microseconds, read through a monotonic clock so that every task agrees.
#[derive(Clone, Copy)]
struct Clock {
    base: Instant,
    base_unix_us: u64,
}

impl Clock {
    fn new() -> Self {
        let unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_micros() as u64;
        Self {
            base: Instant::now(),
            base_unix_us: unix,
        }
    }
    fn unix_us(&self, at: Instant) -> u64 {
        self.base_unix_us + at.saturating_duration_since(self.base).as_micros() as u64
    }
    fn now_us(&self) -> u64 {
        self.unix_us(Instant::now())
    }
}

#[derive(Default)]
struct Stats {
    connected: AtomicUsize,
    /// Sender tasks still in their send loop.
    senders_active: AtomicUsize,
    connect_failures: AtomicUsize,
    open: AtomicUsize,
    sent: AtomicU64,
    unsent: AtomicU64,
    persisted: AtomicU64,
    queued: AtomicU64,
    delivered: AtomicU64,
    last_delivery_us: AtomicU64,
    errors: AtomicU64,
    closed_by_server: AtomicU64,
    errors_by_code: Mutex<BTreeMap<String, u64>>,
    latency: Histogram,
    connect: Histogram,
    first_error: Mutex<Option<String>>,
}

impl Stats {
    fn error(&self, code: &str) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        *self
            .errors_by_code
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(code.to_string())
            .or_default() += 1;
    }
    fn connect_failed(&self, why: String) {
        self.connect_failures.fetch_add(1, Ordering::Relaxed);
        let mut first = self.first_error.lock().unwrap_or_else(|e| e.into_inner());
        if first.is_none() {
            *first = Some(why);
        }
    }
}

/// The timestamp a load message carries: the digits after `"lg:` in a frame.
fn stamp(text: &str) -> Option<u64> {
    let at = text.find("\"lg:")? + 4;
    let rest = &text.as_bytes()[at..];
    let end = rest.iter().position(|b| !b.is_ascii_digit())?;
    std::str::from_utf8(&rest[..end]).ok()?.parse().ok()
}

/// The value of a short string field, found without parsing the whole frame.
fn field<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    let key = format!("\"{name}\":\"");
    let at = text.find(&key)? + key.len();
    let rest = &text[at..];
    Some(&rest[..rest.find('"')?])
}

fn frame_type(text: &str) -> Option<&str> {
    field(text, "type")
}

// ---------------------------------------------------------------------------------------------
// Target and setup

/// Where to connect: the HTTP base (for setup) and the WebSocket endpoint.
#[derive(Debug, Clone)]
struct Target {
    http: reqwest::Url,
    ws: String,
    host: String,
    port: u16,
}

impl Target {
    fn parse(url: &str, ws_path: &str) -> anyhow::Result<Target> {
        let http = reqwest::Url::parse(url).with_context(|| format!("--url {url:?}"))?;
        let scheme = match http.scheme() {
            "http" | "ws" => "ws",
            "https" | "wss" => bail!(
                "{url}: TLS WebSockets are not built into this binary (tokio-tungstenite without a TLS \
                 feature); load-test through a plain-HTTP address or a local TLS-terminating proxy"
            ),
            other => bail!("--url must be http(s)://, not {other}://"),
        };
        let host = http
            .host_str()
            .ok_or_else(|| anyhow!("--url has no host"))?
            .to_string();
        let port = http.port_or_known_default().unwrap_or(80);
        let host_port = match http.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.clone(),
        };
        let mut http = http;
        if http.scheme() == "ws" {
            let _ = http.set_scheme("http");
        }
        Ok(Target {
            ws: format!("{scheme}://{host_port}{ws_path}"),
            http,
            host,
            port,
        })
    }

    fn api(&self, path: &str) -> String {
        format!("{}{}", self.http.as_str().trim_end_matches('/'), path)
    }

    fn ws_url(&self, token: Option<&str>) -> String {
        match token {
            Some(t) => format!("{}?token={}", self.ws, encode_query(t)),
            None => self.ws.clone(),
        }
    }
}

fn encode_query(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Tokens and the thread a run uses.
struct Plan {
    /// Token of the subscribers (and of idle connections).
    subscriber: Option<String>,
    /// One token per sender.
    senders: Vec<String>,
    thread: Option<String>,
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).expect("the OS random source works");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// A user registered for this run.
struct User {
    token: String,
    username: String,
}

async fn register(http: &reqwest::Client, target: &Target, tag: &str) -> anyhow::Result<User> {
    let username = format!("lg_{tag}");
    let password = random_hex(12);
    let res = http
        .post(target.api("/api/auth/register"))
        .json(&json!({"username": username, "password": password}))
        .send()
        .await
        .context("registering a load-test user")?;
    let status = res.status();
    if status.as_u16() == 429 {
        bail!(
            "registering load-test users was rate limited: start the server with \
             EMERGENCE_AUTH_RATE_PER_MIN=0, use fewer --senders, or pass --token"
        );
    }
    let body: Value = res.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        bail!("registering a load-test user: HTTP {status}: {body}");
    }
    let token = body["token"]
        .as_str()
        .ok_or_else(|| anyhow!("register answered without a token: {body}"))?;
    Ok(User {
        token: token.to_string(),
        username,
    })
}

async fn create_thread(
    http: &reqwest::Client,
    target: &Target,
    token: &str,
) -> anyhow::Result<String> {
    let res = http
        .post(target.api("/api/threads"))
        .bearer_auth(token)
        .json(&json!({"title": "emergence load"}))
        .send()
        .await
        .context("creating the load-test thread")?;
    let status = res.status();
    let body: Value = res.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        bail!("creating the load-test thread: HTTP {status}: {body}");
    }
    body["id"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| anyhow!("thread without id: {body}"))
}

async fn add_member(
    http: &reqwest::Client,
    target: &Target,
    owner: &str,
    thread: &str,
    username: &str,
) -> anyhow::Result<()> {
    let res = http
        .post(target.api(&format!("/api/threads/{thread}/members")))
        .bearer_auth(owner)
        .json(&json!({"username": username}))
        .send()
        .await
        .context("adding a sender to the thread")?;
    if !res.status().is_success() {
        bail!("adding {username} to the thread: HTTP {}", res.status());
    }
    Ok(())
}

/// Register what is missing: one user whose token every subscriber shares (connections per user
/// are unlimited), one user per sender, and a thread they all belong to.
async fn prepare(cfg: &LoadConfig, target: &Target) -> anyhow::Result<Plan> {
    if cfg.protocol == Protocol::Broadcast {
        return Ok(Plan {
            subscriber: None,
            senders: vec![String::new(); cfg.senders],
            thread: None,
        });
    }
    let needs_thread = cfg.mode != Mode::Idle;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    if let Some(token) = &cfg.token {
        let thread = match (&cfg.thread, needs_thread) {
            (Some(t), _) => Some(t.clone()),
            (None, true) => Some(create_thread(&http, target, token).await?),
            (None, false) => None,
        };
        return Ok(Plan {
            subscriber: Some(token.clone()),
            senders: vec![token.clone(); cfg.senders],
            thread,
        });
    }
    let run = random_hex(4);
    let owner = register(&http, target, &format!("{run}_owner")).await?;
    let thread = match (&cfg.thread, needs_thread) {
        (Some(t), _) => Some(t.clone()),
        (None, true) => Some(create_thread(&http, target, &owner.token).await?),
        (None, false) => None,
    };
    let mut senders = Vec::with_capacity(cfg.senders);
    if cfg.mode != Mode::Idle {
        for i in 0..cfg.senders {
            let user = register(&http, target, &format!("{run}_s{i}")).await?;
            if let Some(t) = &thread {
                add_member(&http, target, &owner.token, t, &user.username).await?;
            }
            senders.push(user.token);
        }
    }
    Ok(Plan {
        subscriber: Some(owner.token),
        senders,
        thread,
    })
}

// ---------------------------------------------------------------------------------------------
// Connections

type Ws = WebSocketStream<TcpStream>;

fn ws_config(read_buffer: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(read_buffer)
        .write_buffer_size(0)
        .max_message_size(Some(1 << 20))
        .max_frame_size(Some(1 << 20))
}

/// TCP connect + WebSocket handshake, bounded by a timeout.
async fn open(target: &Target, url: &str, read_buffer: usize) -> anyhow::Result<Ws> {
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
async fn expect(ws: &mut Ws, want: &str) -> anyhow::Result<()> {
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
async fn connect_client(
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
            let frame = json!({"type": "subscribe", "thread": thread}).to_string();
            ws.send(Message::Text(frame.into())).await?;
            expect(&mut ws, "subscribed").await?;
        }
    }
    Ok(ws)
}

const APP_PING_EVERY: Duration = Duration::from_secs(25);

fn ping_frame() -> Message {
    Message::Text(r#"{"type":"ping"}"#.into())
}

/// A subscriber (or idle connection): read until stopped, timing every load message, and send
/// an app-level ping every 25 s so the server's idle timeout never fires.
async fn hold(mut ws: Ws, stats: Arc<Stats>, clock: Clock, stop: CancellationToken, time: bool) {
    stats.open.fetch_add(1, Ordering::Relaxed);
    // Spread the pings so ten thousand clients do not ping in the same millisecond.
    let jitter = Duration::from_millis(u64::from_le_bytes(rand8()) % 5_000);
    let mut next_ping = tokio::time::Instant::now() + APP_PING_EVERY - jitter;
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep_until(next_ping) => {
                next_ping += APP_PING_EVERY;
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
                        stats.latency.record(now.saturating_sub(ts));
                        stats.delivered.fetch_add(1, Ordering::Relaxed);
                        stats.last_delivery_us.fetch_max(now, Ordering::Relaxed);
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

fn rand8() -> [u8; 8] {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).expect("the OS random source works");
    b
}

/// Connect `n` clients (at most `concurrency` handshakes at once); each ready client is handed
/// to `hold`. Returns when every attempt has finished.
#[allow(clippy::too_many_arguments)]
async fn connect_many(
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
            let _ = done.send(());
            match ws {
                Ok(ws) => {
                    stats.connect.record(started.elapsed().as_micros() as u64);
                    stats.connected.fetch_add(1, Ordering::Relaxed);
                    hold(ws, stats, clock, stop, time).await;
                }
                Err(e) => stats.connect_failed(format!("{e:#}")),
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

fn pad(bytes: usize) -> String {
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

fn send_frame(protocol: Protocol, thread: Option<&str>, client_id: &str, body: &str) -> String {
    match protocol {
        Protocol::Emergence => json!({
            "type": "send", "thread": thread.unwrap_or_default(),
            "client_id": client_id, "body": body,
        })
        .to_string(),
        Protocol::Broadcast => {
            json!({"type": "send", "client_id": client_id, "body": body}).to_string()
        }
    }
}

/// Count what the server answers a sender: acks, errors, and (broadcast) its own echoes.
fn on_sender_frame(text: &str, stats: &Stats, clock: &Clock, timing: bool) -> bool {
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
fn sent_at(client_id: &str) -> Option<u64> {
    client_id.rsplit('-').next()?.parse().ok()
}

/// How far past the end of the run a fanout sender may still send what it was scheduled to.
const LATE_SEND_CUTOFF: Duration = Duration::from_millis(500);

/// A fanout sender: `rate` messages per second on a fixed schedule starting at `start + offset`,
/// until `end`. Each body carries its scheduled time; a late send keeps that time.
#[allow(clippy::too_many_arguments)]
async fn fanout_sender(
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
async fn persist_sender(
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
fn spawn_progress(
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
                Mode::Fanout => stats.delivered.load(Ordering::Relaxed),
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

fn human(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

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
    let (subscribe, time, read_buffer) = match cfg.mode {
        Mode::Fanout => (plan.thread.clone(), true, 16 * 1024),
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
        Mode::Fanout => s.delivered.load(Ordering::Relaxed),
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

    let delivered = stats.delivered.load(Ordering::Relaxed);
    let sent = stats.sent.load(Ordering::Relaxed);
    let secs = cfg.duration.as_secs_f64();
    let throughput = match cfg.mode {
        Mode::Fanout => {
            // Deliveries that arrive after the window stretch the denominator: a server that
            // falls behind gets no credit for catching up later.
            let start_us = clock.unix_us(start.into_std());
            let last = stats.last_delivery_us.load(Ordering::Relaxed).max(end_us);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_round_trip_within_three_percent() {
        for v in [
            0u64,
            1,
            63,
            64,
            65,
            100,
            1_000,
            12_345,
            1_000_000,
            987_654_321,
        ] {
            let i = Histogram::index(v);
            let up = Histogram::upper(i);
            assert!(up >= v, "{v} -> bucket {i} upper {up}");
            assert!(
                (up - v) as f64 <= (v as f64 * 0.032).max(0.0) + 0.5,
                "{v} -> {up}"
            );
            if i > 0 {
                assert!(
                    Histogram::upper(i - 1) < v,
                    "{v} belongs above bucket {}",
                    i - 1
                );
            }
        }
        assert!(Histogram::index(u64::MAX) < BUCKETS);
    }

    #[test]
    fn quantiles_of_a_uniform_spread() {
        let h = Histogram::default();
        for v in 1..=10_000u64 {
            h.record(v);
        }
        let p = h.percentiles();
        assert!((p.p50 - 5.0).abs() < 0.2, "{p:?}");
        assert!((p.p99 - 9.9).abs() < 0.35, "{p:?}");
        assert_eq!(p.max, 10.0);
    }

    #[test]
    fn load_frames_carry_their_timestamp() {
        let f = r#"{"author":{"id":"u"},"body":"lg:1732790000123456:0:7 xxx","type":"message"}"#;
        assert_eq!(stamp(f), Some(1_732_790_000_123_456));
        assert_eq!(stamp(r#"{"type":"ack","status":"persisted"}"#), None);
        assert_eq!(frame_type(f), Some("message"));
        assert_eq!(
            sent_at("lg-ab12-0-5-1732790000123456"),
            Some(1_732_790_000_123_456)
        );
    }

    #[test]
    fn targets_map_http_to_ws() {
        let t = Target::parse("http://127.0.0.1:8080/", "/ws").unwrap();
        assert_eq!(t.ws, "ws://127.0.0.1:8080/ws");
        assert_eq!(t.api("/api/threads"), "http://127.0.0.1:8080/api/threads");
        assert_eq!(
            t.ws_url(Some("v1.a+b")),
            "ws://127.0.0.1:8080/ws?token=v1.a%2Bb"
        );
        assert!(Target::parse("ftp://x", "/ws").is_err());
    }
}
