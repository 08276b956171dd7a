//! Admission control: what one client or one user may ask of the instance. Rate limits where they
//! protect something (login/register per client address, failed logins per username and
//! address, sends, thread creation and membership changes per user, WebSocket connects per
//! address), caps on what may be held at once (agent answers per user across the fleet, open
//! WebSockets per user and per address). Every table is keyed by parsed values only and bounded.
//! Static assets and health endpoints never pass through any of these.

pub mod connections;
pub mod failed_logins;
pub mod rate;
pub mod slots;

use std::{
    net::{IpAddr, Ipv6Addr},
    sync::Arc,
    time::Duration,
};

pub use connections::{CapExceeded, ConnectionCaps, ConnectionSlot};
pub use failed_logins::FailedLogins;
pub use rate::RateLimiter;
pub use slots::{AnswerSlots, SlotLease};

use crate::{metrics::Metrics, settings::Settings};

/// Every limiter of the instance.
pub struct Limits {
    pub auth: RateLimiter<IpAddr>,
    pub failed_logins: FailedLogins,
    pub send: RateLimiter<String>,
    pub ws_connect: RateLimiter<IpAddr>,
    pub threads: RateLimiter<String>,
    pub members: RateLimiter<String>,
    pub connections: Arc<ConnectionCaps>,
    pub answers: Arc<AnswerSlots>,
}

impl Limits {
    pub fn new(settings: &Settings) -> anyhow::Result<Self> {
        let s = &settings.limits;
        let redis = settings
            .broker
            .url
            .as_ref()
            .map(|url| (url.expose(), settings.broker.channel.as_str()));
        Ok(Self {
            auth: RateLimiter::per_minute(s.auth_rate_per_min, s.auth_burst),
            failed_logins: FailedLogins::new(
                s.failed_logins_per_user,
                Duration::from_secs(s.failed_login_window_secs),
            ),
            send: RateLimiter::new(s.send_rate_per_sec as f64, s.send_burst),
            ws_connect: RateLimiter::per_minute(s.ws_connect_rate_per_min, s.ws_connect_burst),
            threads: RateLimiter::per_minute(s.thread_rate_per_min, s.thread_burst),
            members: RateLimiter::per_minute(s.member_rate_per_min, s.member_burst),
            connections: Arc::new(ConnectionCaps::new(s.ws_per_user, s.ws_per_ip)),
            answers: AnswerSlots::new(s.agent_streams_per_user, redis)?,
        })
    }
}

/// The address a client is limited by: IPv4 as is, IPv6 per /64 (one subscriber's whole
/// network, which any one host can draw fresh addresses from), IPv4-mapped IPv6 as IPv4.
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// Count one rate-limited answer: the `rate_limited_total{scope}` counter and its `rate limited`
/// log event, written together so that `emergence guard` (the logs) and `/metrics` count the
/// same refusals. The event comes first: any count a scrape shows already has its line.
pub fn count_rate_limited(metrics: &Metrics, scope: &str) {
    tracing::info!(scope, "rate limited");
    metrics.rate_limited.with(&[scope]).inc();
}

/// Round a wait up to whole seconds for `Retry-After` (never 0).
pub fn retry_after_secs(d: Duration) -> u64 {
    d.as_secs_f64().ceil().max(1.0) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_addresses_of_one_64_share_a_key_and_ipv4_is_kept() {
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff:ffff:ffff:ffff".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(client_key(a), client_key(b));
        assert_ne!(client_key(a), client_key(c));
        let v4: IpAddr = "203.0.113.9".parse().unwrap();
        assert_eq!(client_key(v4), v4);
        let mapped: IpAddr = "::ffff:203.0.113.9".parse().unwrap();
        assert_eq!(client_key(mapped), v4);
    }
}
