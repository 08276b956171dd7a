//! Every metric the operations guide lists is exported, and the guide's table and `/metrics`
//! list the same metrics with the same types; every labelled counter is exported at 0 before
//! its first event; every documented meaning has a test that produces the event and reads the
//! counter (`MEANINGS`; the tests are in metric_meanings*.rs and where the event is produced).

use std::{collections::BTreeMap, time::Duration};

use serde_json::json;

use crate::support::{WsClient, scrape::Scrape, spawn_app, spawn_app_with};

const LISTED: &[&str] = &[
    "http_requests_total",
    "http_request_duration_seconds",
    "ws_connections_total",
    "ws_active_connections",
    "ws_frames_total",
    "rate_limited_total",
    "db_up",
    "db_reconnect_attempts_total",
    "db_reconnect_success_total",
    "db_connection_failures_total",
    "db_pending_writes",
    "db_query_duration_seconds",
    "db_connect_attempts_total",
    "messages_persisted_total",
    "overload_rejections_total",
    "ws_slow_consumer_disconnects_total",
    "broker_up",
    "broker_reconnects_total",
    "broker_published_total",
    "broker_received_total",
    "broker_resync_total",
    "llm_requests_total",
    "llm_errors_total",
    "llm_first_token_seconds",
    "llm_stream_seconds",
    "llm_tokens_total",
    "emergence_build_info",
    "process_resident_memory_bytes",
    "process_open_fds",
    "process_cpu_seconds_total",
    "process_start_time_seconds",
];

#[tokio::test]
async fn every_listed_metric_is_exported_with_help_and_type() {
    let app = spawn_app().await;
    let text = app.get("/metrics", None).await.text().await.unwrap();
    for name in LISTED {
        assert!(text.contains(&format!("# TYPE {name} ")), "{name} missing");
        assert!(
            text.contains(&format!("# HELP {name} ")),
            "{name} has no help"
        );
    }
    // The operations guide documents each of them.
    let guide = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/operations.md"))
        .unwrap();
    for name in LISTED {
        assert!(
            guide.contains(name),
            "docs/operations.md does not list {name}"
        );
    }
}

#[tokio::test]
async fn http_and_websocket_metrics_move_with_their_events() {
    let app = spawn_app().await;
    let alice = app.register("alice").await;
    let thread = app.create_thread(&alice, "metrics").await;
    let route = format!("/api/threads/{thread}");
    assert_eq!(app.get(&route, Some(&alice.token)).await.status(), 200);
    let text = app.get("/metrics", None).await.text().await.unwrap();
    assert!(
        text.contains(
            r#"http_requests_total{route="/api/threads/{id}",method="GET",status="200"} 1"#
        ),
        "route templates, never raw paths"
    );
    assert!(!text.contains(&thread), "no raw ids in labels");
    assert!(
        app.metric(
            r#"http_request_duration_seconds_count{route="/api/threads/{id}",method="GET"}"#
        )
        .await
            >= 1.0
    );

    let before_active = app.metric("ws_active_connections").await;
    let mut ws = app.ws(&alice).await;
    assert_eq!(
        app.metric("ws_active_connections").await,
        before_active + 1.0
    );
    // A connection is counted once, by how it ended: not while it is open.
    assert_eq!(app.metric("ws_connections_total").await, 0.0);
    ws.send(json!({"type": "ping"})).await;
    ws.recv_type("pong").await;
    assert!(app.metric(r#"ws_frames_total{direction="in"}"#).await >= 1.0);
    assert!(app.metric(r#"ws_frames_total{direction="out"}"#).await >= 2.0);
    drop(ws);
    for _ in 0..100 {
        if app.metric("ws_active_connections").await == before_active {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(app.metric("ws_active_connections").await, before_active);
    // Dropped without a closing handshake: one connection, ended in error.
    assert_eq!(
        app.metric(r#"ws_connections_total{outcome="error"}"#).await,
        1.0
    );
    assert_eq!(app.metric("ws_connections_total").await, 1.0);

    let mut bad = WsClient::connect(&format!("{}?token=nope", app.ws_url()))
        .await
        .unwrap();
    assert_eq!(bad.close_code().await, Some(4401));
    assert!(
        app.metric(r#"ws_connections_total{outcome="rejected"}"#)
            .await
            >= 1.0
    );

    let r = app
        .post(
            &format!("/api/threads/{thread}/messages"),
            Some(&alice.token),
            json!({"client_id": "m", "body": "counted"}),
        )
        .await;
    assert_eq!(r.status(), 201);
    assert!(app.metric("messages_persisted_total").await >= 1.0);
    assert!(app.metric("db_query_duration_seconds_count").await >= 1.0);
    assert_eq!(app.metric("db_up").await, 1.0);
    assert!(app.metric("process_resident_memory_bytes").await > 1e6);
    assert!(app.metric("process_open_fds").await > 3.0);
}

/// The metrics table of docs/operations.md: name -> type (`counter`, `gauge`, `histogram`).
fn documented_metrics() -> BTreeMap<String, String> {
    let guide = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/operations.md"))
        .unwrap();
    let table = guide
        .split("| name | type | labels | meaning |")
        .nth(1)
        .expect("the metrics table");
    table
        .lines()
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .map(|row| {
            let cells: Vec<&str> = row.split('|').map(str::trim).collect();
            let name = cells[1].trim_matches('`').to_string();
            let kind = cells[2].split_whitespace().next().unwrap().to_string();
            (name, kind)
        })
        .collect()
}

/// `# TYPE` lines of a scrape: name -> type.
fn exported_metrics(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| {
            let (name, kind) = l.split_once(' ').unwrap();
            (name.to_string(), kind.to_string())
        })
        .collect()
}

#[tokio::test]
async fn the_operations_table_lists_exactly_the_exported_metrics_with_their_types() {
    let app = spawn_app().await;
    let text = app.get("/metrics", None).await.text().await.unwrap();
    let exported = exported_metrics(&text);
    let documented = documented_metrics();
    assert_eq!(
        exported, documented,
        "docs/operations.md#metrics and /metrics differ"
    );
    for name in LISTED {
        assert!(documented.contains_key(*name), "{name}");
    }
}

/// Which test asserts each documented metric's meaning (by producing its event and reading the
/// counter): `file::function` under tests/it/.
const MEANINGS: &[(&str, &str)] = &[
    (
        "http_requests_total",
        "metric_meanings::http_requests_count_each_answer_by_route_template_method_and_status",
    ),
    (
        "http_request_duration_seconds",
        "metric_meanings::http_requests_count_each_answer_by_route_template_method_and_status",
    ),
    (
        "ws_connections_total",
        "metric_meanings::websocket_outcomes_active_connections_and_frames_count_as_documented",
    ),
    (
        "ws_active_connections",
        "metric_meanings::websocket_outcomes_active_connections_and_frames_count_as_documented",
    ),
    (
        "ws_frames_total",
        "metric_meanings::websocket_outcomes_active_connections_and_frames_count_as_documented",
    ),
    (
        "rate_limited_total",
        "metric_meanings::each_rate_limit_scope_counts_one_per_refusal_and_nothing_else",
    ),
    (
        "overload_rejections_total",
        "metric_meanings::a_saturated_instance_counts_each_503_as_an_overload_rejection",
    ),
    (
        "ws_slow_consumer_disconnects_total",
        "chat::a_slow_consumer_is_disconnected_without_slowing_the_others",
    ),
    (
        "db_up",
        "metric_meanings_db::an_outage_counts_each_attempt_failure_and_reconnection_as_the_logs_tell_it",
    ),
    (
        "db_up",
        "metric_meanings_db::start_up_attempts_count_and_db_up_stays_0_until_the_first_connection",
    ),
    (
        "db_connect_attempts_total",
        "metric_meanings_db::an_outage_counts_each_attempt_failure_and_reconnection_as_the_logs_tell_it",
    ),
    (
        "db_connection_failures_total",
        "metric_meanings_db::an_outage_counts_each_attempt_failure_and_reconnection_as_the_logs_tell_it",
    ),
    (
        "db_reconnect_attempts_total",
        "metric_meanings_db::an_outage_counts_each_attempt_failure_and_reconnection_as_the_logs_tell_it",
    ),
    (
        "db_reconnect_success_total",
        "metric_meanings_db::an_outage_counts_each_attempt_failure_and_reconnection_as_the_logs_tell_it",
    ),
    (
        "db_pending_writes",
        "metric_meanings_db::an_outage_counts_each_attempt_failure_and_reconnection_as_the_logs_tell_it",
    ),
    (
        "messages_persisted_total",
        "metric_meanings_db::an_outage_counts_each_attempt_failure_and_reconnection_as_the_logs_tell_it",
    ),
    (
        "db_query_duration_seconds",
        "metric_meanings_db::start_up_attempts_count_and_db_up_stays_0_until_the_first_connection",
    ),
    (
        "broker_up",
        "metric_meanings_db::broker_counters_follow_one_message_and_one_redis_cut",
    ),
    (
        "broker_reconnects_total",
        "metric_meanings_db::broker_counters_follow_one_message_and_one_redis_cut",
    ),
    (
        "broker_published_total",
        "metric_meanings_db::broker_counters_follow_one_message_and_one_redis_cut",
    ),
    (
        "broker_received_total",
        "metric_meanings_db::broker_counters_follow_one_message_and_one_redis_cut",
    ),
    (
        "broker_resync_total",
        "metric_meanings_db::broker_counters_follow_one_message_and_one_redis_cut",
    ),
    (
        "llm_requests_total",
        "metric_meanings::each_llm_outcome_tokens_and_latencies_count_as_documented",
    ),
    (
        "llm_errors_total",
        "metric_meanings::each_failed_provider_try_counts_once_by_its_error_class",
    ),
    (
        "llm_first_token_seconds",
        "metric_meanings::each_llm_outcome_tokens_and_latencies_count_as_documented",
    ),
    (
        "llm_stream_seconds",
        "metric_meanings::each_llm_outcome_tokens_and_latencies_count_as_documented",
    ),
    (
        "llm_tokens_total",
        "metric_meanings::each_llm_outcome_tokens_and_latencies_count_as_documented",
    ),
    (
        "llm_cost_total",
        "usage::usage_equals_stored_tokens_and_cost_is_tokens_times_price_on_sqlite",
    ),
    (
        "documents_indexed_total",
        "documents::the_offline_agent_quotes_page_3_with_a_citation_on_sqlite",
    ),
    (
        "document_retrieval_seconds",
        "documents::the_offline_agent_quotes_page_3_with_a_citation_on_sqlite",
    ),
    (
        "embedding_requests_total",
        "retrieval::a_failing_embeddings_api_leaves_documents_indexed_and_retrieval_on_full_text",
    ),
    (
        "embedding_request_seconds",
        "retrieval::passages_are_embedded_at_indexing_through_ollama_and_never_found_from_another_thread",
    ),
    (
        "document_embedding_failures_total",
        "retrieval::a_failing_embeddings_api_leaves_documents_indexed_and_retrieval_on_full_text",
    ),
    (
        "document_chunks_embedded_total",
        "retrieval::passages_are_embedded_at_indexing_through_ollama_and_never_found_from_another_thread",
    ),
    (
        "document_extraction_failures_total",
        "documents_hostile::malicious_files_fail_with_a_reason_while_the_server_stays_up_and_small",
    ),
    (
        "emergence_build_info",
        "metric_meanings::process_and_build_metrics_match_what_the_kernel_reports",
    ),
    (
        "process_resident_memory_bytes",
        "metric_meanings::process_and_build_metrics_match_what_the_kernel_reports",
    ),
    (
        "process_open_fds",
        "metric_meanings::process_and_build_metrics_match_what_the_kernel_reports",
    ),
    (
        "process_cpu_seconds_total",
        "metric_meanings::process_and_build_metrics_match_what_the_kernel_reports",
    ),
    (
        "process_start_time_seconds",
        "metric_meanings::process_and_build_metrics_match_what_the_kernel_reports",
    ),
];

#[test]
fn every_documented_metric_has_a_test_of_its_meaning() {
    for (name, _) in documented_metrics() {
        assert!(
            MEANINGS.iter().any(|(m, _)| *m == name),
            "no test asserts the meaning of {name}: add one and list it in MEANINGS"
        );
    }
    for (metric, test) in MEANINGS {
        let (file, function) = test.split_once("::").unwrap();
        let source =
            std::fs::read_to_string(format!("{}/tests/it/{file}.rs", env!("CARGO_MANIFEST_DIR")))
                .unwrap();
        assert!(
            source.contains(&format!("async fn {function}()")),
            "{metric}: {test} does not exist"
        );
        assert!(
            source.contains(metric),
            "{metric}: {test}'s file never reads it"
        );
    }
}

#[tokio::test]
async fn every_labelled_counter_is_exported_at_zero_before_its_first_event() {
    use emergence::metrics::labels::*;
    let (_fake, url) = crate::support::fake_llm::FakeLlm::start().await;
    let mut gpt = crate::agents::agent("gpt", "openai", "ok");
    gpt.fallback_model = Some("fail-500".into());
    let app = spawn_app_with(move |s| {
        s.agents = vec![gpt, crate::agents::agent("offline", "local", "offline")];
        crate::agents::use_fake_providers(s, &url);
    })
    .await;
    let first = Scrape::of(&app).await;
    let mut expected: Vec<String> = Vec::new();
    for (name, label, values) in [
        ("ws_connections_total", "outcome", WS_OUTCOMES),
        ("ws_frames_total", "direction", WS_DIRECTIONS),
        ("rate_limited_total", "scope", RATE_LIMIT_SCOPES),
        ("llm_tokens_total", "direction", TOKEN_DIRECTIONS),
    ] {
        expected.extend(values.iter().map(|v| format!("{name}{{{label}=\"{v}\"}}")));
    }
    for (route, methods) in emergence::http::routes::ROUTES {
        for m in *methods {
            for status in HTTP_ZERO_STATUSES {
                expected.push(format!(
                    "http_requests_total{{route=\"{route}\",method=\"{m}\",status=\"{status}\"}}"
                ));
            }
        }
    }
    for (provider, model) in [
        ("openai", "ok"),
        ("openai", "fail-500"),
        ("local", "offline"),
    ] {
        for outcome in LLM_OUTCOMES {
            expected.push(format!(
                "llm_requests_total{{provider=\"{provider}\",model=\"{model}\",outcome=\"{outcome}\"}}"
            ));
        }
    }
    for key in &expected {
        assert_eq!(first.0.get(key), Some(&0.0), "{key} at 0 from the start");
    }
    // No labelled counter has counted anything yet: the first scrape is the first request.
    let text = app.get("/metrics", None).await.text().await.unwrap();
    let counters: Vec<String> = exported_metrics(&text)
        .into_iter()
        .filter(|(_, kind)| kind == "counter")
        .map(|(name, _)| name)
        .collect();
    for (key, value) in &first.0 {
        if let Some((name, _)) = key.split_once('{')
            && counters.iter().any(|c| c == name)
        {
            assert_eq!(*value, 0.0, "{key}");
        }
    }
}

#[tokio::test]
async fn the_route_table_lists_every_method_the_router_answers_and_only_those() {
    let app = spawn_app().await;
    for (route, methods) in emergence::http::routes::ROUTES {
        let path = route
            .replace("{*path}", "no-such-file.js")
            .replace("{id}", "no-such-id");
        for method in ["GET", "POST", "PUT", "PATCH", "DELETE"] {
            let r = app
                .http
                .request(method.parse().unwrap(), app.url(&path))
                .send()
                .await
                .unwrap();
            let routed = r.status() != 405;
            assert_eq!(
                routed,
                methods.contains(&method),
                "{method} {route}: {} (src/http/routes.rs must list exactly the router's methods)",
                r.status()
            );
        }
    }
}
