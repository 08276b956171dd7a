//! Per-user memory across instances (issue #19, docs/memories.md): a fact captured from a
//! message stored through one instance reaches its owner's socket on another instance as a
//! `memory` frame (the broker's shared channel), and nobody else's; an edit made on the second
//! instance is announced back on the first.

use reqwest::Method;
use serde_json::json;

use crate::support::{TestDb, accounts::call, cluster::instances_on, documents::next_frame};

const REDIS: &str = "redis://127.0.0.1:6379";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_captured_fact_reaches_its_owners_sockets_on_every_instance_and_only_theirs() {
    let db = TestDb::postgres().await;
    let apps = instances_on(&db, 2, REDIS, |_| {}).await;
    let alice = apps[0].register("alice").await;
    let bob = apps[0].register("bob").await;
    let (status, _) = call(
        &apps[0],
        Method::PUT,
        "/api/memories/settings",
        &alice.token,
        Some(json!({"enabled": true})),
    )
    .await;
    assert_eq!(status, 200);
    let thread = apps[0].create_thread(&alice, "across").await;
    apps[0].add_member(&alice, &thread, "bob").await;
    // Alice's socket on the other instance follows no thread; Bob's follows this one.
    let mut on_b = apps[1].ws(&alice).await;
    let mut on_a = apps[0].ws(&alice).await;
    let mut bob_ws = apps[1].ws(&bob).await;
    bob_ws.subscribe(&thread, None).await;
    let r = apps[0]
        .post(
            &format!("/api/threads/{thread}/messages"),
            Some(&alice.token),
            json!({"client_id": "c1", "body": "Please remember that the spare key is under the blue pot."}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let frame = next_frame(&mut on_b, "memory", |_| true).await;
    assert_eq!(frame["change"], "added");
    assert_eq!(
        frame["memory"]["text"],
        "The spare key is under the blue pot"
    );
    let id = frame["memory"]["id"].as_str().unwrap().to_string();
    // Edited through the other instance: the first instance's socket hears it.
    let (status, v) = call(
        &apps[1],
        Method::PATCH,
        &format!("/api/memories/{id}"),
        &alice.token,
        Some(json!({"text": "The spare key is under the red pot"})),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let frame = next_frame(&mut on_a, "memory", |f| f["change"] == "updated").await;
    assert_eq!(
        frame["memory"]["text"],
        "The spare key is under the red pot"
    );
    // Bob saw the message, and no memory frame.
    let mut seen = Vec::new();
    while let Some(v) = bob_ws
        .recv_within(std::time::Duration::from_millis(500))
        .await
    {
        seen.push(v["type"].as_str().unwrap_or("").to_string());
    }
    assert!(seen.contains(&"message".to_string()), "{seen:?}");
    assert!(!seen.contains(&"memory".to_string()), "{seen:?}");
}
