//! A small, dependency-free Prometheus registry: lock-free counters, gauges and histograms with
//! the exact names and labels listed in docs/operations.md, rendered as text exposition. Kept
//! after a same-minute A/B against `prometheus-client` (faster only on large families, and its
//! OpenMetrics output renames counters and HELP texts) and `metrics-exporter-prometheus` (the
//! same output, slower counters and histograms): docs/performance.md, "Metrics registry";
//! `bench/metrics-ab`.

mod documents;
mod label_key;
pub mod labels;

use std::{
    collections::BTreeMap,
    fmt::Write,
    sync::{
        Arc, RwLock,
        atomic::{AtomicI64, AtomicU64, Ordering},
    },
    time::Duration,
};

use label_key::{Borrowed, LabelKey, LabelValues};

/// A monotonically increasing count.
#[derive(Default, Debug)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A monotonically increasing amount of money, kept in billionths so that it adds lock-free;
/// rendered in whole units (`llm_cost_total`).
#[derive(Default, Debug)]
pub struct Money(AtomicU64);

impl Money {
    pub fn add(&self, amount: f64) {
        if amount.is_finite() && amount > 0.0 {
            self.0
                .fetch_add((amount * 1e9).round() as u64, Ordering::Relaxed);
        }
    }
    pub fn get(&self) -> f64 {
        self.0.load(Ordering::Relaxed) as f64 / 1e9
    }
}

/// A value that goes up and down.
#[derive(Default, Debug)]
pub struct Gauge(AtomicI64);

impl Gauge {
    pub fn set(&self, v: i64) {
        self.0.store(v, Ordering::Relaxed);
    }
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    pub fn dec(&self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Latency buckets, in seconds.
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

/// A metric with labels: one child per distinct label set.
///
/// Prometheus computes `rate()` / `increase()` from the difference between samples, so a label
/// set that first appears with its first event hides that event: the first sample already holds
/// it. Every label set the code can produce is therefore registered up front and exported at 0
/// from the start: [`Family::new_with`] for sets known at compile time (closed families),
/// [`Family::register`] for sets known at start-up (routes, configured agents).
#[derive(Debug)]
pub struct Family<T> {
    labels: &'static [&'static str],
    /// Closed: every label set is declared at construction; another one is a bug (debug builds
    /// panic, so tests catch it; release builds still count it).
    closed: bool,
    children: RwLock<BTreeMap<LabelKey, Arc<T>>>,
}

impl<T: Default> Family<T> {
    /// An open family: label sets appear with their first event unless [`Family::register`]ed.
    pub fn new(labels: &'static [&'static str]) -> Self {
        Self {
            labels,
            closed: false,
            children: RwLock::new(BTreeMap::new()),
        }
    }

    /// A closed family: every label set it may take is listed here and exported (at 0) from the
    /// start. One label, so each known set is one value.
    pub fn new_with(labels: &'static [&'static str], known: &[&str]) -> Self {
        assert_eq!(labels.len(), 1, "new_with lists values of a single label");
        let family = Self {
            labels,
            closed: true,
            children: RwLock::new(BTreeMap::new()),
        };
        for value in known {
            family.insert(&[value]);
        }
        family
    }

    /// Export this label set from now on, at its zero value until its first event.
    pub fn register(&self, values: &[&str]) {
        assert_eq!(values.len(), self.labels.len(), "label count");
        self.insert(values);
    }

    fn insert(&self, values: &[&str]) -> Arc<T> {
        let key = LabelKey(values.iter().map(|s| s.to_string()).collect());
        let mut map = self.children.write().unwrap_or_else(|e| e.into_inner());
        map.entry(key).or_default().clone()
    }

    /// The child for these label values (in the family's label order).
    pub fn with(&self, values: &[&str]) -> Arc<T> {
        debug_assert_eq!(values.len(), self.labels.len());
        {
            let map = self.children.read().unwrap_or_else(|e| e.into_inner());
            if let Some(found) = map.get(&Borrowed(values) as &dyn LabelValues) {
                return found.clone();
            }
        }
        debug_assert!(
            !self.closed,
            "{:?}={values:?} is not a declared label set: add it to the family's known values \
             (src/metrics/labels.rs) so that it is exported at 0 from the start",
            self.labels
        );
        self.insert(values)
    }

    /// Every label set exported, in label order.
    pub fn label_sets(&self) -> Vec<Vec<String>> {
        let map = self.children.read().unwrap_or_else(|e| e.into_inner());
        map.keys().map(|k| k.0.clone()).collect()
    }

    fn snapshot(&self) -> Vec<(String, Arc<T>)> {
        let map = self.children.read().unwrap_or_else(|e| e.into_inner());
        map.iter()
            .map(|(values, v)| {
                let labels = self
                    .labels
                    .iter()
                    .zip(&values.0)
                    .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
                    .collect::<Vec<_>>()
                    .join(",");
                (labels, v.clone())
            })
            .collect()
    }
}

impl Family<Counter> {
    /// Sum over every label set whose label `name` equals `value`.
    pub fn sum_where(&self, name: &str, value: &str) -> u64 {
        let Some(idx) = self.labels.iter().position(|l| *l == name) else {
            return 0;
        };
        let map = self.children.read().unwrap_or_else(|e| e.into_inner());
        map.iter()
            .filter(|(k, _)| k.0[idx] == value)
            .map(|(_, c)| c.get())
            .sum()
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Every metric the server exports.
#[derive(Debug)]
pub struct Metrics {
    pub http_requests: Family<Counter>,
    pub http_duration: Family<Histogram>,
    pub ws_connections: Family<Counter>,
    pub ws_active: Gauge,
    pub ws_frames: Family<Counter>,
    pub rate_limited: Family<Counter>,
    pub overload_rejections: Counter,
    pub db_up: Gauge,
    /// Reconnections begun: one per database outage.
    pub db_reconnect_attempts: Counter,
    /// Reconnections completed: one per outage that ended with the database back.
    pub db_reconnect_success: Counter,
    /// Connection attempts started (start-up and reconnections, hedged attempts included).
    pub db_connect_attempts: Counter,
    /// Operations that failed because the database was unreachable, and connection attempts
    /// that failed, timed out or were cancelled unanswered.
    pub db_connection_failures: Counter,
    pub db_pending_writes: Gauge,
    pub db_query_duration: Histogram,
    pub messages_persisted: Counter,
    pub broker_up: Gauge,
    pub broker_reconnects: Counter,
    pub broker_published: Counter,
    /// Events received from other instances, by `relevance`: `relevant` (a thread served here,
    /// or an instance-wide event) or `irrelevant` (a thread nobody here subscribes to).
    pub broker_received: Family<Counter>,
    pub broker_resync: Counter,
    pub llm_requests: Family<Counter>,
    /// Failed provider calls by `provider` and `class` (`agents::errors`).
    pub llm_errors: Family<Counter>,
    pub llm_first_token: Family<Histogram>,
    pub llm_stream: Family<Histogram>,
    pub llm_tokens: Family<Counter>,
    /// What agent answers cost by `agent` and `model`, from the settings' price table.
    pub llm_cost: Family<Money>,
    pub slow_consumer_disconnects: Counter,
    /// Documents whose text was extracted and indexed.
    pub documents_indexed: Counter,
    /// Extractions that failed, by `reason` (`labels::DOCUMENT_FAILURES`).
    pub document_failures: Family<Counter>,
    /// Time to find the passages for an agent turn or a passage search.
    pub document_retrieval: Histogram,
    /// Embeddings requests by `purpose` (`index`, `query`) and `outcome` (`ok`, `error`).
    pub embedding_requests: Family<Counter>,
    /// Duration of embeddings requests by `purpose`.
    pub embedding_seconds: Family<Histogram>,
    /// Passages left without a vector after their retries (full-text only until the backfill
    /// embeds them).
    pub embedding_failures: Counter,
    /// Passages whose vector was stored.
    pub embedded_chunks: Counter,
    /// API requests in flight (admission control).
    pub api_inflight: std::sync::atomic::AtomicUsize,
    start_time: f64,
}

impl Default for Metrics {
    fn default() -> Self {
        use labels::*;
        let http_requests = Family::new(&["route", "method", "status"]);
        for (route, methods) in crate::http::routes::ROUTES {
            for method in *methods {
                for status in HTTP_ZERO_STATUSES {
                    http_requests.register(&[route, method, status]);
                }
            }
        }
        Self {
            http_requests,
            http_duration: Family::new(&["route", "method"]),
            ws_connections: Family::new_with(&["outcome"], WS_OUTCOMES),
            ws_active: Gauge::default(),
            ws_frames: Family::new_with(&["direction"], WS_DIRECTIONS),
            rate_limited: Family::new_with(&["scope"], RATE_LIMIT_SCOPES),
            overload_rejections: Counter::default(),
            db_up: Gauge::default(),
            db_reconnect_attempts: Counter::default(),
            db_reconnect_success: Counter::default(),
            db_connect_attempts: Counter::default(),
            db_connection_failures: Counter::default(),
            db_pending_writes: Gauge::default(),
            db_query_duration: Histogram::default(),
            messages_persisted: Counter::default(),
            broker_up: Gauge::default(),
            broker_reconnects: Counter::default(),
            broker_published: Counter::default(),
            broker_received: Family::new_with(&["relevance"], BROKER_RELEVANCE),
            broker_resync: Counter::default(),
            llm_requests: Family::new(&["provider", "model", "outcome"]),
            llm_errors: Family::new(&["provider", "class"]),
            llm_first_token: Family::new(&["provider"]),
            llm_stream: Family::new(&["provider"]),
            llm_tokens: Family::new_with(&["direction"], TOKEN_DIRECTIONS),
            llm_cost: Family::new(&["agent", "model"]),
            slow_consumer_disconnects: Counter::default(),
            documents_indexed: Counter::default(),
            document_failures: Family::new_with(&["reason"], DOCUMENT_FAILURES),
            document_retrieval: Histogram::default(),
            embedding_requests: {
                let f = Family::new(&["purpose", "outcome"]);
                for purpose in EMBEDDING_PURPOSES {
                    for outcome in EMBEDDING_OUTCOMES {
                        f.register(&[purpose, outcome]);
                    }
                }
                f
            },
            embedding_seconds: Family::new_with(&["purpose"], EMBEDDING_PURPOSES),
            embedding_failures: Counter::default(),
            embedded_chunks: Counter::default(),
            api_inflight: Default::default(),
            start_time: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0),
        }
    }
}

struct Out(String);

impl Out {
    fn header(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }
    fn counter(&mut self, name: &str, help: &str, c: &Counter) {
        self.header(name, "counter", help);
        let _ = writeln!(self.0, "{name} {}", c.get());
    }
    fn gauge(&mut self, name: &str, help: &str, v: f64) {
        self.header(name, "gauge", help);
        let _ = writeln!(self.0, "{name} {v}");
    }
    fn counters(&mut self, name: &str, help: &str, f: &Family<Counter>) {
        self.header(name, "counter", help);
        for (labels, c) in f.snapshot() {
            let _ = writeln!(self.0, "{name}{{{labels}}} {}", c.get());
        }
    }
    fn histogram_body(&mut self, name: &str, labels: &str, h: &Histogram) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (i, bound) in BUCKETS.iter().enumerate() {
            cumulative += h.slots[i].load(Ordering::Relaxed);
            let _ = writeln!(
                self.0,
                "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {cumulative}"
            );
        }
        let count = cumulative + h.slots[BUCKETS.len()].load(Ordering::Relaxed);
        let _ = writeln!(self.0, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {count}");
        let sum = h.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let wrap = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(self.0, "{name}_sum{wrap} {sum}\n{name}_count{wrap} {count}");
    }
    fn histogram(&mut self, name: &str, help: &str, h: &Histogram) {
        self.header(name, "histogram", help);
        self.histogram_body(name, "", h);
    }
    fn histograms(&mut self, name: &str, help: &str, f: &Family<Histogram>) {
        self.header(name, "histogram", help);
        for (labels, h) in f.snapshot() {
            self.histogram_body(name, &labels, &h);
        }
    }
}

impl Metrics {
    /// Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut o = Out(String::with_capacity(16 * 1024));
        o.header("emergence_build_info", "gauge", "Build information.");
        let _ = writeln!(
            o.0,
            "emergence_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        );
        o.counters(
            "http_requests_total",
            "HTTP requests by matched route, method and status.",
            &self.http_requests,
        );
        o.histograms(
            "http_request_duration_seconds",
            "HTTP request latency.",
            &self.http_duration,
        );
        o.counters(
            "ws_connections_total",
            "WebSocket connection attempts by outcome.",
            &self.ws_connections,
        );
        o.gauge(
            "ws_active_connections",
            "Open WebSocket connections.",
            self.ws_active.get() as f64,
        );
        o.counters(
            "ws_frames_total",
            "WebSocket data frames by direction.",
            &self.ws_frames,
        );
        o.counters(
            "rate_limited_total",
            "Requests refused by a rate limit, by scope.",
            &self.rate_limited,
        );
        o.counter(
            "overload_rejections_total",
            "Requests refused with 503 because the instance was saturated.",
            &self.overload_rejections,
        );
        o.counter(
            "ws_slow_consumer_disconnects_total",
            "Sockets closed because they could not keep up.",
            &self.slow_consumer_disconnects,
        );
        o.gauge(
            "db_up",
            "1 when the database answers, else 0.",
            self.db_up.get() as f64,
        );
        o.counter(
            "db_reconnect_attempts_total",
            "Reconnections begun: one per database outage.",
            &self.db_reconnect_attempts,
        );
        o.counter(
            "db_reconnect_success_total",
            "Reconnections completed: outages that ended with the database back.",
            &self.db_reconnect_success,
        );
        o.counter(
            "db_connect_attempts_total",
            "Database connection attempts started (start-up and reconnections, hedged ones included).",
            &self.db_connect_attempts,
        );
        o.counter(
            "db_connection_failures_total",
            "Database operations that failed because the database was unreachable, and connection \
             attempts that failed, timed out or were cancelled unanswered.",
            &self.db_connection_failures,
        );
        o.gauge(
            "db_pending_writes",
            "Messages accepted and not yet stored.",
            self.db_pending_writes.get() as f64,
        );
        o.histogram(
            "db_query_duration_seconds",
            "Database operation latency.",
            &self.db_query_duration,
        );
        o.counter(
            "messages_persisted_total",
            "Messages newly stored.",
            &self.messages_persisted,
        );
        o.gauge(
            "broker_up",
            "1 when the broker is connected (always 1 in-process).",
            self.broker_up.get() as f64,
        );
        o.counter(
            "broker_reconnects_total",
            "Broker reconnections.",
            &self.broker_reconnects,
        );
        o.counter(
            "broker_published_total",
            "Events published to the broker.",
            &self.broker_published,
        );
        o.counters(
            "broker_received_total",
            "Events received from other instances, by relevance to this instance.",
            &self.broker_received,
        );
        o.counter(
            "broker_resync_total",
            "Re-reads of subscribed threads after a broker gap.",
            &self.broker_resync,
        );
        o.counters(
            "llm_requests_total",
            "Provider requests by provider, model and outcome.",
            &self.llm_requests,
        );
        o.counters(
            "llm_errors_total",
            "Failed provider calls by provider and error class.",
            &self.llm_errors,
        );
        o.histograms(
            "llm_first_token_seconds",
            "Time to the first token.",
            &self.llm_first_token,
        );
        o.histograms(
            "llm_stream_seconds",
            "Duration of whole agent streams.",
            &self.llm_stream,
        );
        o.counters(
            "llm_tokens_total",
            "Tokens by direction (prompt, completion).",
            &self.llm_tokens,
        );
        o.header(
            "llm_cost_total",
            "counter",
            "Cost of agent answers by agent and model, from the price table (settings currency).",
        );
        for (labels, m) in self.llm_cost.snapshot() {
            let _ = writeln!(o.0, "llm_cost_total{{{labels}}} {}", m.get());
        }
        self.render_documents(&mut o);
        self.render_process(&mut o);
        o.0
    }

    fn render_process(&self, o: &mut Out) {
        let page = 4096.0;
        if let Ok(statm) = std::fs::read_to_string("/proc/self/statm")
            && let Some(rss) = statm
                .split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<f64>().ok())
        {
            o.gauge(
                "process_resident_memory_bytes",
                "Resident memory.",
                rss * page,
            );
        }
        if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
            o.gauge(
                "process_open_fds",
                "Open file descriptors.",
                fds.count() as f64,
            );
        }
        if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
            // Fields after the command name: utime and stime are the 12th and 13th.
            if let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) {
                let f: Vec<&str> = rest.split_whitespace().collect();
                let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
                let cpu = (ticks(11) + ticks(12)) / 100.0;
                o.header("process_cpu_seconds_total", "counter", "CPU time used.");
                let _ = writeln!(o.0, "process_cpu_seconds_total {cpu}");
            }
        }
        o.gauge(
            "process_start_time_seconds",
            "Start time, seconds since the epoch.",
            self.start_time,
        );
    }
}

#[cfg(test)]
mod tests;
