//! Export and import (issue 17) on SQLite and PostgreSQL: a thread as JSON and Markdown, all of a
//! user's threads as one archive, export -> import -> export equal but for ids, a second import
//! creating nothing, ChatGPT conversations imported as threads, and a debate's structure kept
//! through export and import.

use std::time::Duration;

use serde_json::{Value, json};

use crate::agents::{agent, use_fake_providers};
use crate::support::{
    TestApp, TestDb, TestUser, fake_llm::FakeLlm, spawn_on, start, test_settings,
};

async fn export(app: &TestApp, user: &TestUser, thread: &str) -> Value {
    let r = app
        .get(&format!("/api/threads/{thread}/export"), Some(&user.token))
        .await;
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

async fn import(app: &TestApp, user: &TestUser, body: &Value) -> (u16, Value) {
    let r = app
        .post("/api/import", Some(&user.token), body.clone())
        .await;
    (r.status().as_u16(), r.json().await.unwrap())
}

async fn story(db: TestDb) {
    let mut s = test_settings(&db.url());
    s.limits.send_rate_per_sec = 0;
    s.limits.thread_rate_per_min = 0;
    let app = start(s, db, true).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let thread = app.create_thread(&alice, "Trip to Lyon").await;
    app.add_member(&alice, &thread, "bob").await;
    for (user, cid, body) in [
        (&alice, "a1", "Shall we go by train?"),
        (&bob, "b1", "Oui, le TGV part à 8 h."),
        (
            &alice,
            "a2",
            "**Great** — booking now.\n\n```\nseat 42\n```",
        ),
    ] {
        let r = app
            .post(
                &format!("/api/threads/{thread}/messages"),
                Some(&user.token),
                json!({"client_id": cid, "body": body}),
            )
            .await;
        assert_eq!(r.status(), 201);
    }

    let first = export(&app, &alice, &thread).await;
    assert_eq!(first["format"], "emergence.thread.v1");
    assert_eq!(first["title"], "Trip to Lyon");
    let messages = first["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 3);
    assert_eq!(messages[1]["author"]["name"], "bob");
    assert_eq!(messages[1]["body"], "Oui, le TGV part à 8 h.");

    // Markdown.
    let md = app
        .get(
            &format!("/api/threads/{thread}/export?format=md"),
            Some(&alice.token),
        )
        .await;
    assert_eq!(md.status(), 200);
    assert!(
        md.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/markdown")
    );
    let md = md.text().await.unwrap();
    assert!(md.starts_with("# Trip to Lyon\n"), "{md}");
    assert!(md.contains("## bob — ") && md.contains("seat 42"), "{md}");
    let bad = app
        .get(
            &format!("/api/threads/{thread}/export?format=pdf"),
            Some(&alice.token),
        )
        .await;
    assert_eq!(bad.status(), 422);
    // Strangers get the 404 of a missing thread.
    let carol = app.register("carol").await;
    assert_eq!(
        app.get(&format!("/api/threads/{thread}/export"), Some(&carol.token))
            .await
            .status(),
        404
    );

    // Import into carol's account, then export again: equal but for ids.
    let (status, done) = import(&app, &carol, &first).await;
    assert_eq!(status, 201, "{done}");
    assert_eq!(done["threads"][0]["created"], true);
    let copy = done["threads"][0]["id"].as_str().unwrap().to_string();
    assert_ne!(copy, thread);
    let second = export(&app, &carol, &copy).await;
    assert_eq!(second, first, "export -> import -> export round-trips");
    let listed: Value = app
        .get("/api/threads", Some(&carol.token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["threads"].as_array().unwrap().len(), 1);

    // Importing the same again creates nothing.
    let (status, again) = import(&app, &carol, &first).await;
    assert_eq!(status, 200);
    assert_eq!(
        again["threads"][0],
        json!({"id": copy, "title": "Trip to Lyon", "created": false})
    );
    let listed: Value = app
        .get("/api/threads", Some(&carol.token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        listed["threads"].as_array().unwrap().len(),
        1,
        "no second thread"
    );
    // The imported messages are searchable.
    let hits: Value = app
        .get("/api/search?q=train", Some(&carol.token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(hits["hits"][0]["thread"], copy.as_str());

    // Everything of a user, as one archive; importing it into another account round-trips too.
    let archive: Value = app
        .get("/api/me/export", Some(&alice.token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(archive["format"], "emergence.export.v1");
    assert_eq!(archive["user"]["username"], "alice");
    assert_eq!(archive["threads"].as_array().unwrap().len(), 1);
    let dave = app.register("dave").await;
    let (status, done) = import(&app, &dave, &archive).await;
    assert_eq!(status, 201);
    let id = done["threads"][0]["id"].as_str().unwrap();
    assert_eq!(export(&app, &dave, id).await, first);
    let (status, _) = import(&app, &dave, &archive).await;
    assert_eq!(status, 200, "a second archive import creates nothing");

    // A ChatGPT conversations.json, wrapped as {"conversations": [...]}.
    let chatgpt = json!({"conversations": [{
        "title": "Pasta",
        "create_time": 1700000000.5,
        "current_node": "n3",
        "mapping": {
            "root": {"id": "root", "message": null, "parent": null, "children": ["n1"]},
            "n1": {"id": "n1", "parent": "root", "children": ["n2"], "message": {"id": "n1", "author": {"role": "system"}, "content": {"content_type": "text", "parts": [""]}}},
            "n2": {"id": "n2", "parent": "n1", "children": ["n3"], "message": {"id": "n2", "author": {"role": "user"}, "create_time": 1700000001.0, "content": {"content_type": "text", "parts": ["How long do I cook spaghetti?"]}}},
            "n3": {"id": "n3", "parent": "n2", "children": [], "message": {"id": "n3", "author": {"role": "assistant"}, "create_time": 1700000002.0, "content": {"content_type": "text", "parts": ["About 9 to 11 minutes."]}}}
        }
    }]});
    let (status, done) = import(&app, &dave, &chatgpt).await;
    assert_eq!(status, 201, "{done}");
    let id = done["threads"][0]["id"].as_str().unwrap();
    let pasta = export(&app, &dave, id).await;
    assert_eq!(pasta["title"], "Pasta");
    let m = pasta["messages"].as_array().unwrap();
    assert_eq!(m.len(), 2, "the system turn and the empty root are skipped");
    assert_eq!(
        (
            m[0]["author"]["kind"].as_str(),
            m[0]["author"]["name"].as_str()
        ),
        (Some("user"), Some("dave"))
    );
    assert_eq!(
        (
            m[1]["author"]["kind"].as_str(),
            m[1]["author"]["name"].as_str()
        ),
        (Some("agent"), Some("ChatGPT"))
    );
    assert_eq!(import(&app, &dave, &chatgpt).await.0, 200);

    // Bad input: a clear 422, never a 500.
    for body in [
        json!({"format": "something-else"}),
        json!({"format": "emergence.thread.v1", "title": "x"}),
        json!({"format": "emergence.thread.v1", "title": "", "agents": [], "created_at": "2026-01-01T00:00:00Z", "messages": []}),
        json!({"conversations": [{"title": "x"}]}),
        json!({"format": "emergence.export.v1"}),
    ] {
        let (status, e) = import(&app, &dave, &body).await;
        assert_eq!(status, 422, "{body} -> {e}");
        assert_eq!(e["error"]["code"], "validation");
    }
}

#[tokio::test]
async fn export_import_round_trips_and_a_second_import_creates_nothing_on_sqlite() {
    story(TestDb::sqlite()).await;
}

#[tokio::test]
async fn export_import_round_trips_and_a_second_import_creates_nothing_on_postgres() {
    story(TestDb::postgres().await).await;
}

/// A debate's structure (topic with agents, rounds and mediator; each turn's round; the
/// mediator's synthesis) is in the JSON export and the Markdown, and comes back on import: the
/// copy's history has the same places under a debate id of its own.
async fn debate_story(db: TestDb) {
    let (_fake, url) = FakeLlm::start().await;
    let app = spawn_on(db, move |s| {
        s.agents = vec![
            agent("a1", "openai", "ok"),
            agent("a2", "anthropic", "ok"),
            agent("med", "gemini", "ok"),
        ];
        use_fake_providers(s, &url);
    })
    .await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let thread = app.create_thread(&alice, "Tea debate").await;
    let mut ws = app.ws(&alice).await;
    ws.subscribe(&thread, None).await;
    ws.send(
        json!({"type":"debate","thread":thread,"client_id":"d1","topic":"Tea or coffee?",
        "agents":["a1","a2"],"rounds":2,"mediator":"med"}),
    )
    .await;
    for _ in 0..5 {
        ws.recv_type("stream_end").await;
    }
    // The last turn's message is stored once its stream has ended: wait for all six.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while app.messages(&alice, &thread, "").await.len() < 6 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "six messages stored"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let first = export(&app, &alice, &thread).await;
    let places: Vec<Value> = first["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["debate"].clone())
        .collect();
    let id = places[0]["id"].as_str().unwrap().to_string();
    assert_eq!(
        places,
        vec![
            json!({"id": id, "role": "topic", "agents": ["a1", "a2"], "rounds": 2, "mediator": "med"}),
            json!({"id": id, "role": "turn", "round": 1}),
            json!({"id": id, "role": "turn", "round": 1}),
            json!({"id": id, "role": "turn", "round": 2}),
            json!({"id": id, "role": "turn", "round": 2}),
            json!({"id": id, "role": "synthesis"}),
        ]
    );
    let md = app
        .get(
            &format!("/api/threads/{thread}/export?format=md"),
            Some(&alice.token),
        )
        .await
        .text()
        .await
        .unwrap();
    assert!(
        md.contains("## alice · debate topic (2 rounds; a1, a2; mediator med) — "),
        "{md}"
    );
    assert!(md.contains("(agent) · round 1 — "), "{md}");
    assert!(md.contains("(agent) · round 2 — "), "{md}");
    assert!(md.contains("(agent) · synthesis — "), "{md}");

    // Imported by bob: the same places, under the copy's own debate id.
    let (status, done) = import(&app, &bob, &first).await;
    assert_eq!(status, 201, "{done}");
    let copy = done["threads"][0]["id"].as_str().unwrap().to_string();
    let history = app.messages(&bob, &copy, "").await;
    let new_id = format!("job-{}", history[0]["id"].as_str().unwrap());
    assert_ne!(new_id, id);
    let renamed = |v: &Value| -> Value {
        let mut v = v.clone();
        for m in v["messages"].as_array_mut().unwrap() {
            m["debate"]["id"] = json!("ID");
        }
        v
    };
    let second = export(&app, &bob, &copy).await;
    assert!(
        second["messages"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["debate"]["id"] == new_id.as_str()),
        "{second}"
    );
    assert_eq!(renamed(&second), renamed(&first), "round-trips but for ids");
    let shown: Vec<(Value, Value)> = history
        .iter()
        .map(|m| (m["debate"]["role"].clone(), m["debate"]["round"].clone()))
        .collect();
    assert_eq!(
        shown,
        vec![
            (json!("topic"), Value::Null),
            (json!("turn"), json!(1)),
            (json!("turn"), json!(1)),
            (json!("turn"), json!(2)),
            (json!("turn"), json!(2)),
            (json!("synthesis"), Value::Null),
        ]
    );
    assert_eq!(import(&app, &bob, &first).await.0, 200, "nothing new");
}

#[tokio::test]
async fn a_debate_keeps_its_structure_through_export_and_import_on_sqlite() {
    debate_story(TestDb::sqlite()).await;
}

#[tokio::test]
async fn a_debate_keeps_its_structure_through_export_and_import_on_postgres() {
    debate_story(TestDb::postgres().await).await;
}
