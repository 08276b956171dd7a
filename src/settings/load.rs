//! How the settings tree is loaded: defaults, then the TOML file, then the environment (each
//! `EMERGENCE_*` variable, `PORT` and `DATABASE_URL` as the platform sets them), then checked
//! so that an unsafe or broken configuration stops the server at start-up.

use std::{fmt, path::PathBuf};

use anyhow::Context;

use super::{Pooler, Registration, Secret, Settings, oidc};

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
        self.memories.apply_env(env)?;
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
