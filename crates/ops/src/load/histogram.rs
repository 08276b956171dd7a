//! Latency histogram of the load generator, on `hdrhistogram` (microseconds, 2 significant
//! digits: at most 1 % error). Every connection task records into it at once, so it is sharded:
//! each worker thread writes to its own shard (an uncontended lock), and readers merge them. A
//! fan-out run counts its deliveries here too (one recorded latency each), with the latest
//! receipt time kept per shard.

use std::sync::{
    Mutex,
    atomic::{AtomicUsize, Ordering},
};

use super::Percentiles;

const SHARDS: usize = 16;
/// Largest recordable latency: one hour, in microseconds (larger values are clamped).
const HIGHEST: u64 = 3_600_000_000;

/// A concurrent latency histogram (values in microseconds).
pub struct Histogram {
    shards: Vec<Mutex<Shard>>,
}

struct Shard {
    h: hdrhistogram::Histogram<u64>,
    /// The latest `at` given to [`Histogram::record_at`].
    last_at: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        let shard = || {
            Mutex::new(Shard {
                h: hdrhistogram::Histogram::new_with_bounds(1, HIGHEST, 2)
                    .expect("static histogram bounds are valid"),
                last_at: 0,
            })
        };
        Self {
            shards: (0..SHARDS).map(|_| shard()).collect(),
        }
    }
}

/// This thread's shard, assigned on first use.
fn shard_index() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static INDEX: usize = NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS;
    }
    INDEX.with(|i| *i)
}

impl Histogram {
    pub fn record(&self, micros: u64) {
        self.shard().h.saturating_record(micros.max(1));
    }

    /// Record `micros` observed at `at` (any clock, say Unix microseconds), keeping the latest
    /// `at` ([`Histogram::last_at`]).
    pub fn record_at(&self, micros: u64, at: u64) {
        let mut shard = self.shard();
        shard.h.saturating_record(micros.max(1));
        shard.last_at = shard.last_at.max(at);
    }

    fn shard(&self) -> std::sync::MutexGuard<'_, Shard> {
        self.shards[shard_index()]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Every shard merged into one.
    fn merged(&self) -> hdrhistogram::Histogram<u64> {
        let mut all = hdrhistogram::Histogram::new_with_bounds(1, HIGHEST, 2)
            .expect("static histogram bounds are valid");
        for shard in &self.shards {
            let shard = shard.lock().unwrap_or_else(|e| e.into_inner());
            let _ = all.add(&shard.h);
        }
        all
    }

    /// Values recorded (the shards' counts summed, without merging them).
    pub fn count(&self) -> u64 {
        let shards = self.shards.iter();
        shards
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).h.len())
            .sum()
    }

    /// The latest `at` given to [`Histogram::record_at`] (0 when none was).
    pub fn last_at(&self) -> u64 {
        let shards = self.shards.iter();
        shards
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).last_at)
            .max()
            .unwrap_or(0)
    }

    /// The value at quantile `q` (0..=1), in microseconds.
    pub fn quantile(&self, q: f64) -> u64 {
        self.merged().value_at_quantile(q)
    }

    pub fn percentiles(&self) -> Percentiles {
        let h = self.merged();
        let ms = |us: u64| us as f64 / 1000.0;
        Percentiles {
            count: h.len(),
            p50: ms(h.value_at_quantile(0.50)),
            p90: ms(h.value_at_quantile(0.90)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
            mean: if h.is_empty() { 0.0 } else { h.mean() / 1000.0 },
        }
    }

    /// Counts per bucket of `width` microseconds (key: the value over `width`, rounded), only
    /// the non-empty buckets.
    pub fn buckets(&self, width: u64) -> std::collections::BTreeMap<u64, u64> {
        let mut out = std::collections::BTreeMap::new();
        let width = width.max(1);
        for v in self.merged().iter_recorded() {
            let key = (v.value_iterated_to() + width / 2) / width;
            *out.entry(key).or_default() += v.count_at_value();
        }
        out
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
        for v in self.merged().iter_recorded() {
            let ms = v.value_iterated_to() as f64 / 1000.0;
            let slot = BOUNDS_MS
                .iter()
                .position(|b| ms <= *b)
                .unwrap_or(BOUNDS_MS.len() - 1);
            out[slot].1 += v.count_at_value();
        }
        out.retain(|(_, n)| *n > 0);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_of_a_uniform_spread_are_within_one_percent() {
        let h = Histogram::default();
        for v in 1..=10_000u64 {
            h.record(v);
        }
        let p = h.percentiles();
        assert_eq!(p.count, 10_000);
        assert!((p.p50 - 5.0).abs() <= 0.05, "{p:?}");
        assert!((p.p99 - 9.9).abs() <= 0.1, "{p:?}");
        assert!((p.max - 10.0).abs() <= 0.1, "{p:?}");
        assert!((p.mean - 5.0).abs() <= 0.05, "{p:?}");
    }

    #[test]
    fn records_from_many_threads_are_all_counted() {
        let h = std::sync::Arc::new(Histogram::default());
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let h = h.clone();
                std::thread::spawn(move || {
                    for v in 0..1000u64 {
                        h.record_at(t * 1000 + v, t * 10_000 + v);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(h.count(), 8000);
        assert_eq!(h.last_at(), 70_999);
        let coarse: u64 = h.coarse().iter().map(|(_, n)| n).sum();
        assert_eq!(coarse, 8000);
    }
}
