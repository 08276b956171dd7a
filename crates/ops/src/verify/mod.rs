//! `emergence verify`: the post-deployment checklist as one command.
//!
//! It talks to a deployment the way its users do: the health endpoints, a browser's first load of
//! the web UI (request count, caching, compression, CSP), then N WebSockets that open (welcome,
//! one ping/pong round trip), subscribe to one thread and chat for a while. Each check becomes a
//! row (name, target, measured value, verdict); the three seed targets of docs/operations.md
//! (WebSocket error rate < 1 %, no 429, database reconnection success > 99 %) come first. The
//! library function [`run`] never prints: the CLI glue (`cli::verify`) draws the progress bar from
//! [`Live`] and prints the [`Report`].
//!
//! Choices worth knowing:
//! - Each row blames only what it measures. The WebSocket handshake never needs the database, so
//!   with a probe identity that does not need it either (a session token, [`Options::token`])
//!   the WebSocket rows measure real WebSockets during a database outage: a send is then
//!   acknowledged `queued`, which counts as delivery working in degraded mode. The database is
//!   reported by its own rows ([`DATABASE_ROWS`]). A row that cannot be measured only because the
//!   database is down (no identity could be had: login and registration need the database) is
//!   skipped, not failed: the database rows fail instead.
//! - The probe identity, best first: `--token`, then the probe account (`--probe-user`, logged in
//!   while the database is up), and only as the last resort throwaway users registered for the
//!   run (and logged out at its end) ([`probe`]).
//! - The probe's own traffic must never trip the limits it verifies. Sends are limited per user
//!   (20/s by default), so registered probe users are one per [`CLIENTS_PER_USER`] clients and
//!   each user sends at most [`SENDS_PER_USER_PER_SEC`] (half the default); with one identity
//!   (token or probe account), each client sends less often instead.
//! - The WebSocket handshake goes through reqwest's HTTP upgrade, so `https://` deployments get
//!   `wss://` with the same rustls stack as every other request.

mod chat;
mod live;
mod probe;
mod report;
mod rows;
mod scrape;
mod socket;
mod web;

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use emergence_client::error_chain;
use reqwest::{Client, RequestBuilder, Response, StatusCode, Url};

pub use live::{Live, Progress};
pub use report::{Check, Latency, Report, Verdict, percentile};
pub use scrape::{Scrape, parse_metrics};
pub use web::{PageRef, RefKind, page_references};

use crate::Secret;

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
/// Name of the row saying whether the database is up, from every sign verify saw.
pub const DATABASE: &str = "Database";
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

/// The rows that fail when the database is down, and only those: readiness says `degraded`,
/// `db_up` is 0, and the database row says so. Every other row is measured without it.
pub const DATABASE_ROWS: [&str; 3] = [READYZ, DB_RECONNECT, DATABASE];

/// WebSocket clients per probe user, so that a user's sends stay under its limit.
pub const CLIENTS_PER_USER: usize = 5;
/// The most sends per second the probe makes as one user: half the default limit of 20.
pub const SENDS_PER_USER_PER_SEC: f64 = 10.0;
/// How often each client sends, when its user's budget allows it.
pub const SEND_INTERVAL: Duration = Duration::from_millis(500);
/// A connection that has no `welcome` (or `pong`, or `subscribed`) within this time has failed.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// After the last send, how long to wait for acks and fan-out before counting what is missing.
pub const DELIVERY_GRACE: Duration = Duration::from_secs(5);

/// A probe account: verify logs in with it (which needs the database) instead of registering
/// throwaway users.
#[derive(Debug, Clone)]
pub struct ProbeUser {
    pub username: String,
    pub password: Secret,
}

/// What to check and how hard.
#[derive(Debug, Clone)]
pub struct Options {
    /// The deployment's public URL (`http://` or `https://`); paths are taken from its origin.
    pub url: Url,
    /// A session token to probe with (sent as `Authorization: Bearer`). Tokens are verified with
    /// the signing key alone, so WebSockets are measured even while the database is down.
    pub token: Option<Secret>,
    /// A probe account, used when there is no token (or the token is refused).
    pub probe_user: Option<ProbeUser>,
    /// A thread the probe identity belongs to: verify chats there instead of creating one. Needed
    /// to measure sends while the database is down (threads cannot be created then).
    pub thread: Option<String>,
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
            probe_user: None,
            thread: None,
            ws_clients: 20,
            duration: Duration::from_secs(10),
            metrics_url: None,
            skip_metrics: false,
            max_requests: 4,
            live: Arc::new(Live::default()),
        }
    }
}

/// Shared by every part of one run: the HTTP clients, the base URL and the 429 count.
struct Ctx {
    base: Url,
    /// Raw requests (the web UI rows look at the wire itself).
    http: Client,
    /// The typed API client, over `http`.
    api: emergence_client::Client,
    /// The typed client over HTTP/1.1 only: the WebSocket upgrade.
    ws_api: emergence_client::Client,
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

    /// Count the 429 of a typed call that was refused.
    fn count_error(&self, e: &emergence_client::Error) {
        if let Some(status) = e.status() {
            self.count_status(status);
        }
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
        ws_ping: Latency::default(),
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
        api: emergence_client::Client::with_http(opts.url.clone(), http.clone()),
        ws_api: emergence_client::Client::with_http(opts.url.clone(), ws_http),
        http,
        http_429: AtomicU64::new(0),
        live: live.clone(),
    };

    live.set_phase("health");
    match rows::check_healthz(&ctx).await {
        Ok(check) => report.checks.push(check),
        Err(unreachable) => {
            report.unreachable = Some(unreachable);
            return report;
        }
    }
    let (readyz, readyz_db) = rows::check_readyz(&ctx).await;
    report.checks.push(readyz);

    let metrics_url = opts
        .metrics_url
        .clone()
        .unwrap_or_else(|| ctx.url("/metrics"));
    let before = if opts.skip_metrics {
        None
    } else {
        Some(scrape::scrape(&ctx, &metrics_url).await)
    };

    live.set_phase("web UI");
    report
        .checks
        .extend(web::check_web_ui(&ctx, opts.max_requests).await);

    let load = chat::run_load(&ctx, &opts).await;
    report.notes.extend(load.notes.iter().cloned());

    live.set_phase("metrics");
    let after = if opts.skip_metrics {
        None
    } else {
        Some(scrape::scrape(&ctx, &metrics_url).await)
    };

    let db = rows::DbSigns::new(readyz_db, after.as_ref(), &load);
    report
        .checks
        .insert(0, rows::ws_error_rate_check(&load, &db));
    report.checks.insert(
        1,
        rows::rate_limited_check(&ctx, &load, before.as_ref(), after.as_ref()),
    );
    report
        .checks
        .insert(2, rows::db_reconnect_check(after.as_ref(), &metrics_url));
    report.checks.insert(5, rows::database_check(&db, &load));
    report.checks.push(rows::delivery_check(&load, &db));
    report.latency = load.latency();
    report.ws_ping = Latency::of(&load.pings);
    live.set_phase("done");
    report
}

#[cfg(test)]
mod tests;
