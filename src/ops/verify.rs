//! `emergence verify`: the post-deployment checklist as one command.
//!
//! It talks to a deployment the way its users do: the health endpoints, a browser's first load of
//! the web UI (request count, caching, compression, CSP), then N WebSockets that subscribe to one
//! thread and chat for a while. Each check becomes a row (name, target, measured value, verdict);
//! the three seed targets of docs/operations.md (WebSocket error rate < 1 %, no 429, database
//! reconnection success > 99 %) come first. The library function [`run`] never prints: the CLI
//! glue (`cli::verify`) draws the progress bar from [`Live`] and prints the [`Report`].
//!
//! Two choices worth knowing:
//! - The probe's own traffic must never trip the limits it verifies. Sends are limited per user
//!   (20/s by default), so the probe registers one user per [`CLIENTS_PER_USER`] clients and keeps
//!   each user at most at [`SENDS_PER_USER_PER_SEC`] (half the default); with `--token` there is
//!   one user, so each client sends less often instead.
//! - The WebSocket handshake goes through reqwest's HTTP upgrade, so `https://` deployments get
//!   `wss://` with the same rustls stack as every other request.

use std::{
    collections::{BTreeMap, HashMap},
    fmt::Write as _,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use futures_util::{SinkExt, StreamExt};
use reqwest::{Client, RequestBuilder, Response, StatusCode, Url, header};
use serde_json::{Value, json};
use tokio_tungstenite::{
    WebSocketStream,
    tungstenite::{self, Message, protocol::Role},
};
use tokio_util::sync::CancellationToken;

/// Name of the seed-target row: share of WebSocket connections that failed.
pub const WS_ERROR_RATE: &str = "WebSocket error rate";
/// Name of the seed-target row: rate-limited answers seen during the run.
pub const RATE_LIMITED: &str = "429 responses";
/// Name of the seed-target row: database reconnections that succeeded.
pub const DB_RECONNECT: &str = "DB reconnection success";
/// Name of the liveness row.
pub const HEALTHZ: &str = "/healthz";
/// Name of the readiness row.
pub const READYZ: &str = "/readyz";
/// Name of the row counting the web UI's first-load requests.
pub const WEB_FIRST_LOAD: &str = "Web UI first load";
/// Name of the row about hashed assets' `Cache-Control`.
pub const ASSET_CACHING: &str = "Hashed asset caching";
/// Name of the row about hashed assets' `Content-Encoding`.
pub const ASSET_COMPRESSION: &str = "Hashed asset compression";
/// Name of the row about `index.html` caching and revalidation.
pub const INDEX_REVALIDATION: &str = "index.html revalidation";
/// Name of the row about the page's Content-Security-Policy.
pub const CSP: &str = "Content-Security-Policy";
/// Name of the row about message persistence and fan-out.
pub const MESSAGE_DELIVERY: &str = "Message delivery";

/// WebSocket clients per probe user, so that a user's sends stay under its limit.
pub const CLIENTS_PER_USER: usize = 5;
/// The most sends per second the probe makes as one user: half the default limit of 20.
pub const SENDS_PER_USER_PER_SEC: f64 = 10.0;
/// How often each client sends, when its user's budget allows it.
pub const SEND_INTERVAL: Duration = Duration::from_millis(500);
/// A connection that has no `welcome` (or `subscribed`) within this time has failed.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// After the last send, how long to wait for acks and fan-out before counting what is missing.
pub const DELIVERY_GRACE: Duration = Duration::from_secs(5);

/// What to check and how hard.
#[derive(Debug, Clone)]
pub struct Options {
    /// The deployment's public URL (`http://` or `https://`); paths are taken from its origin.
    pub url: Url,
    /// Use this token instead of registering probe users.
    pub token: Option<String>,
    /// WebSocket connections to open.
    pub ws_clients: usize,
    /// How long the clients chat.
    pub duration: Duration,
    /// Where `/metrics` is served (default: the same origin).
    pub metrics_url: Option<Url>,
    /// Do not read metrics at all (they are private on Cloud Run): metric-based rows are skipped.
    pub skip_metrics: bool,
    /// The web UI's first-load request budget.
    pub max_requests: usize,
    /// Live counters for a progress display; `run` fills them.
    pub live: Arc<Live>,
}

impl Options {
    /// The defaults of the command line for this URL.
    pub fn new(url: Url) -> Options {
        Options {
            url,
            token: None,
            ws_clients: 20,
            duration: Duration::from_secs(10),
            metrics_url: None,
            skip_metrics: false,
            max_requests: 4,
            live: Arc::new(Live::default()),
        }
    }
}

/// A check's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Fail,
    /// Not measured because the operator asked so (`--skip-metrics`); does not fail the run.
    Skip,
}

/// One row of the report.
#[derive(Debug, Clone)]
pub struct Check {
    pub name: &'static str,
    pub target: String,
    pub value: String,
    pub verdict: Verdict,
    /// One of the three seed targets.
    pub seed: bool,
}

impl Check {
    fn new(
        name: &'static str,
        target: impl Into<String>,
        value: impl Into<String>,
        ok: bool,
    ) -> Check {
        Check {
            name,
            target: target.into(),
            value: value.into(),
            verdict: if ok { Verdict::Pass } else { Verdict::Fail },
            seed: false,
        }
    }

    fn seed(mut self) -> Check {
        self.seed = true;
        self
    }

    fn skipped(name: &'static str, target: impl Into<String>, why: impl Into<String>) -> Check {
        Check {
            verdict: Verdict::Skip,
            ..Check::new(name, target, why, true)
        }
    }

    pub fn passed(&self) -> bool {
        self.verdict != Verdict::Fail
    }
}

/// Message delivery latency: send to the first subscriber's receipt of the `message` frame.
#[derive(Debug, Clone, Default)]
pub struct Latency {
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    /// Messages measured.
    pub samples: usize,
}

/// The outcome of a run.
#[derive(Debug, Clone)]
pub struct Report {
    pub url: String,
    pub checks: Vec<Check>,
    pub latency: Latency,
    /// Things the operator should know that are not checks (e.g. a slowed-down send rate).
    pub notes: Vec<String>,
    /// Set when the deployment could not be reached at all: nothing was checked.
    pub unreachable: Option<String>,
}

impl Report {
    /// Everything that was checked passed.
    pub fn passed(&self) -> bool {
        self.unreachable.is_none() && self.checks.iter().all(Check::passed)
    }

    /// The checks that failed.
    pub fn failed(&self) -> Vec<&Check> {
        self.checks.iter().filter(|c| !c.passed()).collect()
    }

    /// The row with this name.
    pub fn check(&self, name: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.name == name)
    }

    /// 0 when everything passed, 1 when a check failed, 2 when nothing could be checked.
    pub fn exit_code(&self) -> u8 {
        if self.unreachable.is_some() {
            2
        } else if self.passed() {
            0
        } else {
            1
        }
    }

    /// The machine-readable form printed by `--json`.
    pub fn to_json(&self) -> Value {
        let checks: Vec<Value> = self
            .checks
            .iter()
            .map(|c| {
                let mut v = json!({
                    "name": c.name,
                    "target": c.target,
                    "value": c.value,
                    "passed": c.passed(),
                    "seed_target": c.seed,
                });
                if c.verdict == Verdict::Skip {
                    v["skipped"] = true.into();
                }
                v
            })
            .collect();
        let mut v = json!({
            "url": self.url,
            "passed": self.passed(),
            "checks": checks,
            "latency_ms": {
                "p50": self.latency.p50_ms,
                "p99": self.latency.p99_ms,
                "samples": self.latency.samples,
            },
            "notes": self.notes,
        });
        if let Some(e) = &self.unreachable {
            v["error"] = e.clone().into();
        }
        v
    }

    /// The human-readable table.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "emergence verify {}\n", self.url);
        if let Some(e) = &self.unreachable {
            let _ = writeln!(out, "UNREACHABLE: {e}\nNothing could be checked.");
            return out;
        }
        let name_w = self.checks.iter().map(|c| c.name.len()).max().unwrap_or(0);
        let target_w = self
            .checks
            .iter()
            .map(|c| c.target.chars().count())
            .max()
            .unwrap_or(0);
        for (title, seed) in [("Seed targets", true), ("Other checks", false)] {
            let _ = writeln!(out, "{title}");
            for c in self.checks.iter().filter(|c| c.seed == seed) {
                let verdict = match c.verdict {
                    Verdict::Pass => "PASS",
                    Verdict::Fail => "FAIL",
                    Verdict::Skip => "SKIP",
                };
                let _ = writeln!(
                    out,
                    "  {verdict}  {:name_w$}  {:target_w$}  {}",
                    c.name, c.target, c.value
                );
            }
            out.push('\n');
        }
        match (self.latency.p50_ms, self.latency.p99_ms) {
            (Some(p50), Some(p99)) => {
                let _ = writeln!(
                    out,
                    "Message delivery latency (send to first receipt): p50 {p50:.1} ms, p99 {p99:.1} ms over {} messages",
                    self.latency.samples
                );
            }
            _ => {
                let _ = writeln!(out, "Message delivery latency: not measured");
            }
        }
        for note in &self.notes {
            let _ = writeln!(out, "Note: {note}");
        }
        let failed = self.failed();
        if failed.is_empty() {
            let _ = writeln!(out, "\nPASSED: all {} checks", self.checks.len());
        } else {
            let names: Vec<&str> = failed.iter().map(|c| c.name).collect();
            let _ = writeln!(
                out,
                "\nFAILED: {} of {} checks: {}",
                failed.len(),
                self.checks.len(),
                names.join(", ")
            );
        }
        out
    }
}

/// Counters updated while the run goes on, for a progress display.
#[derive(Debug, Default)]
pub struct Live {
    phase: Mutex<&'static str>,
    load: Mutex<Option<(Instant, Duration)>>,
    pub clients: AtomicU64,
    pub clients_total: AtomicU64,
    pub sent: AtomicU64,
    pub delivered: AtomicU64,
    pub errors: AtomicU64,
    pub rate_limited: AtomicU64,
}

/// A snapshot of [`Live`].
#[derive(Debug, Clone)]
pub struct Progress {
    pub phase: &'static str,
    /// Elapsed and total time of the WebSocket phase, once it has started.
    pub load: Option<(Duration, Duration)>,
    pub clients: u64,
    pub clients_total: u64,
    pub sent: u64,
    pub delivered: u64,
    pub errors: u64,
    pub rate_limited: u64,
}

impl Live {
    fn set_phase(&self, phase: &'static str) {
        *self.phase.lock().unwrap_or_else(|e| e.into_inner()) = phase;
    }

    fn start_load(&self, total: Duration) {
        *self.load.lock().unwrap_or_else(|e| e.into_inner()) = Some((Instant::now(), total));
    }

    pub fn snapshot(&self) -> Progress {
        let load = self
            .load
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .map(|(at, total)| (at.elapsed().min(total), total));
        Progress {
            phase: *self.phase.lock().unwrap_or_else(|e| e.into_inner()),
            load,
            clients: self.clients.load(Ordering::Relaxed),
            clients_total: self.clients_total.load(Ordering::Relaxed),
            sent: self.sent.load(Ordering::Relaxed),
            delivered: self.delivered.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            rate_limited: self.rate_limited.load(Ordering::Relaxed),
        }
    }
}

impl Progress {
    /// One line: a text bar with elapsed/total time and the live counters.
    pub fn line(&self, width: usize) -> String {
        let (filled, time) = match self.load {
            Some((elapsed, total)) => {
                let share = if total.is_zero() {
                    1.0
                } else {
                    (elapsed.as_secs_f64() / total.as_secs_f64()).min(1.0)
                };
                (
                    (share * width as f64).round() as usize,
                    format!("{:.1}/{:.0}s", elapsed.as_secs_f64(), total.as_secs_f64()),
                )
            }
            None if self.clients_total == 0 => return format!("{}...", self.phase),
            None => (0, "-".to_string()),
        };
        format!(
            "[{}{}] {time} {:<12} clients {}/{} sent {} delivered {} errors {} 429 {}",
            "#".repeat(filled),
            "-".repeat(width.saturating_sub(filled)),
            self.phase,
            self.clients,
            self.clients_total,
            self.sent,
            self.delivered,
            self.errors,
            self.rate_limited,
        )
    }
}

/// Shared by every part of one run: the HTTP clients, the base URL and the 429 count.
struct Ctx {
    base: Url,
    http: Client,
    /// HTTP/1.1 only: the WebSocket upgrade.
    ws_http: Client,
    http_429: AtomicU64,
    live: Arc<Live>,
}

impl Ctx {
    fn url(&self, path: &str) -> Url {
        self.base.join(path).unwrap_or_else(|_| self.base.clone())
    }

    /// Send and count any 429.
    async fn send(&self, req: RequestBuilder) -> Result<Response, reqwest::Error> {
        let r = req.send().await?;
        self.count_status(r.status());
        Ok(r)
    }

    fn count_status(&self, status: StatusCode) {
        if status == StatusCode::TOO_MANY_REQUESTS {
            self.http_429.fetch_add(1, Ordering::Relaxed);
            self.live.rate_limited.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Run every check against the deployment at `opts.url`.
pub async fn run(opts: Options) -> Report {
    let live = opts.live.clone();
    let mut report = Report {
        url: opts.url.to_string(),
        checks: Vec::new(),
        latency: Latency::default(),
        notes: Vec::new(),
        unreachable: None,
    };
    let agent = concat!("emergence-verify/", env!("CARGO_PKG_VERSION"));
    let clients = (
        Client::builder()
            .user_agent(agent)
            .timeout(Duration::from_secs(15))
            .build(),
        Client::builder()
            .user_agent(agent)
            .http1_only()
            .connect_timeout(CONNECT_TIMEOUT)
            .build(),
    );
    let (Ok(http), Ok(ws_http)) = clients else {
        report.unreachable = Some("cannot set up an HTTP client (TLS roots?)".into());
        return report;
    };
    let ctx = Ctx {
        base: opts.url.clone(),
        http,
        ws_http,
        http_429: AtomicU64::new(0),
        live: live.clone(),
    };

    live.set_phase("health");
    match check_healthz(&ctx).await {
        Ok(check) => report.checks.push(check),
        Err(unreachable) => {
            report.unreachable = Some(unreachable);
            return report;
        }
    }
    report.checks.push(check_readyz(&ctx).await);

    let metrics_url = opts
        .metrics_url
        .clone()
        .unwrap_or_else(|| ctx.url("/metrics"));
    let before = if opts.skip_metrics {
        None
    } else {
        Some(scrape(&ctx, &metrics_url).await)
    };

    live.set_phase("web UI");
    report
        .checks
        .extend(check_web_ui(&ctx, opts.max_requests).await);

    let load = run_load(&ctx, &opts).await;
    report.notes.extend(load.notes.iter().cloned());

    live.set_phase("metrics");
    let after = if opts.skip_metrics {
        None
    } else {
        Some(scrape(&ctx, &metrics_url).await)
    };

    report.checks.insert(0, ws_error_rate_check(&load));
    report.checks.insert(
        1,
        rate_limited_check(&ctx, &load, before.as_ref(), after.as_ref()),
    );
    report
        .checks
        .insert(2, db_reconnect_check(after.as_ref(), &metrics_url));
    report.checks.push(delivery_check(&load));
    report.latency = load.latency();
    live.set_phase("done");
    report
}

async fn check_healthz(ctx: &Ctx) -> Result<Check, String> {
    let target = "200 {\"status\":\"ok\"}";
    let r = ctx
        .send(ctx.http.get(ctx.url("/healthz")))
        .await
        .map_err(|e| format!("cannot reach {}: {}", ctx.url("/healthz"), error_chain(&e)))?;
    let status = r.status();
    let body: Value = r.json().await.unwrap_or(Value::Null);
    let ok = status == StatusCode::OK && body == json!({"status": "ok"});
    Ok(Check::new(
        HEALTHZ,
        target,
        format!("{} {body}", status.as_u16()),
        ok,
    ))
}

async fn check_readyz(ctx: &Ctx) -> Check {
    let target = "200, status ready";
    match ctx.send(ctx.http.get(ctx.url("/readyz"))).await {
        Err(e) => Check::new(READYZ, target, error_chain(&e), false),
        Ok(r) => {
            let status = r.status();
            let body: Value = r.json().await.unwrap_or(Value::Null);
            let field = |k: &str| body[k].as_str().unwrap_or("?").to_string();
            let value = format!(
                "{} {} (db {}, broker {})",
                status.as_u16(),
                field("status"),
                field("db"),
                field("broker")
            );
            Check::new(
                READYZ,
                target,
                value,
                status == StatusCode::OK && body["status"] == "ready",
            )
        }
    }
}

/// What one fetch of the first load returned.
struct Fetched {
    url: Url,
    status: StatusCode,
    cache_control: String,
    encoding: Option<String>,
    content_type: String,
}

impl Fetched {
    fn hashed(&self) -> bool {
        self.url.path().contains("/assets/")
    }

    /// Text that a browser would get compressed (scripts, styles, SVG, JSON, HTML).
    fn compressible(&self) -> bool {
        let t = self.content_type.to_ascii_lowercase();
        t.starts_with("text/")
            || t.contains("javascript")
            || t.contains("json")
            || t.contains("svg")
    }

    fn label(&self) -> String {
        self.url.path().to_string()
    }
}

fn header_str(r: &Response, name: header::HeaderName) -> Option<String> {
    r.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

async fn fetch_like_a_browser(ctx: &Ctx, url: Url, accept: &str) -> Result<Fetched, String> {
    let r = ctx
        .send(
            ctx.http
                .get(url.clone())
                .header(header::ACCEPT, accept)
                .header(header::ACCEPT_ENCODING, "br, gzip"),
        )
        .await
        .map_err(|e| format!("{}: {}", url.path(), error_chain(&e)))?;
    let fetched = Fetched {
        url,
        status: r.status(),
        cache_control: header_str(&r, header::CACHE_CONTROL).unwrap_or_default(),
        encoding: header_str(&r, header::CONTENT_ENCODING),
        content_type: header_str(&r, header::CONTENT_TYPE).unwrap_or_default(),
    };
    // Download the body like a browser would.
    let _ = r.bytes().await;
    Ok(fetched)
}

/// The first load of the web UI, as a browser does it, and what the headers promise.
async fn check_web_ui(ctx: &Ctx, max_requests: usize) -> Vec<Check> {
    let budget = format!("<= {max_requests} requests, all 2xx");
    let fail_all = |why: String| {
        vec![
            Check::new(WEB_FIRST_LOAD, budget.clone(), why.clone(), false),
            Check::new(
                ASSET_CACHING,
                "immutable, max-age >= 31536000",
                "not checked: no page",
                false,
            ),
            Check::new(
                ASSET_COMPRESSION,
                "br or gzip when asked",
                "not checked: no page",
                false,
            ),
            Check::new(
                INDEX_REVALIDATION,
                "no-cache + ETag, If-None-Match -> 304",
                "not checked: no page",
                false,
            ),
            Check::new(
                CSP,
                "present, frame-ancestors 'none'",
                "not checked: no page",
                false,
            ),
        ]
    };
    let page_url = ctx.url("/");
    let page = match ctx
        .send(
            ctx.http
                .get(page_url.clone())
                .header(header::ACCEPT, "text/html")
                .header(header::ACCEPT_ENCODING, "br, gzip"),
        )
        .await
    {
        Ok(r) => r,
        Err(e) => return fail_all(format!("GET /: {}", error_chain(&e))),
    };
    let page_status = page.status();
    let page_cache = header_str(&page, header::CACHE_CONTROL).unwrap_or_default();
    let etag = header_str(&page, header::ETAG);
    let csp = header_str(&page, header::CONTENT_SECURITY_POLICY);
    let page_encoding = header_str(&page, header::CONTENT_ENCODING);
    let page_body = page.bytes().await.unwrap_or_default();
    if !page_status.is_success() {
        return fail_all(format!("GET / answered {}", page_status.as_u16()));
    }
    // The probe cannot decode brotli: it reads the HTML from an uncompressed copy. This request
    // is the tool's own and is not part of the browser's budget.
    let html = if page_encoding.is_none() {
        String::from_utf8_lossy(&page_body).into_owned()
    } else {
        match ctx
            .send(
                ctx.http
                    .get(page_url.clone())
                    .header(header::ACCEPT_ENCODING, "identity"),
            )
            .await
        {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(e) => return fail_all(format!("GET / (uncompressed): {}", error_chain(&e))),
        }
    };
    let refs = page_references(&html);
    let mut fetched = Vec::new();
    let mut errors = Vec::new();
    for r in &refs {
        let Ok(url) = page_url.join(&r.href) else {
            errors.push(format!("bad URL {}", r.href));
            continue;
        };
        let accept = match r.kind {
            RefKind::Script => "*/*",
            RefKind::Stylesheet => "text/css,*/*;q=0.1",
            RefKind::Icon => "image/*,*/*;q=0.8",
        };
        match fetch_like_a_browser(ctx, url, accept).await {
            Ok(f) => fetched.push(f),
            Err(e) => errors.push(e),
        }
    }
    let mut checks = Vec::new();

    // Request budget and statuses.
    let requests = 1 + refs.len();
    let scripts = refs.iter().filter(|r| r.kind == RefKind::Script).count();
    let styles = refs
        .iter()
        .filter(|r| r.kind == RefKind::Stylesheet)
        .count();
    let icons = refs.iter().filter(|r| r.kind == RefKind::Icon).count();
    let bad: Vec<String> = fetched
        .iter()
        .filter(|f| !f.status.is_success())
        .map(|f| format!("{} {}", f.label(), f.status.as_u16()))
        .chain(errors.iter().cloned())
        .collect();
    let mut value = format!(
        "{requests} requests (index.html, {scripts} script, {styles} stylesheet, {icons} icon)"
    );
    if bad.is_empty() {
        value.push_str(", all 2xx");
    } else {
        let _ = write!(value, "; failed: {}", bad.join(", "));
    }
    if scripts == 0 {
        value.push_str("; no <script src> in index.html");
    }
    checks.push(Check::new(
        WEB_FIRST_LOAD,
        budget,
        value,
        requests <= max_requests && bad.is_empty() && scripts > 0,
    ));

    // Hashed assets: cached forever, compressed when asked.
    let hashed: Vec<&Fetched> = fetched
        .iter()
        .filter(|f| f.hashed() && f.status.is_success())
        .collect();
    let not_immutable: Vec<String> = hashed
        .iter()
        .filter(|f| !immutable_for_a_year(&f.cache_control))
        .map(|f| format!("{} \"{}\"", f.label(), f.cache_control))
        .collect();
    let caching = if hashed.is_empty() {
        (String::from("no hashed /assets/ file referenced"), false)
    } else if not_immutable.is_empty() {
        (
            format!(
                "{} hashed assets: \"{}\"",
                hashed.len(),
                hashed[0].cache_control
            ),
            true,
        )
    } else {
        (
            format!("not immutable: {}", not_immutable.join(", ")),
            false,
        )
    };
    checks.push(Check::new(
        ASSET_CACHING,
        "immutable, max-age >= 31536000",
        caching.0,
        caching.1,
    ));
    let compressible: Vec<&&Fetched> = hashed.iter().filter(|f| f.compressible()).collect();
    let uncompressed: Vec<String> = compressible
        .iter()
        .filter(|f| !matches!(f.encoding.as_deref(), Some("br") | Some("gzip")))
        .map(|f| f.label())
        .collect();
    let encodings: Vec<String> = compressible
        .iter()
        .map(|f| f.encoding.clone().unwrap_or_else(|| "identity".into()))
        .collect();
    let compression = if compressible.is_empty() {
        (
            String::from("no compressible hashed asset referenced"),
            false,
        )
    } else if uncompressed.is_empty() {
        (
            format!(
                "{} text assets: {}",
                compressible.len(),
                encodings.join(", ")
            ),
            true,
        )
    } else {
        (
            format!("served uncompressed: {}", uncompressed.join(", ")),
            false,
        )
    };
    checks.push(Check::new(
        ASSET_COMPRESSION,
        "br or gzip when asked",
        compression.0,
        compression.1,
    ));

    // index.html: always revalidated, and revalidation is cheap.
    let no_cache = page_cache
        .split(',')
        .any(|d| d.trim().eq_ignore_ascii_case("no-cache"));
    let revalidation = match &etag {
        None => None,
        Some(tag) => match ctx
            .send(
                ctx.http
                    .get(page_url.clone())
                    .header(header::ACCEPT, "text/html")
                    .header(header::ACCEPT_ENCODING, "br, gzip")
                    .header(header::IF_NONE_MATCH, tag.as_str()),
            )
            .await
        {
            Ok(r) => Some(r.status().as_u16().to_string()),
            Err(e) => Some(error_chain(&e)),
        },
    };
    let value = format!(
        "Cache-Control \"{page_cache}\", ETag {}, If-None-Match -> {}",
        etag.as_deref().unwrap_or("missing"),
        revalidation.as_deref().unwrap_or("not tried")
    );
    checks.push(Check::new(
        INDEX_REVALIDATION,
        "no-cache + ETag, If-None-Match -> 304",
        value,
        no_cache && etag.is_some() && revalidation.as_deref() == Some("304"),
    ));

    let csp_ok = csp
        .as_deref()
        .is_some_and(|c| c.contains("frame-ancestors 'none'"));
    let csp_value = match &csp {
        None => "missing".to_string(),
        Some(_) if csp_ok => "present, frame-ancestors 'none'".to_string(),
        Some(c) => format!("\"{c}\""),
    };
    checks.push(Check::new(
        CSP,
        "present, frame-ancestors 'none'",
        csp_value,
        csp_ok,
    ));
    checks
}

fn immutable_for_a_year(cache_control: &str) -> bool {
    let directives: Vec<String> = cache_control
        .split(',')
        .map(|d| d.trim().to_ascii_lowercase())
        .collect();
    let max_age = directives
        .iter()
        .find_map(|d| {
            d.strip_prefix("max-age=")?
                .trim_matches('"')
                .parse::<u64>()
                .ok()
        })
        .unwrap_or(0);
    directives.iter().any(|d| d == "immutable") && max_age >= 31_536_000
}

/// A resource that index.html makes the browser load at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRef {
    pub kind: RefKind,
    pub href: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefKind {
    Script,
    Stylesheet,
    Icon,
}

/// `<script src>`, `<link rel="stylesheet" href>` and `<link rel="icon" href>` of a page.
pub fn page_references(html: &str) -> Vec<PageRef> {
    let mut refs = Vec::new();
    let mut rest = html;
    while let Some(start) = rest.find('<') {
        rest = &rest[start + 1..];
        let end = tag_end(rest);
        let tag = &rest[..end];
        rest = &rest[end..];
        let name: String = tag
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect::<String>()
            .to_ascii_lowercase();
        let attrs = attributes(&tag[name.len()..]);
        let attr = |k: &str| attrs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        match name.as_str() {
            "script" => {
                if let Some(src) = attr("src") {
                    refs.push(PageRef {
                        kind: RefKind::Script,
                        href: src,
                    });
                }
            }
            "link" => {
                let rel = attr("rel").unwrap_or_default().to_ascii_lowercase();
                let rels: Vec<&str> = rel.split_ascii_whitespace().collect();
                let kind = if rels.contains(&"stylesheet") {
                    Some(RefKind::Stylesheet)
                } else if rels.contains(&"icon") {
                    Some(RefKind::Icon)
                } else {
                    None
                };
                if let (Some(kind), Some(href)) = (kind, attr("href")) {
                    refs.push(PageRef { kind, href });
                }
            }
            _ => {}
        }
    }
    refs
}

/// Index of the `>` closing a tag, ignoring those inside quoted attribute values.
fn tag_end(s: &str) -> usize {
    let mut quote = None;
    for (i, c) in s.char_indices() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, '>') => return i,
            _ => {}
        }
    }
    s.len()
}

/// The attributes of a tag (names lowercased; values unquoted; bare attributes have "").
fn attributes(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        while i < chars.len() && (chars[i].is_whitespace() || chars[i] == '/') {
            i += 1;
        }
        let start = i;
        while i < chars.len() && !chars[i].is_whitespace() && chars[i] != '=' && chars[i] != '/' {
            i += 1;
        }
        if start == i {
            break;
        }
        let name: String = chars[start..i]
            .iter()
            .collect::<String>()
            .to_ascii_lowercase();
        while i < chars.len() && chars[i].is_whitespace() {
            i += 1;
        }
        let mut value = String::new();
        if i < chars.len() && chars[i] == '=' {
            i += 1;
            while i < chars.len() && chars[i].is_whitespace() {
                i += 1;
            }
            if i < chars.len() && (chars[i] == '"' || chars[i] == '\'') {
                let q = chars[i];
                i += 1;
                let vs = i;
                while i < chars.len() && chars[i] != q {
                    i += 1;
                }
                value = chars[vs..i].iter().collect();
                i += 1;
            } else {
                let vs = i;
                while i < chars.len() && !chars[i].is_whitespace() {
                    i += 1;
                }
                value = chars[vs..i].iter().collect();
            }
        }
        out.push((name, value));
    }
    out
}

/// The metric values verify reads.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scrape {
    /// `rate_limited_total`, all scopes.
    pub rate_limited: f64,
    /// `http_requests_total{status="429"}`, all routes.
    pub http_429: f64,
    pub db_up: f64,
    pub reconnect_attempts: f64,
    pub reconnect_success: f64,
}

/// Read the values verify needs from a Prometheus text exposition.
pub fn parse_metrics(text: &str) -> Result<Scrape, String> {
    let mut s = Scrape::default();
    let mut saw_db_up = false;
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((name, labels, value)) = sample(line) else {
            continue;
        };
        match name {
            "rate_limited_total" => s.rate_limited += value,
            "http_requests_total" if labels.contains("status=\"429\"") => s.http_429 += value,
            "db_up" => {
                s.db_up = value;
                saw_db_up = true;
            }
            "db_reconnect_attempts_total" => s.reconnect_attempts += value,
            "db_reconnect_success_total" => s.reconnect_success += value,
            _ => {}
        }
    }
    if saw_db_up {
        Ok(s)
    } else {
        Err("no Emergence metrics (db_up) in the answer".into())
    }
}

/// `name{labels} value [timestamp]` -> (name, raw labels, value).
fn sample(line: &str) -> Option<(&str, &str, f64)> {
    let (series, rest) = match line.find('{') {
        Some(open) => {
            let close = line.rfind('}')?;
            (&line[..open], (&line[open + 1..close], &line[close + 1..]))
        }
        None => {
            let space = line.find(' ')?;
            (&line[..space], ("", &line[space..]))
        }
    };
    let value = rest.1.split_whitespace().next()?.parse::<f64>().ok()?;
    Some((series.trim(), rest.0, value))
}

async fn scrape(ctx: &Ctx, url: &Url) -> Result<Scrape, String> {
    let r = ctx
        .send(ctx.http.get(url.clone()))
        .await
        .map_err(|e| error_chain(&e))?;
    let status = r.status();
    if !status.is_success() {
        return Err(format!("HTTP {}", status.as_u16()));
    }
    let text = r.text().await.map_err(|e| error_chain(&e))?;
    parse_metrics(&text)
}

/// One WebSocket client's view of the run.
struct ClientEnd {
    /// Why the connection ended before the run did.
    unexpected: Option<String>,
}

/// A message sent by a client, followed until every subscriber has it.
#[derive(Debug)]
struct Probe {
    sent_at: Instant,
    first_receipt: Option<Duration>,
    deliveries: usize,
    persisted: bool,
    refused: bool,
}

/// Everything the WebSocket phase measured.
#[derive(Debug, Default)]
struct Load {
    /// Could not even start (no user, no thread): why.
    setup_error: Option<String>,
    attempts: usize,
    failures: Vec<String>,
    subscribers: usize,
    sent: u64,
    persisted: u64,
    queued: u64,
    delivered: u64,
    error_frames: BTreeMap<String, u64>,
    rate_limited_frames: u64,
    first_receipts: Vec<Duration>,
    notes: Vec<String>,
}

impl Load {
    fn latency(&self) -> Latency {
        let mut ms: Vec<f64> = self
            .first_receipts
            .iter()
            .map(|d| d.as_secs_f64() * 1000.0)
            .collect();
        ms.sort_by(f64::total_cmp);
        Latency {
            p50_ms: percentile(&ms, 0.50),
            p99_ms: percentile(&ms, 0.99),
            samples: ms.len(),
        }
    }
}

/// Nearest-rank percentile of sorted values.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Who the probe is.
struct Identity {
    token: String,
    username: Option<String>,
    /// Registered by the probe: logged out at the end.
    ours: bool,
}

/// State shared by the client tasks.
struct Shared {
    thread: String,
    probes: Mutex<HashMap<String, Probe>>,
    error_frames: Mutex<BTreeMap<String, u64>>,
    persisted: AtomicU64,
    queued: AtomicU64,
    rate_limited_frames: AtomicU64,
    /// Clients that will send no more: the run waits for all of them before counting.
    done_sending: AtomicU64,
    live: Arc<Live>,
}

async fn run_load(ctx: &Ctx, opts: &Options) -> Load {
    let live = &ctx.live;
    let mut load = Load::default();
    live.set_phase("probe users");
    let identities = match identities(ctx, opts).await {
        Ok(ids) => ids,
        Err(e) => {
            load.setup_error = Some(e);
            return load;
        }
    };
    let result = chat(ctx, opts, &identities, &mut load).await;
    if let Err(e) = result {
        load.setup_error = Some(e);
    }
    live.set_phase("logout");
    for id in identities.iter().filter(|i| i.ours) {
        let _ = ctx
            .send(
                ctx.http
                    .post(ctx.url("/api/auth/logout"))
                    .bearer_auth(&id.token),
            )
            .await;
    }
    load
}

/// The given token, or freshly registered probe users (one per [`CLIENTS_PER_USER`] clients).
async fn identities(ctx: &Ctx, opts: &Options) -> Result<Vec<Identity>, String> {
    if let Some(token) = &opts.token {
        return Ok(vec![Identity {
            token: token.clone(),
            username: None,
            ours: false,
        }]);
    }
    let users = opts.ws_clients.div_ceil(CLIENTS_PER_USER).max(1);
    let mut out = Vec::with_capacity(users);
    for _ in 0..users {
        let username = format!(
            "verify-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        let password = uuid::Uuid::new_v4().simple().to_string();
        let r = ctx
            .send(
                ctx.http
                    .post(ctx.url("/api/auth/register"))
                    .json(&json!({"username": username, "password": password})),
            )
            .await
            .map_err(|e| format!("registering a probe user: {}", error_chain(&e)))?;
        let status = r.status();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        let Some(token) = body["token"]
            .as_str()
            .filter(|_| status == StatusCode::CREATED)
        else {
            return Err(format!(
                "registering a probe user: HTTP {} {}",
                status.as_u16(),
                api_error(&body)
            ));
        };
        out.push(Identity {
            token: token.to_string(),
            username: Some(username),
            ours: true,
        });
    }
    Ok(out)
}

/// Create the thread, connect and subscribe every client, chat, and collect the numbers.
async fn chat(
    ctx: &Ctx,
    opts: &Options,
    identities: &[Identity],
    load: &mut Load,
) -> Result<(), String> {
    let live = ctx.live.clone();
    live.set_phase("thread");
    let thread = create_thread(ctx, identities).await?;

    live.set_phase("connecting");
    live.clients_total
        .store(opts.ws_clients as u64, Ordering::Relaxed);
    load.attempts = opts.ws_clients;
    let connects = (0..opts.ws_clients).map(|i| {
        let id = &identities[i % identities.len()];
        connect_and_subscribe(ctx, id, &thread)
    });
    let mut sockets = Vec::new();
    for result in futures_util::future::join_all(connects).await {
        match result {
            Ok(ws) => {
                live.clients.fetch_add(1, Ordering::Relaxed);
                sockets.push(ws);
            }
            Err(e) => {
                live.errors.fetch_add(1, Ordering::Relaxed);
                load.failures.push(e);
            }
        }
    }
    load.subscribers = sockets.len();

    // Keep each user under its send budget.
    let per_user = opts.ws_clients.div_ceil(identities.len());
    let interval = SEND_INTERVAL.max(Duration::from_secs_f64(
        per_user as f64 / SENDS_PER_USER_PER_SEC,
    ));
    if interval > SEND_INTERVAL {
        load.notes.push(format!(
            "{per_user} clients share one user: each sends every {:.1} s to stay under {SENDS_PER_USER_PER_SEC} sends/s per user",
            interval.as_secs_f64()
        ));
    }

    let shared = Arc::new(Shared {
        thread,
        probes: Mutex::new(HashMap::new()),
        error_frames: Mutex::new(BTreeMap::new()),
        persisted: AtomicU64::new(0),
        queued: AtomicU64::new(0),
        rate_limited_frames: AtomicU64::new(0),
        done_sending: AtomicU64::new(0),
        live: live.clone(),
    });
    let send_until = tokio::time::Instant::now() + opts.duration;
    let finish = CancellationToken::new();
    let run_id = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let count = sockets.len().max(1);
    let tasks: Vec<_> = sockets
        .into_iter()
        .enumerate()
        .map(|(i, ws)| {
            let client = ChatClient {
                ws,
                prefix: format!("verify-{run_id}-{i}"),
                interval,
                offset: interval.mul_f64(i as f64 / count as f64),
                shared: shared.clone(),
                send_until,
                sending: true,
                finish: finish.clone(),
            };
            tokio::spawn(client.run())
        })
        .collect();

    live.set_phase("chatting");
    live.start_load(opts.duration);
    tokio::time::sleep_until(send_until).await;
    live.set_phase("delivering");
    // Every client must have made its last send before "all delivered" means anything.
    let clients = tasks.len() as u64;
    let subscribers = load.subscribers;
    let deadline = Instant::now() + DELIVERY_GRACE;
    while Instant::now() < deadline
        && !(shared.done_sending.load(Ordering::Acquire) == clients
            && all_delivered(&shared, subscribers))
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    finish.cancel();
    for task in tasks {
        match tokio::time::timeout(Duration::from_secs(5), task).await {
            Ok(Ok(end)) => {
                if let Some(why) = end.unexpected {
                    load.failures.push(why);
                }
            }
            Ok(Err(e)) => load.failures.push(format!("client task failed: {e}")),
            Err(_) => {}
        }
    }

    let probes = shared.probes.lock().unwrap_or_else(|e| e.into_inner());
    load.sent = probes.len() as u64;
    load.delivered = probes.values().map(|p| p.deliveries as u64).sum();
    load.first_receipts = probes.values().filter_map(|p| p.first_receipt).collect();
    load.persisted = shared.persisted.load(Ordering::Relaxed);
    load.queued = shared.queued.load(Ordering::Relaxed);
    load.rate_limited_frames = shared.rate_limited_frames.load(Ordering::Relaxed);
    load.error_frames = shared
        .error_frames
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    Ok(())
}

fn all_delivered(shared: &Shared, subscribers: usize) -> bool {
    let probes = shared.probes.lock().unwrap_or_else(|e| e.into_inner());
    probes
        .values()
        .filter(|p| !p.refused)
        .all(|p| p.persisted && p.deliveries >= subscribers)
}

async fn create_thread(ctx: &Ctx, identities: &[Identity]) -> Result<String, String> {
    let owner = &identities[0];
    let title = format!(
        "emergence verify {}",
        crate::db::rfc3339(crate::db::now_ms())
    );
    let r = ctx
        .send(
            ctx.http
                .post(ctx.url("/api/threads"))
                .bearer_auth(&owner.token)
                .json(&json!({"title": title})),
        )
        .await
        .map_err(|e| format!("creating a thread: {}", error_chain(&e)))?;
    let status = r.status();
    let body: Value = r.json().await.unwrap_or(Value::Null);
    let Some(thread) = body["id"]
        .as_str()
        .filter(|_| status == StatusCode::CREATED)
    else {
        return Err(format!(
            "creating a thread: HTTP {} {}",
            status.as_u16(),
            api_error(&body)
        ));
    };
    for member in identities[1..].iter().filter_map(|i| i.username.as_deref()) {
        let r = ctx
            .send(
                ctx.http
                    .post(ctx.url(&format!("/api/threads/{thread}/members")))
                    .bearer_auth(&owner.token)
                    .json(&json!({"username": member})),
            )
            .await
            .map_err(|e| format!("adding a probe user to the thread: {}", error_chain(&e)))?;
        if r.status() != StatusCode::NO_CONTENT {
            let status = r.status();
            let body: Value = r.json().await.unwrap_or(Value::Null);
            return Err(format!(
                "adding a probe user to the thread: HTTP {} {}",
                status.as_u16(),
                api_error(&body)
            ));
        }
    }
    Ok(thread.to_string())
}

type Socket = WebSocketStream<reqwest::Upgraded>;

/// Open one WebSocket, wait for `welcome`, subscribe and wait for `subscribed`.
async fn connect_and_subscribe(ctx: &Ctx, id: &Identity, thread: &str) -> Result<Socket, String> {
    let mut ws = tokio::time::timeout(CONNECT_TIMEOUT, open_socket(ctx, id))
        .await
        .map_err(|_| "no welcome within 5 s".to_string())??;
    let subscribe = json!({"type": "subscribe", "thread": thread});
    ws.send(Message::Text(subscribe.to_string().into()))
        .await
        .map_err(|e| format!("subscribe: {e}"))?;
    tokio::time::timeout(CONNECT_TIMEOUT, wait_for(&mut ws, "subscribed"))
        .await
        .map_err(|_| "no subscribed within 5 s".to_string())??;
    Ok(ws)
}

async fn open_socket(ctx: &Ctx, id: &Identity) -> Result<Socket, String> {
    let mut url = ctx.url("/ws");
    if id.ours {
        // The browser's way. Probe tokens are revoked at the end, so seeing them in request logs
        // does no harm.
        url.query_pairs_mut().append_pair("token", &id.token);
    }
    let key = tungstenite::handshake::client::generate_key();
    let mut req = ctx
        .ws_http
        .get(url)
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, "websocket")
        .header(header::SEC_WEBSOCKET_VERSION, "13")
        .header(header::SEC_WEBSOCKET_KEY, key.as_str());
    if !id.ours {
        // An operator's own token stays out of URLs, and so out of request logs.
        req = req.bearer_auth(&id.token);
    }
    let r = ctx
        .send(req)
        .await
        .map_err(|e| format!("upgrade: {}", error_chain(&e.without_url())))?;
    if r.status() != StatusCode::SWITCHING_PROTOCOLS {
        let status = r.status();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        return Err(format!("HTTP {} {}", status.as_u16(), api_error(&body)));
    }
    let expected = tungstenite::handshake::derive_accept_key(key.as_bytes());
    if header_str(&r, header::SEC_WEBSOCKET_ACCEPT).as_deref() != Some(expected.as_str()) {
        return Err("bad Sec-WebSocket-Accept in the handshake".into());
    }
    let upgraded = r
        .upgrade()
        .await
        .map_err(|e| format!("upgrade: {}", error_chain(&e)))?;
    let mut ws = WebSocketStream::from_raw_socket(upgraded, Role::Client, None).await;
    wait_for(&mut ws, "welcome").await?;
    Ok(ws)
}

/// Read frames until one of type `kind`; an error frame or a close first is a failure.
async fn wait_for(ws: &mut Socket, kind: &str) -> Result<Value, String> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => {
                let v: Value = serde_json::from_str(t.as_str()).unwrap_or(Value::Null);
                if v["type"] == kind {
                    return Ok(v);
                }
                if v["type"] == "error" {
                    return Err(format!(
                        "error frame {} before {kind}",
                        v["code"].as_str().unwrap_or("?")
                    ));
                }
            }
            Some(Ok(Message::Close(frame))) => return Err(close_reason(frame.as_ref(), kind)),
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(format!("{e} before {kind}")),
            None => return Err(format!("connection ended before {kind}")),
        }
    }
}

fn close_reason(frame: Option<&tungstenite::protocol::CloseFrame>, before: &str) -> String {
    match frame {
        Some(f) => format!(
            "closed {} {} before {before}",
            u16::from(f.code),
            f.reason.as_str()
        ),
        None => format!("closed before {before}"),
    }
}

/// One subscriber that also sends every `interval`.
struct ChatClient {
    ws: Socket,
    prefix: String,
    interval: Duration,
    offset: Duration,
    shared: Arc<Shared>,
    /// No send is started at or after this instant.
    send_until: tokio::time::Instant,
    sending: bool,
    finish: CancellationToken,
}

impl ChatClient {
    async fn run(mut self) -> ClientEnd {
        let end = self.serve().await;
        self.stop_sending();
        end
    }

    fn stop_sending(&mut self) {
        if std::mem::take(&mut self.sending) {
            self.shared.done_sending.fetch_add(1, Ordering::Release);
        }
    }

    async fn serve(&mut self) -> ClientEnd {
        let mut next = tokio::time::Instant::now() + self.offset;
        let mut n = 0u64;
        loop {
            tokio::select! {
                _ = self.finish.cancelled() => {
                    self.stop_sending();
                    let _ = tokio::time::timeout(Duration::from_secs(2), self.ws.close(None)).await;
                    return ClientEnd { unexpected: None };
                }
                _ = tokio::time::sleep_until(next.min(self.send_until)), if self.sending => {
                    if tokio::time::Instant::now() >= self.send_until {
                        self.stop_sending();
                        continue;
                    }
                    n += 1;
                    next += self.interval;
                    if let Err(e) = self.send(n).await {
                        return ClientEnd { unexpected: Some(format!("send failed: {e}")) };
                    }
                }
                frame = self.ws.next() => match frame {
                    Some(Ok(Message::Text(t))) => self.on_frame(t.as_str()),
                    Some(Ok(Message::Close(f))) => {
                        return ClientEnd { unexpected: Some(close_reason(f.as_ref(), "the end of the run")) };
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return ClientEnd { unexpected: Some(format!("{e}")) },
                    None => return ClientEnd { unexpected: Some("connection ended early".into()) },
                },
            }
        }
    }

    async fn send(&mut self, n: u64) -> Result<(), tungstenite::Error> {
        let client_id = format!("{}-{n}", self.prefix);
        // Registered before sending: other clients may receive it before this one returns.
        self.shared
            .probes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                client_id.clone(),
                Probe {
                    sent_at: Instant::now(),
                    first_receipt: None,
                    deliveries: 0,
                    persisted: false,
                    refused: false,
                },
            );
        self.shared.live.sent.fetch_add(1, Ordering::Relaxed);
        let frame = json!({
            "type": "send",
            "thread": self.shared.thread,
            "client_id": client_id,
            "body": format!("emergence verify probe {n}"),
        });
        self.ws.send(Message::Text(frame.to_string().into())).await
    }

    fn on_frame(&self, text: &str) {
        let v: Value = serde_json::from_str(text).unwrap_or(Value::Null);
        let client_id = v["client_id"].as_str().unwrap_or("");
        let shared = &self.shared;
        match v["type"].as_str().unwrap_or("") {
            "message" => {
                let mut probes = shared.probes.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(p) = probes.get_mut(client_id) {
                    p.deliveries += 1;
                    p.first_receipt.get_or_insert_with(|| p.sent_at.elapsed());
                    shared.live.delivered.fetch_add(1, Ordering::Relaxed);
                }
            }
            "ack" if v["status"] == "persisted" => {
                let mut probes = shared.probes.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(p) = probes.get_mut(client_id).filter(|p| !p.persisted) {
                    p.persisted = true;
                    shared.persisted.fetch_add(1, Ordering::Relaxed);
                }
            }
            "ack" => {
                shared.queued.fetch_add(1, Ordering::Relaxed);
            }
            "error" => {
                let code = v["code"].as_str().unwrap_or("unknown").to_string();
                if code == "rate_limited" {
                    shared.rate_limited_frames.fetch_add(1, Ordering::Relaxed);
                    shared.live.rate_limited.fetch_add(1, Ordering::Relaxed);
                }
                shared.live.errors.fetch_add(1, Ordering::Relaxed);
                *shared
                    .error_frames
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .entry(code)
                    .or_default() += 1;
                let mut probes = shared.probes.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(p) = probes.get_mut(client_id) {
                    p.refused = true;
                }
            }
            _ => {}
        }
    }
}

fn ws_error_rate_check(load: &Load) -> Check {
    let target = "< 1%";
    if let Some(e) = &load.setup_error {
        return Check::new(WS_ERROR_RATE, target, format!("not measured: {e}"), false).seed();
    }
    let failed = load.failures.len();
    let rate = failed as f64 / load.attempts.max(1) as f64;
    let mut value = format!(
        "{:.2}% ({failed} of {} connections failed)",
        rate * 100.0,
        load.attempts
    );
    if let Some(first) = load.failures.first() {
        let _ = write!(value, "; first: {first}");
    }
    let ok = load.attempts > 0 && rate < 0.01;
    Check::new(WS_ERROR_RATE, target, value, ok).seed()
}

fn rate_limited_check(
    ctx: &Ctx,
    load: &Load,
    before: Option<&Result<Scrape, String>>,
    after: Option<&Result<Scrape, String>>,
) -> Check {
    let http = ctx.http_429.load(Ordering::Relaxed);
    let frames = load.rate_limited_frames;
    let seen = http + frames;
    let mut value =
        format!("seen by verify: {seen} ({http} HTTP 429, {frames} rate_limited frames)");
    let mut counters_ok = true;
    match (before, after) {
        (Some(Ok(b)), Some(Ok(a))) => {
            let _ = write!(
                value,
                "; rate_limited_total {} -> {}, http_requests_total{{status=\"429\"}} {} -> {}",
                b.rate_limited, a.rate_limited, b.http_429, a.http_429
            );
            counters_ok = a.rate_limited <= b.rate_limited && a.http_429 <= b.http_429;
        }
        (None, _) | (_, None) => value.push_str("; metrics skipped"),
        (Some(Err(e)), _) | (_, Some(Err(e))) => {
            let _ = write!(value, "; metrics unavailable ({e})");
        }
    }
    Check::new(RATE_LIMITED, "0", value, seen == 0 && counters_ok).seed()
}

fn db_reconnect_check(after: Option<&Result<Scrape, String>>, metrics_url: &Url) -> Check {
    let target = "> 99%";
    let scrape = match after {
        None => {
            return Check::skipped(
                DB_RECONNECT,
                target,
                "skipped (--skip-metrics): read emergence:db_reconnect_success_ratio:rate15m",
            )
            .seed();
        }
        Some(Err(e)) => {
            return Check::new(
                DB_RECONNECT,
                target,
                format!(
                    "not measured: metrics at {metrics_url}: {e} (use --metrics-url, or --skip-metrics)"
                ),
                false,
            )
            .seed();
        }
        Some(Ok(s)) => s,
    };
    let up = scrape.db_up >= 1.0;
    let (ratio, mut value) = if scrape.reconnect_attempts <= 0.0 && up {
        (1.0, "100% (no outages)".to_string())
    } else if scrape.reconnect_attempts <= 0.0 {
        (1.0, "no reconnection recorded yet".to_string())
    } else {
        let ratio = (scrape.reconnect_success / scrape.reconnect_attempts).min(1.0);
        (
            ratio,
            format!(
                "{:.1}% ({} of {} reconnections)",
                ratio * 100.0,
                scrape.reconnect_success,
                scrape.reconnect_attempts
            ),
        )
    };
    if up {
        let _ = write!(value, ", db_up 1");
    } else {
        let _ = write!(value, "; db_up 0: the database is down now");
    }
    Check::new(DB_RECONNECT, target, value, up && ratio > 0.99).seed()
}

fn delivery_check(load: &Load) -> Check {
    let target = "all persisted, all fanned out, 0 error frames";
    if let Some(e) = &load.setup_error {
        return Check::new(
            MESSAGE_DELIVERY,
            target,
            format!("not measured: {e}"),
            false,
        );
    }
    let expected = load.sent * load.subscribers as u64;
    let errors: u64 = load.error_frames.values().sum();
    let mut value = format!(
        "{} sent, {} persisted, {} of {expected} deliveries",
        load.sent, load.persisted, load.delivered
    );
    if load.queued > 0 {
        let _ = write!(value, ", {} queued (database down)", load.queued);
    }
    if errors > 0 {
        let codes: Vec<String> = load
            .error_frames
            .iter()
            .map(|(code, n)| format!("{code} x{n}"))
            .collect();
        let _ = write!(value, ", error frames: {}", codes.join(", "));
    }
    let ok =
        load.sent > 0 && load.persisted == load.sent && load.delivered >= expected && errors == 0;
    Check::new(MESSAGE_DELIVERY, target, value, ok)
}

/// `code: message` of a contract error body, or the raw body.
fn api_error(body: &Value) -> String {
    match (
        body["error"]["code"].as_str(),
        body["error"]["message"].as_str(),
    ) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        _ if body.is_null() => String::new(),
        _ => body.to_string(),
    }
}

/// An error with its causes ("error sending request: connection refused").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let _ = write!(s, ": {cause}");
        source = cause.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_references_finds_scripts_styles_and_icons() {
        let html = r#"<link rel="icon" href="/favicon.svg" type="image/svg+xml" />
            <script type="module" crossorigin src="/assets/index-1.js"></script>
            <link rel=stylesheet crossorigin href='/assets/index-2.css'>
            <link rel="preconnect" href="https://x">"#;
        assert_eq!(
            page_references(html),
            vec![
                PageRef {
                    kind: RefKind::Icon,
                    href: "/favicon.svg".into()
                },
                PageRef {
                    kind: RefKind::Script,
                    href: "/assets/index-1.js".into()
                },
                PageRef {
                    kind: RefKind::Stylesheet,
                    href: "/assets/index-2.css".into()
                },
            ]
        );
    }

    #[test]
    fn metrics_are_summed_over_labels() {
        let text = "# TYPE x counter\nrate_limited_total{scope=\"auth\"} 2\nrate_limited_total{scope=\"send\"} 3\n\
                    http_requests_total{route=\"/a\",method=\"GET\",status=\"429\"} 4\n\
                    http_requests_total{route=\"/a\",method=\"GET\",status=\"200\"} 9\n\
                    db_up 1\ndb_reconnect_attempts_total 2\ndb_reconnect_success_total 2\n";
        let s = parse_metrics(text).unwrap();
        assert_eq!(s.rate_limited, 5.0);
        assert_eq!(s.http_429, 4.0);
        assert_eq!(s.db_up, 1.0);
        assert!(parse_metrics("<html></html>").is_err());
    }

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), Some(50.0));
        assert_eq!(percentile(&v, 0.99), Some(99.0));
        assert_eq!(percentile(&[], 0.5), None);
    }

    #[test]
    fn immutable_needs_a_year_of_max_age() {
        assert!(immutable_for_a_year("public, max-age=31536000, immutable"));
        assert!(!immutable_for_a_year("public, max-age=3600, immutable"));
        assert!(!immutable_for_a_year("public, max-age=31536000"));
    }
}
