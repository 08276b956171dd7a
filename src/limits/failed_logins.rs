//! Failed logins per (username, client address) in a sliding window. Keyed on both, so a
//! stranger guessing a password locks out only themselves, never the account's owner. Keys are
//! parsed usernames (at most 32 characters) and addresses: a request whose username cannot
//! exist is refused before it is counted, so nothing a client sends can make an entry large,
//! and the table is bounded in entries and pruned as it grows.

use std::{
    collections::{HashMap, VecDeque},
    net::IpAddr,
    sync::Mutex,
    time::{Duration, Instant},
};

/// Most (username, address) pairs kept. Each holds at most `max` instants.
pub const MAX_ENTRIES: usize = 50_000;

/// Whose failures are counted together: a username's lower-cased key and a client address key.
pub type LoginKey = (String, IpAddr);

pub struct FailedLogins {
    max: u32,
    window: Duration,
    seen: Mutex<HashMap<LoginKey, VecDeque<Instant>>>,
}

impl FailedLogins {
    pub fn new(max: u32, window: Duration) -> Self {
        Self {
            max,
            window,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// `Err(retry_after)` when this pair has failed too often recently.
    pub fn check(&self, key: &LoginKey) -> Result<(), Duration> {
        if self.max == 0 {
            return Ok(());
        }
        let now = Instant::now();
        let mut map = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let Some(times) = map.get_mut(key) else {
            return Ok(());
        };
        self.expire(times, now);
        if times.len() as u32 >= self.max {
            let oldest = *times.front().expect("non-empty");
            return Err(self.window.saturating_sub(now.duration_since(oldest)));
        }
        Ok(())
    }

    /// Count one failure.
    pub fn record(&self, key: LoginKey) {
        if self.max == 0 {
            return;
        }
        let now = Instant::now();
        let mut map = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_ENTRIES && !map.contains_key(&key) {
            self.prune(&mut map, now);
        }
        let times = map.entry(key).or_default();
        self.expire(times, now);
        times.push_back(now);
        // Only the newest `max` failures matter for the lockout.
        while times.len() as u32 > self.max {
            times.pop_front();
        }
    }

    /// Pairs held now.
    pub fn len(&self) -> usize {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn expire(&self, times: &mut VecDeque<Instant>, now: Instant) {
        while times
            .front()
            .is_some_and(|t| now.duration_since(*t) > self.window)
        {
            times.pop_front();
        }
    }

    /// Drop expired pairs; if the table is still full, drop a tenth of it (the pairs whose last
    /// failure is oldest) so memory stays bounded whatever the traffic.
    fn prune(&self, map: &mut HashMap<LoginKey, VecDeque<Instant>>, now: Instant) {
        map.retain(|_, t| {
            t.back()
                .is_some_and(|l| now.duration_since(*l) <= self.window)
        });
        if map.len() >= MAX_ENTRIES {
            let mut last: Vec<Instant> = map.values().filter_map(|t| t.back().copied()).collect();
            let cut = MAX_ENTRIES / 10;
            last.select_nth_unstable(cut);
            let threshold = last[cut];
            map.retain(|_, t| t.back().is_some_and(|l| *l > threshold));
        }
        map.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str, ip: &str) -> LoginKey {
        (name.to_string(), ip.parse().unwrap())
    }

    #[test]
    fn a_pair_locks_after_max_failures_and_other_pairs_do_not() {
        let f = FailedLogins::new(2, Duration::from_secs(60));
        f.record(key("a", "10.0.0.1"));
        assert!(f.check(&key("a", "10.0.0.1")).is_ok());
        f.record(key("a", "10.0.0.1"));
        assert!(f.check(&key("a", "10.0.0.1")).is_err());
        assert!(f.check(&key("a", "10.0.0.2")).is_ok(), "another client");
        assert!(f.check(&key("b", "10.0.0.1")).is_ok(), "another username");
    }

    #[test]
    fn the_table_stays_bounded_under_a_flood_of_distinct_pairs() {
        let f = FailedLogins::new(10, Duration::from_secs(600));
        for i in 0..(MAX_ENTRIES + 20_000) {
            let ip = IpAddr::from((i as u32).to_be_bytes());
            f.record((format!("user{}", i % 7), ip));
        }
        assert!(f.len() <= MAX_ENTRIES, "{} pairs", f.len());
        // The newest pairs are still counted.
        let newest = MAX_ENTRIES + 20_000 - 1;
        let ip = IpAddr::from((newest as u32).to_be_bytes());
        f.record((format!("user{}", newest % 7), ip));
    }

    #[test]
    fn each_pair_keeps_at_most_max_instants() {
        let f = FailedLogins::new(3, Duration::from_secs(600));
        for _ in 0..1000 {
            f.record(key("a", "10.0.0.1"));
        }
        let map = f.seen.lock().unwrap();
        assert_eq!(map[&key("a", "10.0.0.1")].len(), 3);
    }
}
