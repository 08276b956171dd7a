//! Thread lists stay live without opening the thread (issue 17): a member whose socket follows
//! no thread (or another one) learns a rename, being added, being removed and a deletion, once
//! each, on another instance than the one that made the change (Redis, sharded fan-out).

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{TestDb, WsClient};
use crate::threads_lifecycle::{delete, pair, patch};

/// The next frame about `thread` (acks and other threads' frames skipped), within 10 s.
async fn next_about(ws: &mut WsClient, thread: &str) -> Value {
    loop {
        let f = ws
            .recv_within(Duration::from_secs(10))
            .await
            .unwrap_or_else(|| panic!("a frame about {thread} within 10 s"));
        if f["thread"] == thread {
            return f;
        }
    }
}

/// Nothing more about `thread` arrives (no duplicate).
async fn nothing_more(ws: &mut WsClient, thread: &str) {
    while let Some(f) = ws.recv_within(Duration::from_millis(500)).await {
        assert!(f["thread"] != thread, "unexpected frame {f}");
    }
}

fn usernames(f: &Value) -> Vec<String> {
    f["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| m["username"].as_str().unwrap().to_string())
        .collect()
}

async fn lists_story(db: TestDb) {
    // Sharded fan-out (the default): instance B follows only the threads its sockets follow.
    let (a, b) = pair(&db, |_| {}).await;
    let alice = a.register("alice").await;
    let bob = b.register("bob").await;
    let carol = b.register("carol").await;
    let thread = a.create_thread(&alice, "Plans").await;
    let other = b.create_thread(&bob, "Bob's own").await;

    // Bob reads another thread; Carol has the page open on no thread; both on instance B.
    let mut wb = b.ws(&bob).await;
    wb.subscribe(&other, None).await;
    let mut wc = b.ws(&carol).await;

    // Bob is added on instance A: his list learns it (the notice crosses the broker, so it is
    // awaited here rather than racing the rename below).
    a.add_member(&alice, &thread, "bob").await;
    let f = next_about(&mut wb, &thread).await;
    assert_eq!(f["type"], "members_updated", "{f}");
    assert_eq!(usernames(&f), ["alice", "bob"]);
    nothing_more(&mut wb, &thread).await;

    // A rename on instance A reaches Bob's list.
    let r = patch(&a, &alice, &thread, json!({"title": "Weekend plans"})).await;
    assert_eq!(r.status(), 200);
    let f = next_about(&mut wb, &thread).await;
    assert_eq!(
        (f["type"].as_str(), f["title"].as_str()),
        (Some("thread_updated"), Some("Weekend plans"))
    );
    nothing_more(&mut wb, &thread).await;

    // Carol is added: her list learns it (and Bob's member list too).
    a.add_member(&alice, &thread, "carol").await;
    let f = next_about(&mut wc, &thread).await;
    assert_eq!(f["type"], "members_updated", "{f}");
    assert_eq!(usernames(&f), ["alice", "bob", "carol"]);
    nothing_more(&mut wc, &thread).await;
    let f = next_about(&mut wb, &thread).await;
    assert_eq!(f["type"], "members_updated", "{f}");
    nothing_more(&mut wb, &thread).await;

    // Bob is removed: his list drops the thread; Carol sees the new member list.
    let r = delete(
        &a,
        &alice,
        &format!("/api/threads/{thread}/members/{}", bob.id),
    )
    .await;
    assert_eq!(r.status(), 204);
    let f = next_about(&mut wb, &thread).await;
    assert_eq!(
        (f["type"].as_str(), f["reason"].as_str()),
        (Some("removed"), Some("removed"))
    );
    nothing_more(&mut wb, &thread).await;
    let f = next_about(&mut wc, &thread).await;
    assert_eq!(usernames(&f), ["alice", "carol"]);

    // The thread is deleted: Carol's list drops it.
    let r = delete(&a, &alice, &format!("/api/threads/{thread}")).await;
    assert_eq!(r.status(), 204);
    let f = next_about(&mut wc, &thread).await;
    assert_eq!(
        (f["type"].as_str(), f["reason"].as_str()),
        (Some("removed"), Some("deleted"))
    );
    nothing_more(&mut wc, &thread).await;
    // Bob, no longer a member, heard nothing of it.
    nothing_more(&mut wb, &thread).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thread_lists_follow_changes_of_threads_not_open_on_sqlite() {
    lists_story(TestDb::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thread_lists_follow_changes_of_threads_not_open_on_postgres() {
    lists_story(TestDb::postgres().await).await;
}
