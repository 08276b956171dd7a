//! Regenerating an agent answer: a new version (a new message whose `version_of` names the
//! first version), streamed to every member, idempotent by `client_id` (a repeat never calls
//! the provider again), by the same agent or another, seeing the thread as it was before the
//! answer; later turns see the latest version only. On SQLite and PostgreSQL.

use std::time::Duration;

use serde_json::{Value, json};

use crate::agents::{agent, follow_known, use_fake_providers};
use crate::support::{TestDb, WsClient, fake_llm::FakeLlm, spawn_on};

/// The next `stream_start` and the whole stream, on one socket.
async fn next_stream(ws: &mut WsClient) -> (Value, crate::agents::Seen) {
    let start = ws.recv_type("stream_start").await;
    let seen = follow_known(ws, start["stream_id"].as_str().unwrap(), "").await;
    (start, seen)
}

/// No `stream_start` arrives within `wait`.
async fn assert_no_stream(ws: &mut WsClient, wait: Duration) {
    while let Some(f) = ws.recv_within(wait).await {
        assert_ne!(f["type"], "stream_start", "a repeat started an answer: {f}");
    }
}

/// Every request text the fake received, as one string per request.
fn requests(fake: &FakeLlm) -> Vec<String> {
    fake.bodies
        .lock()
        .unwrap()
        .iter()
        .map(|b| b.to_string())
        .collect()
}

async fn regenerate_story(db: TestDb) {
    let (fake, url) = FakeLlm::start().await;
    let app = spawn_on(db, move |s| {
        s.agents = vec![
            agent("slow", "openai", "slow-12-40"),
            agent("quick", "anthropic", "ok"),
        ];
        use_fake_providers(s, &url);
    })
    .await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let carol = app.register("carol").await;
    let thread = app.create_thread(&alice, "versions").await;
    app.add_member(&alice, &thread, "bob").await;
    let mut a = app.ws(&alice).await;
    let mut b = app.ws(&bob).await;
    a.subscribe(&thread, None).await;
    b.subscribe(&thread, None).await;

    // An answer stopped after its first chunk: stored incomplete.
    a.send(json!({"type":"send","thread":thread,"client_id":"q1","body":"Why is the sky blue?","agent":"slow"})).await;
    let start = a.recv_type("stream_start").await;
    assert!(start.get("version_of").is_none(), "a first answer: {start}");
    a.recv_type("stream_chunk").await;
    a.send(json!({"type":"cancel","stream_id":start["stream_id"]}))
        .await;
    let first = a
        .recv_until("incomplete answer", |f| {
            f["type"] == "message" && f["author"]["kind"] == "agent"
        })
        .await;
    assert_eq!(first["status"], "incomplete");
    let first_id = first["id"].as_str().unwrap().to_string();
    assert_eq!(fake.count("slow-12-40"), 1);
    b.recv_until("the incomplete answer", |f| {
        f["type"] == "message" && f["id"] == first["id"]
    })
    .await;

    // Regenerate it: acknowledged, streamed to every member as a version of the first.
    a.regenerate(&thread, "r1", &first_id, None).await;
    let ack = a.recv_type("ack").await;
    assert_eq!(
        (&ack["client_id"], &ack["status"], &ack["message_id"]),
        (&json!("r1"), &json!("persisted"), &json!(first_id))
    );
    assert!(ack.get("seq").is_none(), "nothing is stored yet: {ack}");
    let ((sa, seen_a), (sb, seen_b)) = tokio::join!(next_stream(&mut a), next_stream(&mut b));
    for (start, seen) in [(&sa, &seen_a), (&sb, &seen_b)] {
        assert_eq!(start["version_of"], first_id.as_str(), "{start}");
        assert_eq!(start["agent"]["id"], "slow");
        assert_eq!(seen.text, FakeLlm::full_text("slow-12-40"));
    }
    let second = seen_a.end.unwrap()["message"].clone();
    assert_eq!(second["version_of"], first_id.as_str());
    assert_eq!(second["body"], FakeLlm::full_text("slow-12-40"));
    assert!(second.get("status").is_none(), "complete: {second}");
    let second_id = second["id"].as_str().unwrap().to_string();
    assert_ne!(second_id, first_id);
    // It saw the question, not the answer it replaces.
    let asked = requests(&fake).last().unwrap().clone();
    assert!(asked.contains("Why is the sky blue?"), "{asked}");
    assert!(
        !asked.contains("c0 "),
        "the old version is not in the context: {asked}"
    );

    // The same request again (a reconnect, a double click): acknowledged, nothing starts.
    a.regenerate(&thread, "r1", &first_id, None).await;
    assert_eq!(a.recv_type("ack").await["message_id"], first_id.as_str());
    let mut a2 = app.ws(&alice).await;
    a2.regenerate(&thread, "r1", &second_id, Some("quick"))
        .await;
    assert_eq!(a2.recv_type("ack").await["message_id"], first_id.as_str());
    assert_no_stream(&mut b, Duration::from_millis(800)).await;
    assert_eq!(
        fake.count("slow-12-40"),
        2,
        "one provider call per client_id"
    );
    assert_eq!(fake.count("ok"), 0);

    // A version of a version, by another agent: still a version of the first.
    b.regenerate(&thread, "r2", &second_id, Some("quick")).await;
    assert_eq!(b.recv_type("ack").await["message_id"], first_id.as_str());
    let (start, seen) = next_stream(&mut a).await;
    assert_eq!(start["version_of"], first_id.as_str());
    assert_eq!(start["agent"]["id"], "quick");
    let third = seen.end.unwrap()["message"].clone();
    assert_eq!(third["version_of"], first_id.as_str());
    assert_eq!(third["author"]["id"], "quick");
    assert_eq!(third["body"], FakeLlm::full_text("ok"));

    // History keeps every version, in seq order, each linked to the first.
    let history = app.messages(&alice, &thread, "").await;
    let shape: Vec<(Value, Value, Value)> = history
        .iter()
        .map(|m| {
            (
                m["author"]["id"].clone(),
                m["status"].clone(),
                m["version_of"].clone(),
            )
        })
        .collect();
    assert_eq!(
        shape,
        [
            (json!(alice.id), Value::Null, Value::Null),
            (json!("slow"), json!("incomplete"), Value::Null),
            (json!("slow"), Value::Null, json!(first_id)),
            (json!("quick"), Value::Null, json!(first_id)),
        ]
    );

    // A later turn sees the latest version only, in the first one's place.
    a.send(json!({"type":"send","thread":thread,"client_id":"q2","body":"And at sunset?","agent":"slow"})).await;
    let (_, seen) = next_stream(&mut a).await;
    assert!(seen.end.is_some());
    let asked = requests(&fake).last().unwrap().clone();
    assert!(asked.contains(&FakeLlm::full_text("ok")), "{asked}");
    assert!(
        !asked.contains("c0 "),
        "older versions are not in the context: {asked}"
    );

    // Refusals: the contract's codes, with the request's client_id.
    let q1 = history[0]["id"].as_str().unwrap();
    let cases: [(&str, &str, Option<&str>, &str); 4] = [
        ("bad1", q1, None, "validation"),
        ("bad2", "no-such-message", None, "not_found"),
        ("bad3", &first_id, Some("nobody"), "not_found"),
        ("r1", &first_id, None, "conflict"),
    ];
    for (client_id, message_id, agent, code) in cases {
        b.regenerate(&thread, client_id, message_id, agent).await;
        let err = b.recv_type("error").await;
        assert_eq!(
            (&err["code"], &err["client_id"]),
            (&json!(code), &json!(client_id)),
            "{err}"
        );
    }
    let mut c = app.ws(&carol).await;
    c.regenerate(&thread, "c1", &first_id, None).await;
    assert_eq!(c.recv_type("error").await["code"], "not_found");
    assert_no_stream(&mut a, Duration::from_millis(500)).await;
    assert_eq!(fake.count("ok"), 1);
}

#[tokio::test]
async fn regenerating_an_answer_adds_a_version_once_per_client_id_for_every_member_sqlite() {
    regenerate_story(TestDb::sqlite()).await;
}

#[tokio::test]
async fn regenerating_an_answer_adds_a_version_once_per_client_id_for_every_member_postgres() {
    regenerate_story(TestDb::postgres().await).await;
}

#[tokio::test]
async fn a_debate_turn_cannot_be_regenerated() {
    let (_fake, url) = FakeLlm::start().await;
    let app = spawn_on(TestDb::sqlite(), move |s| {
        s.agents = vec![agent("a1", "openai", "ok"), agent("a2", "openai", "ok")];
        use_fake_providers(s, &url);
    })
    .await;
    let alice = app.register("alice").await;
    let thread = app.create_thread(&alice, "debate").await;
    let mut a = app.ws(&alice).await;
    a.subscribe(&thread, None).await;
    a.send(json!({"type":"debate","thread":thread,"client_id":"d","topic":"Tea?","agents":["a1","a2"],"rounds":1})).await;
    let turn = a
        .recv_until("a turn", |f| {
            f["type"] == "message" && f["author"]["kind"] == "agent"
        })
        .await;
    a.regenerate(&thread, "r", turn["id"].as_str().unwrap(), None)
        .await;
    let err = a.recv_type("error").await;
    assert_eq!(
        (&err["code"], &err["client_id"]),
        (&json!("validation"), &json!("r"))
    );
}
