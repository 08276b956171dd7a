//! Typed settings: defaults, then the TOML file, then `EMERGENCE_*` (and platform) environment
//! variables, then command-line flags. One tree, loaded once at start-up (`load`); this file is
//! the tree itself and its defaults.
//!
//! Secrets live in [`Secret`], whose `Debug` never prints the value, so a settings dump in a log is safe.

use std::{fmt, net::SocketAddr, time::Duration};

use serde::Deserialize;

pub mod agents;
pub mod documents;
pub mod embeddings;
mod load;
pub mod memories;
mod modes;
pub mod oidc;
pub mod usage;

pub use agents::{AgentSettings, ProviderSettings};
pub use load::{Env, MIN_SIGNING_KEY_BYTES, ProcessEnv};
pub use modes::{Pooler, Sharding};
pub use oidc::OidcProvider;

/// A string that never shows up in `Debug` or logs.
#[derive(Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    /// The secret value; call only where it is needed (signing, provider requests).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

/// The whole settings tree.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub broker: BrokerSettings,
    pub auth: AuthSettings,
    pub limits: LimitSettings,
    pub realtime: RealtimeSettings,
    pub web: WebSettings,
    pub log: LogSettings,
    #[serde(rename = "agent")]
    pub agents: Vec<AgentSettings>,
    pub providers: agents::ProviderSettings,
    /// Price per million tokens of each model (`[prices."gpt-4o"]`).
    pub prices: usage::PriceTable,
    pub budgets: usage::BudgetSettings,
    pub usage: usage::UsageSettings,
    /// Uploaded documents and their extraction (issue #19).
    pub documents: documents::DocumentSettings,
    /// Per-user memory items and what agents receive of them (issue #19).
    pub memories: memories::MemorySettings,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSettings {
    /// Listen host; `0.0.0.0` by default so containers are reachable.
    pub host: String,
    /// Listen port (`PORT`); 0 picks a free port (tests).
    pub port: u16,
    /// Serve `/metrics` on this address instead of the main listener.
    pub metrics_addr: Option<SocketAddr>,
    /// Graceful shutdown deadline.
    pub shutdown_deadline_ms: u64,
    /// Maximum concurrent HTTP requests (excluding upgraded WebSockets) before answering 503.
    pub max_inflight_requests: usize,
    /// Maximum open WebSockets on this instance before refusing upgrades with 503.
    pub max_websockets: usize,
    /// Headers must arrive within this time (slowloris guard).
    pub header_read_timeout_ms: u64,
    /// A plain HTTP request must finish within this time.
    pub request_timeout_ms: u64,
    /// After an answer given before the request body was read (413, 401, 415, 429...), read and
    /// discard at most this many body bytes so the client can read the answer and reuse the
    /// connection (nginx's lingering close); a longer body gets the connection closed.
    pub early_answer_drain_bytes: usize,
    /// ... and for at most this long.
    pub early_answer_drain_ms: u64,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            host: "0.0.0.0".into(),
            port: 8080,
            metrics_addr: None,
            shutdown_deadline_ms: 10_000,
            max_inflight_requests: 4096,
            max_websockets: 50_000,
            header_read_timeout_ms: 5_000,
            request_timeout_ms: 30_000,
            early_answer_drain_bytes: 8 << 20,
            early_answer_drain_ms: 5_000,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseSettings {
    /// `sqlite://PATH` or `postgres://...` (`DATABASE_URL`).
    pub url: Secret,
    pub max_connections: u32,
    /// Each query (including checkout) must finish within this time or the database counts as down.
    pub query_timeout_ms: u64,
    pub connect_timeout_ms: u64,
    /// Reconnection backoff: first delay, then doubling with full jitter up to the cap.
    pub backoff_initial_ms: u64,
    pub backoff_max_ms: u64,
    /// Sends accepted while the database is down, held in memory and flushed in order.
    pub pending_queue: usize,
    /// Messages kept in memory per active thread, to replay while the database is down.
    pub ring_size: usize,
    /// How often the revocation set is refreshed from the database.
    pub revocation_refresh_ms: u64,
    /// Largest batch of messages written in one transaction (group commit).
    pub write_batch: usize,
    /// A deleted thread is purged (messages, index, members) this long after its deletion
    /// (`EMERGENCE_DELETED_RETENTION_SECS`; default 30 days).
    pub deleted_retention_secs: u64,
    /// How often the purge of deleted threads runs.
    pub purge_interval_ms: u64,
    /// What sits between the server and PostgreSQL (`EMERGENCE_DATABASE_POOLER`): `none`, or
    /// `transaction` for a transaction-mode pooler such as PgBouncer.
    pub pooler: Pooler,
    /// A URL that reaches PostgreSQL itself, not through the pooler
    /// (`EMERGENCE_DATABASE_DIRECT_URL`): migrations and backups use it. Required with
    /// `pooler = "transaction"` (migrations hold a session-level advisory lock).
    pub direct_url: Option<Secret>,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            url: Secret::new("sqlite://data/emergence.db"),
            max_connections: 8,
            query_timeout_ms: 3_000,
            connect_timeout_ms: 2_000,
            backoff_initial_ms: 100,
            backoff_max_ms: 5_000,
            pending_queue: 10_000,
            ring_size: 1_000,
            revocation_refresh_ms: 2_000,
            write_batch: 512,
            deleted_retention_secs: 30 * 24 * 3600,
            purge_interval_ms: 3_600_000,
            pooler: Pooler::None,
            direct_url: None,
        }
    }
}

impl DatabaseSettings {
    pub fn query_timeout(&self) -> Duration {
        Duration::from_millis(self.query_timeout_ms)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BrokerSettings {
    /// `redis://...` to share fan-out between instances; unset = in-process.
    pub url: Option<Secret>,
    /// The pub/sub channel (instances of one deployment must agree; separate deployments on one
    /// Redis must not).
    pub channel: String,
    /// How thread events travel (`EMERGENCE_BROKER_SHARDING`): `on`, each thread on its own
    /// channel that an instance subscribes to only while it serves the thread; `dual`, also on
    /// the shared channel (a rolling upgrade from a version without sharding); `off`, every
    /// event on the shared channel to every instance.
    pub sharding: Sharding,
}

impl Default for BrokerSettings {
    fn default() -> Self {
        Self {
            url: None,
            channel: "emergence:events".into(),
            sharding: Sharding::On,
        }
    }
}

/// Who may create an account (`EMERGENCE_REGISTRATION`, settings `auth.registration`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Registration {
    /// Anyone; the account is active at once.
    Open,
    /// Anyone; the account waits (`pending`) until an admin approves it.
    #[default]
    Approval,
    /// Only with a valid invite link.
    Invite,
    /// Nobody (admins create accounts with `emergence admin create-user`).
    Closed,
}

impl Registration {
    /// The mode named `s` (any case, surrounding spaces ignored), by its serde name.
    pub fn parse(s: &str) -> Option<Registration> {
        modes::from_name(&s.trim().to_ascii_lowercase()).ok()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    /// Token signing key shared by every instance; generated and kept in the database when unset.
    pub signing_key: Option<Secret>,
    pub token_ttl_secs: u64,
    /// Force the `Secure` cookie attribute (it is also set when the request came over HTTPS).
    pub cookie_secure: bool,
    /// Origins, besides the server's own, allowed to use cookie authentication.
    pub allowed_origins: Vec<String>,
    /// Who may create an account (`EMERGENCE_REGISTRATION`): `open`, `approval` (default),
    /// `invite` or `closed`. The first account ever created is an active admin in every mode.
    pub registration: Registration,
    /// How long an invite link stays valid.
    pub invite_ttl_secs: u64,
    /// How long a password-reset link stays valid.
    pub reset_ttl_secs: u64,
    /// How long a personal API token stays valid.
    pub api_token_ttl_secs: u64,
    /// Sign in with a password (`EMERGENCE_PASSWORD_LOGIN`); off for SSO-only deployments.
    pub password_login: bool,
    /// This server as browsers reach it (`EMERGENCE_PUBLIC_URL`), for the OpenID Connect
    /// redirect URI; the request's own scheme and host when unset.
    pub public_url: Option<String>,
    /// Single sign-on providers (`[[auth.oidc]]`).
    pub oidc: Vec<OidcProvider>,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            signing_key: None,
            token_ttl_secs: 30 * 24 * 3600,
            cookie_secure: false,
            allowed_origins: Vec::new(),
            registration: Registration::Approval,
            invite_ttl_secs: 7 * 24 * 3600,
            reset_ttl_secs: 24 * 3600,
            api_token_ttl_secs: 365 * 24 * 3600,
            password_login: true,
            public_url: None,
            oidc: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitSettings {
    /// Login/register attempts per minute per client IP (0 = off).
    pub auth_rate_per_min: u32,
    pub auth_burst: u32,
    /// Failed logins per username per window before 429.
    pub failed_logins_per_user: u32,
    pub failed_login_window_secs: u64,
    /// Message sends per second per user (0 = off).
    pub send_rate_per_sec: u32,
    pub send_burst: u32,
    /// WebSocket connection attempts per minute per client IP (0 = off).
    pub ws_connect_rate_per_min: u32,
    pub ws_connect_burst: u32,
    /// Number of trusted reverse proxies in front of the server (Cloud Run: 1); 0 = use the socket peer.
    pub trusted_proxies: usize,
    /// Concurrent agent answers (or debates) per user, on every instance together.
    pub agent_streams_per_user: usize,
    /// Threads a user may create per minute, and in a burst (0 = off).
    pub thread_rate_per_min: u32,
    pub thread_burst: u32,
    /// Membership changes (adding members) a user may make per minute, and in a burst (0 = off).
    pub member_rate_per_min: u32,
    pub member_burst: u32,
    /// Open WebSockets per user and per client address (IPv6: per /64); 0 = no cap.
    pub ws_per_user: usize,
    pub ws_per_ip: usize,
    /// Password hashes (argon2id, 19 MiB each) computed at once; 0 = one per CPU.
    pub concurrent_password_hashes: usize,
}

impl Default for LimitSettings {
    fn default() -> Self {
        Self {
            auth_rate_per_min: 60,
            auth_burst: 20,
            failed_logins_per_user: 10,
            failed_login_window_secs: 15 * 60,
            send_rate_per_sec: 20,
            send_burst: 100,
            ws_connect_rate_per_min: 300,
            ws_connect_burst: 100,
            trusted_proxies: 0,
            agent_streams_per_user: 3,
            thread_rate_per_min: 30,
            thread_burst: 20,
            member_rate_per_min: 20,
            member_burst: 20,
            ws_per_user: 50,
            ws_per_ip: 1000,
            concurrent_password_hashes: 0,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RealtimeSettings {
    /// Server WebSocket ping interval.
    pub ping_interval_ms: u64,
    /// A peer silent (no frame, no pong) for this long is closed.
    pub dead_peer_ms: u64,
    /// A client sending no frame for this long is closed with 4408.
    pub idle_timeout_ms: u64,
    /// Frames queued for one socket before it counts as a slow consumer and is disconnected.
    pub socket_queue: usize,
    /// Largest accepted text frame, in bytes.
    pub max_frame_bytes: usize,
    /// Missed messages replayed on subscribe before asking the client to resync over HTTP.
    pub replay_max: usize,
}

impl Default for RealtimeSettings {
    fn default() -> Self {
        Self {
            ping_interval_ms: 20_000,
            dead_peer_ms: 60_000,
            idle_timeout_ms: 300_000,
            socket_queue: 2048,
            max_frame_bytes: 256 * 1024,
            replay_max: 1000,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebSettings {
    /// Serve hashed assets from this base URL (a CDN or bucket) instead of `/assets/`.
    pub asset_base_url: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    /// `auto` (JSON unless stderr is a terminal), `json` or `pretty`.
    pub format: String,
    /// A tracing filter such as `info` or `emergence=debug,info`.
    pub level: String,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            format: "auto".into(),
            level: "info".into(),
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            server: ServerSettings::default(),
            database: DatabaseSettings::default(),
            broker: BrokerSettings::default(),
            auth: AuthSettings::default(),
            limits: LimitSettings::default(),
            realtime: RealtimeSettings::default(),
            web: WebSettings::default(),
            log: LogSettings::default(),
            agents: agents::default_agents(),
            providers: Default::default(),
            prices: Default::default(),
            budgets: Default::default(),
            usage: Default::default(),
            documents: Default::default(),
            memories: Default::default(),
        }
    }
}
