//! The registry's unit tests: rendering, zero-exported label sets, lookups, histogram buckets.

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
fn histogram_buckets_are_inclusive_and_rendered_cumulative() {
    let h = Histogram::default();
    h.observe(Duration::from_millis(1)); // exactly on the first bound
    h.observe(Duration::from_millis(3));
    h.observe(Duration::from_secs(31)); // past the largest bound: only +Inf
    let mut o = Out(String::new());
    o.histogram("h", "help", &h);
    for line in [
        "h_bucket{le=\"0.001\"} 1\n",
        "h_bucket{le=\"0.0025\"} 1\n",
        "h_bucket{le=\"0.005\"} 2\n",
        "h_bucket{le=\"30\"} 2\n",
        "h_bucket{le=\"+Inf\"} 3\n",
        "h_sum 31.004\n",
        "h_count 3\n",
    ] {
        assert!(o.0.contains(line), "missing {line:?} in\n{}", o.0);
    }
    assert_eq!(h.count(), 3);
}

#[test]
fn a_family_finds_each_label_set_whatever_order_it_was_registered_in() {
    let f: Family<Counter> = Family::new(&["route", "method"]);
    for (route, method) in [
        ("/b", "GET"),
        ("/a", "POST"),
        ("/a", "GET"),
        ("/a/b", "GET"),
    ] {
        f.register(&[route, method]);
    }
    f.with(&["/a", "GET"]).inc();
    f.with(&["/a", "GET"]).inc();
    f.with(&["/a/b", "GET"]).inc();
    assert_eq!(
        f.label_sets(),
        vec![
            vec!["/a", "GET"],
            vec!["/a", "POST"],
            vec!["/a/b", "GET"],
            vec!["/b", "GET"]
        ],
        "each set once, in label order"
    );
    assert_eq!(f.with(&["/a", "GET"]).get(), 2);
    assert_eq!(f.with(&["/a", "POST"]).get(), 0);
    assert_eq!(f.sum_where("route", "/a/b"), 1);
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
