//! Unit tests of the verifier's parsers and arithmetic.

use super::{web::immutable_for_a_year, *};

#[test]
fn page_references_finds_scripts_styles_and_icons() {
    let html = r#"<link rel="icon" href="/favicon.svg" type="image/svg+xml" />
        <script type="module" crossorigin src="/assets/index-1.js"></script>
        <link rel=stylesheet crossorigin href='/assets/index-2.css'>
        <link rel="preconnect" href="https://x">"#;
    assert_eq!(
        page_references(html),
        vec![
            PageRef {
                kind: RefKind::Icon,
                href: "/favicon.svg".into()
            },
            PageRef {
                kind: RefKind::Script,
                href: "/assets/index-1.js".into()
            },
            PageRef {
                kind: RefKind::Stylesheet,
                href: "/assets/index-2.css".into()
            },
        ]
    );
}

#[test]
fn metrics_are_summed_over_labels() {
    let text = "# TYPE x counter\nrate_limited_total{scope=\"auth\"} 2\nrate_limited_total{scope=\"send\"} 3\n\
                http_requests_total{route=\"/a\",method=\"GET\",status=\"429\"} 4\n\
                http_requests_total{route=\"/a\",method=\"GET\",status=\"200\"} 9\n\
                db_up 1\ndb_reconnect_attempts_total 2\ndb_reconnect_success_total 2\n";
    let s = parse_metrics(text).unwrap();
    assert_eq!(s.rate_limited, 5.0);
    assert_eq!(s.http_429, 4.0);
    assert_eq!(s.db_up, 1.0);
    assert!(parse_metrics("<html></html>").is_err());
}

#[test]
fn percentiles_use_the_nearest_rank() {
    let v: Vec<f64> = (1..=100).map(f64::from).collect();
    assert_eq!(percentile(&v, 0.5), Some(50.0));
    assert_eq!(percentile(&v, 0.99), Some(99.0));
    assert_eq!(percentile(&[], 0.5), None);
}

#[test]
fn immutable_needs_a_year_of_max_age() {
    assert!(immutable_for_a_year("public, max-age=31536000, immutable"));
    assert!(!immutable_for_a_year("public, max-age=3600, immutable"));
    assert!(!immutable_for_a_year("public, max-age=31536000"));
}
