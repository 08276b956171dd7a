//! Keyed rate limits (GCRA, from the `governor` crate), bounded in memory: keys are parsed values
//! only (an address, a user id), and the table is pruned as it grows, so no client can make it
//! hold more than [`MAX_KEYS`] entries.

use std::{hash::Hash, num::NonZeroU32, sync::RwLock, time::Duration};

use governor::{
    Quota, RateLimiter as Gcra,
    clock::{Clock, DefaultClock},
    state::keyed::DefaultKeyedStateStore,
};

/// Most keys one limiter keeps. Past it, keys whose bucket is full again are dropped; if every
/// key is still busy (a flood from that many addresses at once), the table starts over: the
/// limit then fails open for a moment rather than grow without bound or lock everyone out.
pub const MAX_KEYS: usize = 100_000;

/// A keyed token bucket: `burst` requests at once, refilled at the configured rate. A rate of 0
/// turns it off.
pub struct RateLimiter<K: Hash + Eq + Clone> {
    /// Replaced by a fresh table when it overflows with busy keys.
    gcra: Option<RwLock<Keyed<K>>>,
    quota: Option<Quota>,
    burst: u32,
    period: Duration,
}

type Keyed<K> = Gcra<K, DefaultKeyedStateStore<K>, DefaultClock>;

impl<K: Hash + Eq + Clone> RateLimiter<K> {
    /// `per_sec` requests per second, bursts of `burst`.
    pub fn new(per_sec: f64, burst: u32) -> Self {
        let burst = burst.max(1);
        if per_sec <= 0.0 {
            return Self {
                gcra: None,
                quota: None,
                burst,
                period: Duration::ZERO,
            };
        }
        let period = Duration::from_secs_f64(1.0 / per_sec);
        let quota = Quota::with_period(period)
            .expect("a positive rate has a positive period")
            .allow_burst(NonZeroU32::new(burst).expect("burst is at least 1"));
        Self {
            gcra: Some(RwLock::new(Gcra::keyed(quota))),
            quota: Some(quota),
            burst,
            period,
        }
    }

    pub fn per_minute(per_min: u32, burst: u32) -> Self {
        Self::new(per_min as f64 / 60.0, burst)
    }

    pub fn enabled(&self) -> bool {
        self.gcra.is_some()
    }

    /// Take one request, or say how long until one is allowed.
    pub fn check(&self, key: &K) -> Result<(), Duration> {
        let (Some(table), Some(quota)) = (&self.gcra, self.quota) else {
            return Ok(());
        };
        let full = table.read().unwrap_or_else(|e| e.into_inner()).len() >= MAX_KEYS;
        if full {
            let mut gcra = table.write().unwrap_or_else(|e| e.into_inner());
            gcra.retain_recent();
            if gcra.len() >= MAX_KEYS {
                *gcra = Gcra::keyed(quota);
            }
            gcra.shrink_to_fit();
        }
        let gcra = table.read().unwrap_or_else(|e| e.into_inner());
        gcra.check_key(key)
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }

    /// Keys held now (for tests and metrics).
    pub fn keys(&self) -> usize {
        self.gcra
            .as_ref()
            .map_or(0, |g| g.read().unwrap_or_else(|e| e.into_inner()).len())
    }

    /// `RateLimit-Policy` header value: the burst and the time it takes to refill.
    pub fn policy(&self) -> String {
        let window = (self.period.as_secs_f64() * self.burst as f64)
            .ceil()
            .max(1.0) as u64;
        format!("{};w={window}", self.burst)
    }
}

/// A single token bucket (`burst` at once, refilled at `per_sec`), for one connection's frames.
pub type DirectLimiter =
    Gcra<governor::state::NotKeyed, governor::state::InMemoryState, DefaultClock>;

/// A direct limiter, or `None` when `per_sec` is 0 (off).
pub fn direct(per_sec: f64, burst: u32) -> Option<DirectLimiter> {
    (per_sec > 0.0).then(|| {
        let quota = Quota::with_period(Duration::from_secs_f64(1.0 / per_sec))
            .expect("a positive rate has a positive period")
            .allow_burst(NonZeroU32::new(burst.max(1)).expect("burst is at least 1"));
        Gcra::direct(quota)
    })
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
    fn the_table_never_holds_more_than_max_keys() {
        let l = RateLimiter::per_minute(1, 1);
        for k in 0..(MAX_KEYS as u64 + 5_000) {
            let _ = l.check(&k);
        }
        assert!(l.keys() <= MAX_KEYS, "{} keys", l.keys());
    }

    #[test]
    fn policy_names_the_burst_and_its_refill_time() {
        assert_eq!(RateLimiter::<u8>::per_minute(60, 20).policy(), "20;w=20");
        assert_eq!(RateLimiter::<u8>::new(20.0, 100).policy(), "100;w=5");
    }
}
