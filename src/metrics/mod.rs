//! A small, dependency-free Prometheus registry: lock-free counters, gauges and histograms with
//! the exact names and labels listed in docs/operations.md, rendered as text exposition.

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

/// A latency histogram with fixed buckets.
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
    children: RwLock<BTreeMap<Vec<String>, Arc<T>>>,
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
        let key: Vec<String> = values.iter().map(|s| s.to_string()).collect();
        let mut map = self.children.write().unwrap_or_else(|e| e.into_inner());
        map.entry(key).or_default().clone()
    }

    /// The child for these label values (in the family's label order).
    pub fn with(&self, values: &[&str]) -> Arc<T> {
        debug_assert_eq!(values.len(), self.labels.len());
        {
            let map = self.children.read().unwrap_or_else(|e| e.into_inner());
            if let Some(found) = map
                .iter()
                .find(|(k, _)| k.iter().map(String::as_str).eq(values.iter().copied()))
            {
                return found.1.clone();
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
        map.keys().cloned().collect()
    }

    fn snapshot(&self) -> Vec<(String, Arc<T>)> {
        let map = self.children.read().unwrap_or_else(|e| e.into_inner());
        map.iter()
            .map(|(values, v)| {
                let labels = self
                    .labels
                    .iter()
                    .zip(values)
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
            .filter(|(k, _)| k[idx] == value)
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
    pub broker_received: Counter,
    pub broker_resync: Counter,
    pub llm_requests: Family<Counter>,
    pub llm_first_token: Family<Histogram>,
    pub llm_stream: Family<Histogram>,
    pub llm_tokens: Family<Counter>,
    pub slow_consumer_disconnects: Counter,
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
            broker_received: Counter::default(),
            broker_resync: Counter::default(),
            llm_requests: Family::new(&["provider", "model", "outcome"]),
            llm_first_token: Family::new(&["provider"]),
            llm_stream: Family::new(&["provider"]),
            llm_tokens: Family::new_with(&["direction"], TOKEN_DIRECTIONS),
            slow_consumer_disconnects: Counter::default(),
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
        for (i, bound) in BUCKETS.iter().enumerate() {
            let n = h.buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(self.0, "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {n}");
        }
        let count = h.count.load(Ordering::Relaxed);
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
        o.counter(
            "broker_received_total",
            "Events received from other instances.",
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
mod tests {
    use super::*;

    #[test]
    fn renders_labels_and_histograms() {
        let m = Metrics::default();
        m.http_requests.with(&["/api/me", "GET", "200"]).inc();
        m.http_requests.with(&["/api/me", "GET", "200"]).inc();
        m.db_query_duration.observe(Duration::from_millis(3));
        let text = m.render();
        assert!(
            text.contains("http_requests_total{route=\"/api/me\",method=\"GET\",status=\"200\"} 2")
        );
        assert!(text.contains("db_query_duration_seconds_bucket{le=\"0.005\"} 1"));
        assert!(text.contains("db_query_duration_seconds_count 1"));
        assert!(text.contains("process_resident_memory_bytes"));
    }

    #[test]
    fn every_declared_label_set_is_exported_at_zero_before_its_first_event() {
        use crate::metrics::labels::*;
        let text = Metrics::default().render();
        for (name, label, values) in [
            ("ws_connections_total", "outcome", WS_OUTCOMES),
            ("ws_frames_total", "direction", WS_DIRECTIONS),
            ("rate_limited_total", "scope", RATE_LIMIT_SCOPES),
            ("llm_tokens_total", "direction", TOKEN_DIRECTIONS),
        ] {
            for v in values {
                let line = format!("{name}{{{label}=\"{v}\"}} 0\n");
                assert!(text.contains(&line), "missing {line}");
            }
        }
        for (route, methods) in crate::http::routes::ROUTES {
            for m in *methods {
                for s in HTTP_ZERO_STATUSES {
                    let line = format!(
                        "http_requests_total{{route=\"{route}\",method=\"{m}\",status=\"{s}\"}} 0\n"
                    );
                    assert!(text.contains(&line), "missing {line}");
                }
            }
        }
    }

    #[test]
    fn a_registered_label_set_counts_from_zero() {
        let f: Family<Counter> = Family::new(&["provider", "model", "outcome"]);
        f.register(&["openai", "gpt", "ok"]);
        assert_eq!(f.label_sets(), vec![vec!["openai", "gpt", "ok"]]);
        f.with(&["openai", "gpt", "ok"]).inc();
        f.with(&["openai", "gpt", "error"]).inc();
        assert_eq!(
            f.label_sets().len(),
            2,
            "open families still take new label sets"
        );
        assert_eq!(f.sum_where("outcome", "ok"), 1);
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "is not a declared label set")]
    fn a_closed_family_refuses_an_undeclared_label_set_in_debug_builds() {
        let f: Family<Counter> = Family::new_with(&["scope"], &["auth"]);
        f.with(&["auth"]).inc();
        f.with(&["typo"]).inc();
    }
}
