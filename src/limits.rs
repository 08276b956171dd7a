//! Admission control: token-bucket rate limits where they protect something (login/register per
//! client IP, failed logins per username, sends per user, WebSocket connects per IP). Static
//! assets and health endpoints never pass through any of these.

use std::{
    collections::{HashMap, VecDeque},
    hash::Hash,
    net::IpAddr,
    sync::Mutex,
    time::{Duration, Instant},
};

use crate::settings::LimitSettings;

/// A keyed token bucket: `burst` tokens, refilled at `per_sec`. A rate of 0 turns it off.
pub struct RateLimiter<K> {
    per_sec: f64,
    burst: f64,
    buckets: Mutex<HashMap<K, (f64, Instant)>>,
}

impl<K: Hash + Eq + Clone> RateLimiter<K> {
    pub fn new(per_sec: f64, burst: u32) -> Self {
        Self {
            per_sec,
            burst: burst.max(1) as f64,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    pub fn per_minute(per_min: u32, burst: u32) -> Self {
        Self::new(per_min as f64 / 60.0, burst)
    }

    pub fn enabled(&self) -> bool {
        self.per_sec > 0.0
    }

    /// Take one token, or say how long until one is available.
    pub fn check(&self, key: &K) -> Result<(), Duration> {
        if !self.enabled() {
            return Ok(());
        }
        let now = Instant::now();
        let mut map = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() > 100_000 {
            let (rate, burst) = (self.per_sec, self.burst);
            map.retain(|_, (tokens, at)| {
                *tokens + now.duration_since(*at).as_secs_f64() * rate < burst
            });
        }
        let (tokens, at) = map.entry(key.clone()).or_insert((self.burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.per_sec).min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - *tokens) / self.per_sec))
        }
    }

    /// `RateLimit-Policy` header value.
    pub fn policy(&self) -> String {
        let window = (self.burst / self.per_sec).ceil().max(1.0) as u64;
        format!("{};w={window}", self.burst as u64)
    }
}

/// Failed logins per username in a sliding window.
pub struct FailedLogins {
    max: u32,
    window: Duration,
    seen: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl FailedLogins {
    pub fn new(max: u32, window: Duration) -> Self {
        Self {
            max,
            window,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// `Err(retry_after)` when this username has failed too often recently.
    pub fn check(&self, username_key: &str) -> Result<(), Duration> {
        if self.max == 0 {
            return Ok(());
        }
        let now = Instant::now();
        let mut map = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let Some(times) = map.get_mut(username_key) else {
            return Ok(());
        };
        while times
            .front()
            .is_some_and(|t| now.duration_since(*t) > self.window)
        {
            times.pop_front();
        }
        if times.len() as u32 >= self.max {
            let oldest = *times.front().expect("non-empty");
            return Err(self.window.saturating_sub(now.duration_since(oldest)));
        }
        Ok(())
    }

    pub fn record(&self, username_key: &str) {
        let mut map = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() > 100_000 {
            let (now, window) = (Instant::now(), self.window);
            map.retain(|_, t| {
                t.back()
                    .is_some_and(|last| now.duration_since(*last) < window)
            });
        }
        map.entry(username_key.to_string())
            .or_default()
            .push_back(Instant::now());
    }
}

/// Every limiter of the instance.
pub struct Limits {
    pub auth: RateLimiter<IpAddr>,
    pub failed_logins: FailedLogins,
    pub send: RateLimiter<String>,
    pub ws_connect: RateLimiter<IpAddr>,
}

impl Limits {
    pub fn new(s: &LimitSettings) -> Self {
        Self {
            auth: RateLimiter::per_minute(s.auth_rate_per_min, s.auth_burst),
            failed_logins: FailedLogins::new(
                s.failed_logins_per_user,
                Duration::from_secs(s.failed_login_window_secs),
            ),
            send: RateLimiter::new(s.send_rate_per_sec as f64, s.send_burst),
            ws_connect: RateLimiter::per_minute(s.ws_connect_rate_per_min, s.ws_connect_burst),
        }
    }
}

/// Round a wait up to whole seconds for `Retry-After` (never 0).
pub fn retry_after_secs(d: Duration) -> u64 {
    d.as_secs_f64().ceil().max(1.0) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_burst_then_refuses() {
        let l = RateLimiter::new(1.0, 3);
        for _ in 0..3 {
            assert!(l.check(&1).is_ok());
        }
        let wait = l.check(&1).unwrap_err();
        assert!(wait <= Duration::from_secs(1));
        assert!(l.check(&2).is_ok(), "keys are independent");
    }

    #[test]
    fn zero_rate_is_off() {
        let l = RateLimiter::new(0.0, 1);
        for _ in 0..1000 {
            assert!(l.check(&1).is_ok());
        }
    }

    #[test]
    fn failed_logins_lock_after_max() {
        let f = FailedLogins::new(2, Duration::from_secs(60));
        f.record("a");
        assert!(f.check("a").is_ok());
        f.record("a");
        assert!(f.check("a").is_err());
        assert!(f.check("b").is_ok());
    }
}
