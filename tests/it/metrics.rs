//! Every metric the operations guide lists is exported, and moves when its event happens.
//! (Database, broker, rate-limit and LLM metrics are also asserted where those events are
//! produced: resilience.rs, scale.rs, web.rs, agents.rs.)

use std::time::Duration;

use serde_json::json;

use crate::support::{WsClient, spawn_app};

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
    "broker_up",
    "broker_reconnects_total",
    "broker_published_total",
    "broker_received_total",
    "broker_resync_total",
    "llm_requests_total",
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
