//! Health, readiness, restarts and the SIGTERM drain.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{TestDb, spawn_app, spawn_on, start, test_settings};

#[tokio::test]
async fn health_and_readiness_follow_the_contract() {
    let app = spawn_app().await;
    let h = app.get("/healthz", None).await;
    assert_eq!(h.status(), 200);
    assert_eq!(h.json::<Value>().await.unwrap(), json!({"status": "ok"}));
    let r = app.get("/readyz", None).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"status": "ready", "db": "up", "broker": "local"})
    );
    let m = app.get("/metrics", None).await.text().await.unwrap();
    assert!(m.contains("db_up 1"));
    let nf = app.get("/api/nope", None).await;
    assert_eq!(nf.status(), 404);
    assert_eq!(
        nf.json::<Value>().await.unwrap()["error"]["code"],
        "not_found"
    );
    let wrong = app
        .http
        .delete(app.url("/api/threads"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 405);
    assert_eq!(
        wrong.json::<Value>().await.unwrap()["error"]["code"],
        "method_not_allowed"
    );
}

#[tokio::test]
async fn sigterm_drains_every_websocket_with_1012_and_readyz_says_draining() {
    let mut app = spawn_app().await;
    let alice = app.register("alice").await;
    let thread = app.create_thread(&alice, "drain").await;
    let mut clients = Vec::new();
    for _ in 0..5 {
        let mut ws = app.ws(&alice).await;
        ws.subscribe(&thread, None).await;
        clients.push(ws);
    }
    let started = std::time::Instant::now();
    app.trigger_shutdown();
    for ws in clients.iter_mut() {
        assert_eq!(ws.close_code().await, Some(1012));
    }
    app.wait_stopped().await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "drained within the deadline"
    );
}

#[tokio::test]
async fn data_and_tokens_survive_a_restart() {
    let mut app = spawn_app().await;
    let alice = app.register("alice").await;
    let thread = app.create_thread(&alice, "durable").await;
    let r = app
        .post(
            &format!("/api/threads/{thread}/messages"),
            Some(&alice.token),
            json!({"client_id": "k", "body": "kept"}),
        )
        .await;
    assert_eq!(r.status(), 201);
    app.stop().await;
    let db = app.take_db();
    let url = db.url();
    let app = start(test_settings(&url), db, true).await;
    // The generated signing key was kept in the database: the old token still works.
    assert_eq!(app.get("/api/me", Some(&alice.token)).await.status(), 200);
    let msgs = app.messages(&alice, &thread, "").await;
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0]["body"], "kept");
}

#[tokio::test]
async fn the_storage_story_also_runs_over_http_on_postgres() {
    let app = spawn_on(TestDb::postgres().await, |_| {}).await;
    let alice = app.register("alice").await;
    let thread = app.create_thread(&alice, "pg").await;
    let mut ws = app.ws(&alice).await;
    ws.subscribe(&thread, None).await;
    ws.send_message(&thread, "p1", "on postgres").await;
    assert_eq!(ws.recv_type("ack").await["seq"], 1);
    assert_eq!(
        app.messages(&alice, &thread, "").await[0]["body"],
        "on postgres"
    );
}
