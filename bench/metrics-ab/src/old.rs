//! The server's own registry primitives as `src/metrics/mod.rs` has them (the hot-path parts
//! verbatim: `Counter`, `Histogram`, `Family::with`), so both sides run in one binary.

use std::{
    collections::BTreeMap,
    sync::{
        Arc, RwLock,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

#[derive(Default, Debug)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

const BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

#[derive(Debug)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            count: AtomicU64::new(0),
            sum_micros: AtomicU64::new(0),
        }
    }
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        for (i, bound) in BUCKETS.iter().enumerate() {
            if secs <= *bound {
                self.buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }
}

#[derive(Debug)]
pub struct Family<T> {
    children: RwLock<BTreeMap<Vec<String>, Arc<T>>>,
}

impl<T: Default> Family<T> {
    pub fn new() -> Self {
        Self {
            children: RwLock::new(BTreeMap::new()),
        }
    }

    pub fn register(&self, values: &[&str]) {
        self.insert(values);
    }

    fn insert(&self, values: &[&str]) -> Arc<T> {
        let key: Vec<String> = values.iter().map(|s| s.to_string()).collect();
        let mut map = self.children.write().unwrap_or_else(|e| e.into_inner());
        map.entry(key).or_default().clone()
    }

    /// As in the server: a linear search of the label sets under the read lock.
    pub fn with(&self, values: &[&str]) -> Arc<T> {
        {
            let map = self.children.read().unwrap_or_else(|e| e.into_inner());
            if let Some(found) = map
                .iter()
                .find(|(k, _)| k.iter().map(String::as_str).eq(values.iter().copied()))
            {
                return found.1.clone();
            }
        }
        self.insert(values)
    }
}
