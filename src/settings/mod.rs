//! Typed settings: defaults, then the TOML file, then `EMERGENCE_*` (and platform) environment
//! variables, then command-line flags. One tree, loaded once at start-up.
//!
//! Secrets live in [`Secret`], whose `Debug` never prints the value, so a settings dump in a log is safe.

use std::{fmt, net::SocketAddr, path::PathBuf, time::Duration};

use anyhow::Context;
use serde::Deserialize;

pub mod agents;
pub mod documents;
mod modes;
pub mod oidc;
pub mod usage;

pub use agents::{AgentSettings, ProviderSettings};
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
        }
    }
}

/// An environment lookup, injectable so tests never depend on the process environment.
pub trait Env {
    fn var(&self, key: &str) -> Option<String>;
}

/// The real process environment.
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, key: &str) -> Option<String> {
        std::env::var(key).ok().filter(|v| !v.is_empty())
    }
}

/// Shortest accepted token signing key: HMAC-SHA256 wants at least its output size.
pub const MIN_SIGNING_KEY_BYTES: usize = 32;

impl Settings {
    /// Defaults, then the TOML file (if any), then the environment.
    pub fn load(config_path: Option<PathBuf>, env: &dyn Env) -> anyhow::Result<Self> {
        let path = config_path.or_else(|| env.var("EMERGENCE_CONFIG").map(PathBuf::from));
        let mut settings = match path {
            Some(path) => {
                let text = std::fs::read_to_string(&path)
                    .with_context(|| format!("reading settings file {}", path.display()))?;
                toml::from_str(&text)
                    .with_context(|| format!("parsing settings file {}", path.display()))?
            }
            None => Settings::default(),
        };
        settings.apply_env(env)?;
        settings.validate()?;
        Ok(settings)
    }

    /// Refuse settings that would start an unsafe or broken server.
    pub fn validate(&self) -> anyhow::Result<()> {
        let db = &self.database;
        if db.pooler == Pooler::Transaction {
            let url = db.url.expose();
            if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                anyhow::bail!(
                    "EMERGENCE_DATABASE_POOLER=transaction is for PostgreSQL behind a pooler; \
                     DATABASE_URL is not a postgres:// URL"
                );
            }
            if db.direct_url.is_none() {
                anyhow::bail!(
                    "EMERGENCE_DATABASE_POOLER=transaction needs EMERGENCE_DATABASE_DIRECT_URL \
                     (PostgreSQL itself, not the pooler): migrations hold a session-level lock \
                     that a transaction-mode pooler cannot keep"
                );
            }
        }
        oidc::validate(&self.auth.oidc, self.auth.password_login)?;
        if let Some(key) = &self.auth.signing_key
            && key.expose().len() < MIN_SIGNING_KEY_BYTES
        {
            anyhow::bail!(
                "EMERGENCE_SIGNING_KEY (auth.signing_key) is {} bytes; it must be at least \
                 {MIN_SIGNING_KEY_BYTES} bytes (e.g. `openssl rand -hex 32`)",
                key.expose().len()
            );
        }
        Ok(())
    }

    /// Apply environment variables over the current values.
    pub fn apply_env(&mut self, env: &dyn Env) -> anyhow::Result<()> {
        fn parse<T: std::str::FromStr>(env: &dyn Env, key: &str) -> anyhow::Result<Option<T>>
        where
            T::Err: fmt::Display,
        {
            match env.var(key) {
                None => Ok(None),
                Some(v) => v
                    .trim()
                    .parse()
                    .map(Some)
                    .map_err(|e| anyhow::anyhow!("invalid {key}={v:?}: {e}")),
            }
        }
        if let Some(port) = parse(env, "PORT")? {
            self.server.port = port;
        }
        if let Some(host) = env.var("EMERGENCE_HOST") {
            self.server.host = host;
        }
        if let Some(addr) = parse(env, "EMERGENCE_METRICS_ADDR")? {
            self.server.metrics_addr = Some(addr);
        }
        if let Some(url) = env.var("DATABASE_URL") {
            self.database.url = Secret::new(url);
        }
        if let Some(v) = parse(env, "EMERGENCE_DATABASE_POOLER")? {
            self.database.pooler = v;
        }
        if let Some(url) = env.var("EMERGENCE_DATABASE_DIRECT_URL") {
            self.database.direct_url = Some(Secret::new(url));
        }
        if let Some(url) = env.var("EMERGENCE_BROKER_URL") {
            self.broker.url = Some(Secret::new(url));
        }
        if let Some(v) = parse(env, "EMERGENCE_BROKER_SHARDING")? {
            self.broker.sharding = v;
        }
        if let Some(channel) = env.var("EMERGENCE_BROKER_CHANNEL") {
            self.broker.channel = channel;
        }
        if let Some(key) = env.var("EMERGENCE_SIGNING_KEY") {
            self.auth.signing_key = Some(Secret::new(key));
        }
        if let Some(v) = parse(env, "EMERGENCE_COOKIE_SECURE")? {
            self.auth.cookie_secure = v;
        }
        if let Some(v) = env.var("EMERGENCE_ALLOWED_ORIGINS") {
            self.auth.allowed_origins = v.split(',').map(|s| s.trim().to_string()).collect();
        }
        if let Some(v) = env.var("EMERGENCE_REGISTRATION") {
            self.auth.registration = Registration::parse(&v).ok_or_else(|| {
                anyhow::anyhow!(
                    "EMERGENCE_REGISTRATION must be open, approval, invite or closed (got {v:?})"
                )
            })?;
        }
        oidc::apply_env(&mut self.auth, env)?;
        if let Some(v) = parse(env, "EMERGENCE_AUTH_RATE_PER_MIN")? {
            self.limits.auth_rate_per_min = v;
        }
        if let Some(v) = parse(env, "EMERGENCE_SEND_RATE_PER_SEC")? {
            self.limits.send_rate_per_sec = v;
        }
        if let Some(v) = parse(env, "EMERGENCE_WS_CONNECT_RATE_PER_MIN")? {
            self.limits.ws_connect_rate_per_min = v;
        }
        if let Some(v) = parse(env, "EMERGENCE_THREAD_RATE_PER_MIN")? {
            self.limits.thread_rate_per_min = v;
        }
        if let Some(v) = parse(env, "EMERGENCE_MEMBER_RATE_PER_MIN")? {
            self.limits.member_rate_per_min = v;
        }
        if let Some(v) = parse(env, "EMERGENCE_WS_PER_USER")? {
            self.limits.ws_per_user = v;
        }
        if let Some(v) = parse(env, "EMERGENCE_WS_PER_IP")? {
            self.limits.ws_per_ip = v;
        }
        if let Some(v) = parse(env, "EMERGENCE_TRUSTED_PROXIES")? {
            self.limits.trusted_proxies = v;
        }
        if let Some(v) = parse(env, "EMERGENCE_DELETED_RETENTION_SECS")? {
            self.database.deleted_retention_secs = v;
        }
        if let Some(v) = parse(env, "EMERGENCE_PURGE_INTERVAL_MS")? {
            self.database.purge_interval_ms = v;
        }
        if let Some(v) = parse(env, "EMERGENCE_PENDING_QUEUE")? {
            self.database.pending_queue = v;
        }
        if let Some(v) = env.var("EMERGENCE_ASSET_BASE_URL") {
            self.web.asset_base_url = Some(v);
        }
        if let Some(v) = env.var("EMERGENCE_LOG_FORMAT") {
            self.log.format = v;
        }
        if let Some(v) = env.var("EMERGENCE_LOG") {
            self.log.level = v;
        }
        self.providers.apply_env(env);
        self.budgets.apply_env(env)?;
        self.documents.apply_env(env)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct MapEnv(HashMap<&'static str, &'static str>);
    impl Env for MapEnv {
        fn var(&self, key: &str) -> Option<String> {
            self.0.get(key).map(|s| s.to_string())
        }
    }

    #[test]
    fn env_overrides_file_and_defaults() {
        let env = MapEnv(HashMap::from([
            ("PORT", "9999"),
            ("DATABASE_URL", "postgres://x@localhost/db"),
            ("EMERGENCE_SEND_RATE_PER_SEC", "0"),
        ]));
        let s = Settings::load(None, &env).unwrap();
        assert_eq!(s.server.port, 9999);
        assert_eq!(s.database.url.expose(), "postgres://x@localhost/db");
        assert_eq!(s.limits.send_rate_per_sec, 0);
        assert_eq!(s.limits.auth_rate_per_min, 60);
    }

    #[test]
    fn secrets_are_redacted_in_debug() {
        let mut s = Settings::default();
        s.auth.signing_key = Some(Secret::new("super-secret-key"));
        s.database.url = Secret::new("postgres://user:hunter2@db/x");
        let dump = format!("{s:?}");
        assert!(!dump.contains("super-secret-key"));
        assert!(!dump.contains("hunter2"));
    }

    #[test]
    fn bad_env_values_are_reported() {
        let env = MapEnv(HashMap::from([("PORT", "eighty")]));
        let err = Settings::load(None, &env).unwrap_err().to_string();
        assert!(err.contains("PORT"), "{err}");
    }
}
