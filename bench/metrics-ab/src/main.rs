//! Same-minute micro-benchmark of the metrics hot path (docs/performance.md, "Metrics registry"):
//! the server's own registry (`old`, the primitives of `src/metrics/mod.rs`) against
//! `prometheus-client` and against `metrics` + `metrics-exporter-prometheus`, for what the
//! message path does per message: a plain counter `inc` (`messages_persisted_total`), a
//! labelled counter looked up and incremented
//! (`http_requests_total{route,method,status}` among every registered label set, and
//! `ws_frames_total{direction}`), and a histogram `observe` (`db_query_duration_seconds`).
//! Each case runs on 1 thread and on `--threads` threads at once (contention), alternating
//! the three in rounds so that all see the same machine. Run: `cargo run --release -p metrics-ab`.

mod old;
mod own;

use std::{
    hint::black_box,
    sync::Arc,
    time::{Duration, Instant},
};

use metrics::{Key, Label, Level, Metadata, Recorder};
use metrics_exporter_prometheus::PrometheusBuilder;
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, histogram::Histogram},
};

const BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

static META: Metadata<'static> = Metadata::new(module_path!(), Level::INFO, None);

fn http_key(route: &'static str, method: &'static str, status: &'static str) -> Key {
    Key::from_parts(
        "http_requests_total",
        vec![
            Label::from_static_parts("route", route),
            Label::from_static_parts("method", method),
            Label::from_static_parts("status", status),
        ],
    )
}

fn frames_key(direction: &'static str) -> Key {
    Key::from_parts(
        "ws_frames_total",
        vec![Label::from_static_parts("direction", direction)],
    )
}

/// `http_requests_total`'s labels, as the server would declare them for prometheus-client.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    route: &'static str,
    method: &'static str,
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Direction {
    direction: &'static str,
}

/// About the server's label sets exported from the start: 15 route/method pairs x 8 statuses.
fn label_sets() -> Vec<(&'static str, &'static str, &'static str)> {
    let routes: [(&str, &str); 15] = [
        ("/healthz", "GET"),
        ("/readyz", "GET"),
        ("/metrics", "GET"),
        ("/api/openapi.json", "GET"),
        ("/api/auth/register", "POST"),
        ("/api/auth/login", "POST"),
        ("/api/auth/logout", "POST"),
        ("/api/me", "GET"),
        ("/api/agents", "GET"),
        ("/api/threads", "GET"),
        ("/api/threads", "POST"),
        ("/api/threads/{id}", "GET"),
        ("/api/threads/{id}/members", "POST"),
        ("/api/threads/{id}/messages", "GET"),
        ("/api/threads/{id}/messages", "POST"),
    ];
    let statuses = ["200", "201", "204", "400", "401", "404", "429", "503"];
    let mut out = Vec::new();
    for (route, method) in routes {
        for status in statuses {
            out.push((route, method, status));
        }
    }
    out
}

/// Nanoseconds per operation of `op` run `n` times on each of `threads` threads at once.
fn time_per_op(threads: usize, n: u64, op: &(dyn Fn(u64) + Sync)) -> f64 {
    let started = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            let op = &op;
            s.spawn(move || {
                for i in 0..n {
                    op(i.wrapping_add(t as u64));
                }
            });
        }
    });
    started.elapsed().as_nanos() as f64 / (n as f64 * threads as f64) * threads as f64
}

/// The medians of `rounds` alternating measurements of each contender, in the order given.
fn abc(rounds: usize, threads: usize, n: u64, contenders: [&(dyn Fn(u64) + Sync); 4]) -> [f64; 4] {
    let mut times: [Vec<f64>; 4] = Default::default();
    for _ in 0..rounds {
        for (op, t) in contenders.iter().zip(times.iter_mut()) {
            t.push(time_per_op(threads, n, op));
        }
    }
    times.map(|mut t| median(&mut t))
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let threads: usize = std::env::args()
        .skip_while(|a| a != "--threads")
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    let n = 2_000_000;
    let rounds = 7;
    let sets = label_sets();
    // The label set the message path hits: POST of a message, 201.
    let hot = ("/api/threads/{id}/messages", "POST", "201");

    let old_counter = old::Counter::default();
    let new_counter: Counter = Counter::default();

    let old_http: old::Family<old::Counter> = old::Family::new();
    let new_http: Family<HttpLabels, Counter> = Family::default();
    for (route, method, status) in &sets {
        old_http.register(&[route, method, status]);
        let _ = new_http.get_or_create(&HttpLabels {
            route,
            method,
            status,
        });
    }
    let old_frames: old::Family<old::Counter> = old::Family::new();
    let new_frames: Family<Direction, Counter> = Family::default();
    for d in ["in", "out"] {
        old_frames.register(&[d]);
        let _ = new_frames.get_or_create(&Direction { direction: d });
    }

    // metrics-exporter-prometheus: a recorder of our own (not installed globally), every label
    // set registered up front, handles for the unlabelled metrics, a registry lookup per event
    // for the labelled ones (what `Family::with` would become).
    let mep = PrometheusBuilder::new()
        .set_buckets(&BUCKETS)
        .expect("buckets")
        .build_recorder();
    for (route, method, status) in &sets {
        let _ = mep.register_counter(&http_key(route, method, status), &META);
    }
    let mep_counter =
        mep.register_counter(&Key::from_static_name("messages_persisted_total"), &META);
    let mep_hist =
        mep.register_histogram(&Key::from_static_name("db_query_duration_seconds"), &META);
    // The exporter keeps raw histogram samples until a scrape renders them.
    let handle = mep.handle();

    // The server's own registry after the fixes (`own`): the same label sets.
    let own_counter = old::Counter::default();
    let own_http: own::Family<old::Counter> = own::Family::new();
    for (route, method, status) in &sets {
        own_http.register(&[route, method, status]);
    }
    let own_frames: own::Family<old::Counter> = own::Family::new();
    for d in ["in", "out"] {
        own_frames.register(&[d]);
    }
    let own_hist = own::Histogram::default();

    let old_hist = Arc::new(old::Histogram::default());
    let new_hist = Histogram::new(BUCKETS);
    // Latencies spread over the buckets like database operations (0.2 ms .. 26 ms).
    let sample = |i: u64| Duration::from_micros(200 + (i * 7919) % 26_000);

    println!(
        "metrics hot path, ns per operation (median of {rounds} alternating rounds of {n} ops per thread)"
    );
    println!(
        "| operation | threads | own, before | own, after | prometheus-client | \
         metrics-exporter-prometheus |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    let dir = |i: u64| if i.is_multiple_of(2) { "in" } else { "out" };
    for t in [1, threads] {
        let row = |name: &str, [before, after, pc, mep]: [f64; 4]| {
            println!("| {name} | {t} | {before:.1} | {after:.1} | {pc:.1} | {mep:.1} |");
        };
        row(
            "counter inc (`messages_persisted_total`)",
            abc(
                rounds,
                t,
                n,
                [
                    &|_| old_counter.inc(),
                    &|_| own_counter.inc(),
                    &|_| {
                        new_counter.inc();
                    },
                    &|_| mep_counter.increment(1),
                ],
            ),
        );
        row(
            "labelled counter: lookup + inc (`http_requests_total`, 120 label sets)",
            abc(
                rounds,
                t,
                n,
                [
                    &|_| old_http.with(&[hot.0, hot.1, hot.2]).inc(),
                    &|_| own_http.with(&[hot.0, hot.1, hot.2]).inc(),
                    &|_| {
                        new_http
                            .get_or_create(&HttpLabels {
                                route: hot.0,
                                method: hot.1,
                                status: hot.2,
                            })
                            .inc();
                    },
                    &|_| {
                        mep.register_counter(&http_key(hot.0, hot.1, hot.2), &META)
                            .increment(1)
                    },
                ],
            ),
        );
        row(
            "labelled counter: lookup + inc (`ws_frames_total{direction}`)",
            abc(
                rounds,
                t,
                n,
                [
                    &|i| old_frames.with(&[dir(i)]).inc(),
                    &|i| own_frames.with(&[dir(i)]).inc(),
                    &|i| {
                        new_frames
                            .get_or_create(&Direction { direction: dir(i) })
                            .inc();
                    },
                    &|i| {
                        mep.register_counter(&frames_key(dir(i)), &META)
                            .increment(1)
                    },
                ],
            ),
        );
        row(
            "histogram observe (`db_query_duration_seconds`)",
            abc(
                rounds,
                t,
                n,
                [
                    &|i| old_hist.observe(sample(i)),
                    &|i| own_hist.observe(sample(i)),
                    &|i| new_hist.observe(sample(i).as_secs_f64()),
                    &|i| mep_hist.record(sample(i).as_secs_f64()),
                ],
            ),
        );
    }
    let rendered = handle.render();
    println!(
        "\nmetrics-exporter-prometheus's text exposition (excerpt):\n{}",
        rendered
            .lines()
            .filter(|l| l.contains("messages_persisted") || l.contains("db_query_duration"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    // Keep every result alive, so that nothing above is optimised away.
    black_box((
        old_counter.get(),
        own_counter.get(),
        new_counter.get(),
        old_hist.count(),
        own_hist.count(),
    ));
    // What prometheus-client's exposition looks like for the same metrics (docs/performance.md
    // compares it with the server's own, line by line).
    let mut registry = prometheus_client::registry::Registry::default();
    registry.register(
        "messages_persisted_total",
        "Messages newly stored.",
        Counter::<u64>::default(),
    );
    let hist = Histogram::new(BUCKETS);
    hist.observe(0.003);
    registry.register(
        "db_query_duration_seconds",
        "Database operation latency.",
        hist,
    );
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).expect("encodes");
    println!("\nprometheus-client's text exposition of two of the same metrics:\n{text}");
}
