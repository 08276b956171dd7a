//! The server's registry primitives after the fixes this benchmark pointed at (the hot-path
//! parts of `src/metrics/mod.rs` and `src/metrics/label_key.rs` verbatim): one increment per
//! histogram observation, and a family lookup in O(log n) without allocating.

use std::{
    collections::BTreeMap,
    sync::{
        Arc, RwLock,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

const BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// A latency histogram with fixed buckets. Each slot counts only its own range (the last one
/// what lies past the largest bound), so an observation is one increment wherever it falls;
/// the cumulative counts Prometheus wants, and the total, are summed when rendered
/// (docs/performance.md, "Metrics registry").
#[derive(Debug)]
pub struct Histogram {
    slots: [AtomicU64; BUCKETS.len() + 1],
    sum_micros: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            slots: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_micros: AtomicU64::new(0),
        }
    }
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        // The first bucket whose bound is >= the value (`le` is inclusive), else the overflow.
        let slot = BUCKETS.partition_point(|bound| *bound < secs);
        self.slots[slot].fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }
    pub fn count(&self) -> u64 {
        self.slots.iter().map(|s| s.load(Ordering::Relaxed)).sum()
    }
}

#[derive(Debug)]
pub struct Family<T> {
    children: RwLock<BTreeMap<LabelKey, Arc<T>>>,
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
        let key = LabelKey(values.iter().map(|s| s.to_string()).collect());
        let mut map = self.children.write().unwrap_or_else(|e| e.into_inner());
        map.entry(key).or_default().clone()
    }

    pub fn with(&self, values: &[&str]) -> Arc<T> {
        {
            let map = self.children.read().unwrap_or_else(|e| e.into_inner());
            if let Some(found) = map.get(&Borrowed(values) as &dyn LabelValues) {
                return found.clone();
            }
        }
        self.insert(values)
    }
}

/// A label set's values as a family stores them. The map is searched with the caller's
/// borrowed `&[&str]` (through [`LabelValues`]), in O(log n) string comparisons and without
/// allocating: `http_requests_total` holds every route x method x status from the start.
#[derive(Debug, Clone)]
pub struct LabelKey(pub Vec<String>);

/// Label values, owned or borrowed, ordered as sequences of strings.
pub trait LabelValues {
    fn len(&self) -> usize;
    fn at(&self, i: usize) -> &str;
}

impl LabelValues for LabelKey {
    fn len(&self) -> usize {
        self.0.len()
    }
    fn at(&self, i: usize) -> &str {
        &self.0[i]
    }
}

/// A lookup's label values.
pub struct Borrowed<'a>(pub &'a [&'a str]);

impl LabelValues for Borrowed<'_> {
    fn len(&self) -> usize {
        self.0.len()
    }
    fn at(&self, i: usize) -> &str {
        self.0[i]
    }
}

impl Ord for dyn LabelValues + '_ {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (0..self.len().min(other.len()))
            .map(|i| self.at(i).cmp(other.at(i)))
            .find(|o| o.is_ne())
            .unwrap_or_else(|| self.len().cmp(&other.len()))
    }
}

impl PartialOrd for dyn LabelValues + '_ {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for dyn LabelValues + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other).is_eq()
    }
}

impl Eq for dyn LabelValues + '_ {}

impl<'a> std::borrow::Borrow<dyn LabelValues + 'a> for LabelKey {
    fn borrow(&self) -> &(dyn LabelValues + 'a) {
        self
    }
}

impl Ord for LabelKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self as &dyn LabelValues).cmp(other as &dyn LabelValues)
    }
}

impl PartialOrd for LabelKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for LabelKey {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other).is_eq()
    }
}

impl Eq for LabelKey {}
