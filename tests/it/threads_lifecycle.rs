//! Threads managed and taken away (issue 17): rename, agents, ownership, per-member archive and
//! pin, members, leave, delete and purge — every change live to two users on two instances
//! (Redis), on SQLite and on PostgreSQL.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{
    TestApp, TestDb, TestUser, WsClient, cluster::instances_on, start, test_settings,
};

/// Two in-process instances on one database and one Redis channel.
pub async fn pair(db: &TestDb, configure: impl Fn(&mut emergence::Settings)) -> (TestApp, TestApp) {
    let mut apps = instances_on(db, 2, "redis://127.0.0.1:6379", configure).await;
    let b = apps.pop().unwrap();
    (apps.pop().unwrap(), b)
}

pub async fn patch(app: &TestApp, user: &TestUser, thread: &str, body: Value) -> reqwest::Response {
    app.http
        .patch(app.url(&format!("/api/threads/{thread}")))
        .bearer_auth(&user.token)
        .json(&body)
        .send()
        .await
        .unwrap()
}

pub async fn delete(app: &TestApp, user: &TestUser, path: &str) -> reqwest::Response {
    app.http
        .delete(app.url(path))
        .bearer_auth(&user.token)
        .send()
        .await
        .unwrap()
}

/// The next frame about `thread` that is not an ack.
async fn next_about(ws: &mut WsClient, thread: &str) -> Value {
    loop {
        let f = ws
            .recv_within(Duration::from_secs(5))
            .await
            .expect("a frame within 5 s");
        if f["type"] != "ack" && (f["thread"] == thread || f["thread_id"] == thread) {
            return f;
        }
    }
}

fn summary(f: &Value) -> String {
    match f["type"].as_str().unwrap() {
        "message" => format!("message {}", f["seq"]),
        "thread_updated" => format!("thread_updated {}", f["title"].as_str().unwrap()),
        "members_updated" => {
            let names: Vec<String> = f["members"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| {
                    format!(
                        "{}:{}",
                        m["username"].as_str().unwrap(),
                        m["role"].as_str().unwrap()
                    )
                })
                .collect();
            format!("members_updated {}", names.join(","))
        }
        "removed" => format!("removed {}", f["reason"].as_str().unwrap()),
        other => other.to_string(),
    }
}

async fn expect_frames(ws: &mut WsClient, thread: &str, expected: &[&str]) {
    let mut got = Vec::new();
    for _ in expected {
        got.push(summary(&next_about(ws, thread).await));
    }
    assert_eq!(got, expected, "in order, exactly once");
    // Nothing more (no duplicate) arrives for the thread.
    while let Some(f) = ws.recv_within(Duration::from_millis(300)).await {
        assert!(
            f["type"] == "ack" || f["thread"] != thread,
            "unexpected frame {f}"
        );
    }
}

async fn lifecycle_story(db: TestDb) {
    let (a, b) = pair(&db, |_| {}).await;
    let alice = a.register("alice").await;
    let bob = b.register("bob").await;
    let carol = a.register("carol").await;
    let thread = a.create_thread(&alice, "Plans").await;
    a.add_member(&alice, &thread, "bob").await;
    let mut wa = a.ws(&alice).await;
    let mut wb = b.ws(&bob).await;
    wa.subscribe(&thread, None).await;
    wb.subscribe(&thread, None).await;

    // A message, a rename, a message: the same order for everyone, once each.
    wa.send_message(&thread, "m1", "first").await;
    let _ = wb.recv_type("message").await;
    let r = patch(
        &a,
        &alice,
        &thread,
        json!({"title": "  Weekend plans ", "agents": []}),
    )
    .await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        (
            v["title"].as_str(),
            v["archived"].as_bool(),
            v["pinned"].as_bool()
        ),
        (Some("Weekend plans"), Some(false), Some(false))
    );
    wa.send_message(&thread, "m2", "second").await;
    expect_frames(
        &mut wb,
        &thread,
        &["thread_updated Weekend plans", "message 2"],
    )
    .await;
    expect_frames(
        &mut wa,
        &thread,
        &["message 1", "thread_updated Weekend plans", "message 2"],
    )
    .await;

    // Adding a member: the new list, live, on both instances.
    a.add_member(&alice, &thread, "carol").await;
    let members = "members_updated alice:owner,bob:member,carol:member";
    expect_frames(&mut wa, &thread, &[members]).await;
    expect_frames(&mut wb, &thread, &[members]).await;
    let list: Value = b
        .get(&format!("/api/threads/{thread}/members"), Some(&bob.token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["members"].as_array().unwrap().len(), 3);
    assert_eq!(list["members"][0]["user_id"], alice.id.as_str());
    assert_eq!(list["members"][0]["role"], "owner");

    // Only the owner renames; members get 403, strangers the 404 of a missing thread.
    assert_eq!(
        patch(&b, &bob, &thread, json!({"title": "Mine"}))
            .await
            .status(),
        403
    );
    let dave = b.register("dave").await;
    let stranger = patch(&b, &dave, &thread, json!({"archived": true})).await;
    assert_eq!(stranger.status(), 404);
    let missing = patch(&b, &dave, "0190a000-0000-7000-8000-000000000000", json!({})).await;
    assert_eq!(missing.status(), 404);
    assert_eq!(
        stranger.json::<Value>().await.unwrap(),
        missing.json::<Value>().await.unwrap()
    );

    // Bad input is a 422 naming the field.
    for (body, field) in [
        (json!({"title": ""}), "title"),
        (json!({"archived": "yes"}), "archived"),
        (json!({"agents": ["no-such-agent"]}), "agents"),
        (json!({"owner_id": dave.id}), "owner_id"),
    ] {
        let r = patch(&a, &alice, &thread, body.clone()).await;
        assert_eq!(r.status(), 422, "{body}");
        let e: Value = r.json().await.unwrap();
        assert_eq!(e["error"]["code"], "validation");
        assert!(e["error"]["fields"][field].is_string(), "{e}");
    }

    // Ownership moves to bob: roles change live.
    let r = patch(&a, &alice, &thread, json!({"owner_id": bob.id})).await;
    assert_eq!(r.status(), 200);
    let expected = [
        "thread_updated Weekend plans",
        "members_updated bob:owner,alice:member,carol:member",
    ];
    expect_frames(&mut wa, &thread, &expected).await;
    expect_frames(&mut wb, &thread, &expected).await;
    assert_eq!(
        patch(&a, &alice, &thread, json!({"title": "x"}))
            .await
            .status(),
        403
    );

    // Bob removes carol, who is subscribed on the other instance: her subscription ends there
    // within 5 s, and the thread is then a 404 for her.
    let mut wc = a.ws(&carol).await;
    wc.subscribe(&thread, None).await;
    let r = delete(
        &b,
        &bob,
        &format!("/api/threads/{thread}/members/{}", carol.id),
    )
    .await;
    assert_eq!(r.status(), 204);
    let gone = wc.recv_type("removed").await;
    assert_eq!(
        (gone["thread"].as_str(), gone["reason"].as_str()),
        (Some(thread.as_str()), Some("removed"))
    );
    assert_eq!(
        a.get(&format!("/api/threads/{thread}"), Some(&carol.token))
            .await
            .status(),
        404
    );
    wc.send(json!({"type": "subscribe", "thread": thread}))
        .await;
    assert_eq!(wc.recv_type("error").await["code"], "not_found");
    expect_frames(
        &mut wa,
        &thread,
        &["members_updated bob:owner,alice:member"],
    )
    .await;
    expect_frames(
        &mut wb,
        &thread,
        &["members_updated bob:owner,alice:member"],
    )
    .await;
    // Nothing said in the thread reaches her any more.
    wb.send_message(&thread, "m3", "after carol left").await;
    assert!(
        wc.recv_within(Duration::from_millis(500))
            .await
            .is_none_or(|f| f["type"] != "message"),
        "a removed member gets no message"
    );
    expect_frames(&mut wa, &thread, &["message 3"]).await;
    let _ = next_about(&mut wb, &thread).await;

    // A member may not remove others, the owner may not leave, alice leaves.
    let r = delete(
        &a,
        &alice,
        &format!("/api/threads/{thread}/members/{}", bob.id),
    )
    .await;
    assert_eq!(r.status(), 403);
    let r = delete(
        &b,
        &bob,
        &format!("/api/threads/{thread}/members/{}", bob.id),
    )
    .await;
    assert_eq!(r.status(), 409);
    let r = delete(
        &a,
        &alice,
        &format!("/api/threads/{thread}/members/{}", alice.id),
    )
    .await;
    assert_eq!(r.status(), 204);
    assert_eq!(wa.recv_type("removed").await["reason"], "left");
    assert_eq!(
        b.get(&format!("/api/threads/{thread}"), Some(&alice.token))
            .await
            .status(),
        404
    );
    expect_frames(&mut wb, &thread, &["members_updated bob:owner"]).await;

    // Deleting: a member (re-added) cannot; the owner can; then a 404 for everyone, everywhere,
    // exactly like a thread that never existed, and open subscriptions end.
    b.add_member(&bob, &thread, "alice").await;
    let mut wa = a.ws(&alice).await;
    wa.subscribe(&thread, None).await;
    assert_eq!(
        delete(&a, &alice, &format!("/api/threads/{thread}"))
            .await
            .status(),
        403
    );
    assert_eq!(
        delete(&b, &bob, &format!("/api/threads/{thread}"))
            .await
            .status(),
        204
    );
    assert_eq!(wa.recv_type("removed").await["reason"], "deleted");
    assert_eq!(wb.recv_type("removed").await["reason"], "deleted");
    let never = "0190a000-0000-7000-8000-000000000001";
    for (app, user) in [(&a, &alice), (&b, &bob), (&a, &bob), (&b, &alice)] {
        for suffix in ["", "/messages", "/members"] {
            let r = app
                .get(&format!("/api/threads/{thread}{suffix}"), Some(&user.token))
                .await;
            let n = app
                .get(&format!("/api/threads/{never}{suffix}"), Some(&user.token))
                .await;
            assert_eq!(
                (r.status().as_u16(), n.status().as_u16()),
                (404, 404),
                "{suffix}"
            );
            assert_eq!(
                r.json::<Value>().await.unwrap(),
                n.json::<Value>().await.unwrap()
            );
        }
        let list: Value = app
            .get("/api/threads", Some(&user.token))
            .await
            .json()
            .await
            .unwrap();
        assert!(
            list["threads"]
                .as_array()
                .unwrap()
                .iter()
                .all(|t| t["id"] != thread.as_str())
        );
    }
    let r = b
        .post(
            &format!("/api/threads/{thread}/messages"),
            Some(&bob.token),
            json!({"client_id": "late", "body": "x"}),
        )
        .await;
    assert_eq!(r.status(), 404);
    assert_eq!(
        delete(&b, &bob, &format!("/api/threads/{thread}"))
            .await
            .status(),
        404
    );
    wb.send(json!({"type": "subscribe", "thread": thread}))
        .await;
    assert_eq!(wb.recv_type("error").await["code"], "not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_changes_reach_two_users_on_two_instances_on_sqlite() {
    lifecycle_story(TestDb::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_changes_reach_two_users_on_two_instances_on_postgres() {
    lifecycle_story(TestDb::postgres().await).await;
}

async fn listed(app: &TestApp, user: &TestUser, query: &str) -> Vec<(String, bool, bool)> {
    let v: Value = app
        .get(&format!("/api/threads{query}"), Some(&user.token))
        .await
        .json()
        .await
        .unwrap();
    v["threads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["title"].as_str().unwrap().to_string(),
                t["archived"].as_bool().unwrap(),
                t["pinned"].as_bool().unwrap(),
            )
        })
        .collect()
}

async fn archive_and_pin_story(db: TestDb) {
    let app = start(test_settings(&db.url()), db, true).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let one = app.create_thread(&alice, "one").await;
    let two = app.create_thread(&alice, "two").await;
    let three = app.create_thread(&alice, "three").await;
    for t in [&one, &two, &three] {
        app.add_member(&alice, t, "bob").await;
    }
    assert_eq!(
        listed(&app, &alice, "").await,
        [
            ("three".into(), false, false),
            ("two".into(), false, false),
            ("one".into(), false, false)
        ]
    );
    // A member archives and pins for themselves only.
    let r = patch(&app, &bob, &one, json!({"pinned": true})).await;
    assert_eq!(r.json::<Value>().await.unwrap()["pinned"], true);
    let r = patch(&app, &bob, &two, json!({"archived": true})).await;
    assert_eq!(r.json::<Value>().await.unwrap()["archived"], true);
    assert_eq!(
        listed(&app, &bob, "").await,
        [("one".into(), false, true), ("three".into(), false, false)]
    );
    assert_eq!(
        listed(&app, &bob, "?archived=true").await,
        [("two".into(), true, false)]
    );
    assert_eq!(
        listed(&app, &alice, "").await.len(),
        3,
        "alice's view is her own"
    );
    let shown: Value = app
        .get(&format!("/api/threads/{two}"), Some(&bob.token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (shown["archived"].as_bool(), shown["pinned"].as_bool()),
        (Some(true), Some(false))
    );
    // Unarchive and unpin.
    patch(&app, &bob, &two, json!({"archived": false})).await;
    patch(&app, &bob, &one, json!({"pinned": false})).await;
    assert_eq!(listed(&app, &bob, "").await.len(), 3);
    assert!(
        listed(&app, &bob, "")
            .await
            .iter()
            .all(|(_, a, p)| !a && !p)
    );
    let bad = app
        .get("/api/threads?archived=maybe", Some(&bob.token))
        .await;
    assert_eq!(bad.status(), 422);
}

#[tokio::test]
async fn archive_and_pin_are_each_members_own_on_sqlite() {
    archive_and_pin_story(TestDb::sqlite()).await;
}

#[tokio::test]
async fn archive_and_pin_are_each_members_own_on_postgres() {
    archive_and_pin_story(TestDb::postgres().await).await;
}

async fn purge_story(db: TestDb) {
    let mut s = test_settings(&db.url());
    s.database.deleted_retention_secs = 1;
    s.database.purge_interval_ms = 200;
    let app = start(s, db, true).await;
    let alice = app.register("alice").await;
    let doomed = app.create_thread(&alice, "doomed").await;
    let kept = app.create_thread(&alice, "kept").await;
    for t in [&doomed, &kept] {
        let r = app
            .post(
                &format!("/api/threads/{t}/messages"),
                Some(&alice.token),
                json!({"client_id": "c", "body": "hello"}),
            )
            .await;
        assert_eq!(r.status(), 201);
    }
    assert_eq!(
        delete(&app, &alice, &format!("/api/threads/{doomed}"))
            .await
            .status(),
        204
    );
    let stored = |id: String| {
        let state = app.state.clone();
        async move {
            state
                .db
                .run(|s| async move { s.export_messages(&id).await })
                .await
                .unwrap()
                .len()
        }
    };
    assert_eq!(
        stored(doomed.clone()).await,
        1,
        "kept until the retention period is over"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while stored(doomed.clone()).await > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "purged within the retention + interval"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(stored(kept.clone()).await, 1, "other threads are untouched");
    assert_eq!(
        app.get(&format!("/api/threads/{doomed}"), Some(&alice.token))
            .await
            .status(),
        404
    );
}

#[tokio::test]
async fn deleted_threads_are_purged_after_the_retention_period_on_sqlite() {
    purge_story(TestDb::sqlite()).await;
}

#[tokio::test]
async fn deleted_threads_are_purged_after_the_retention_period_on_postgres() {
    purge_story(TestDb::postgres().await).await;
}
