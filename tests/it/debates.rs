//! Debates with a mediator, debate metadata in history, stopping a debate by its id, and several
//! agents answering one message at once, each stoppable alone: on SQLite and PostgreSQL.

use std::time::Duration;

use emergence::agents::AgentSettings;
use serde_json::{Value, json};

use crate::agents::{agent, use_fake_providers};
use crate::support::{TestApp, TestDb, fake_llm::FakeLlm, spawn_on};

async fn app_on(db: TestDb, fake_url: &str, agents: Vec<AgentSettings>) -> TestApp {
    let url = fake_url.to_string();
    spawn_on(db, move |s| {
        s.agents = agents;
        use_fake_providers(s, &url);
    })
    .await
}

async fn mediator_story(db: TestDb) {
    let (_fake, url) = FakeLlm::start().await;
    let app = app_on(
        db,
        &url,
        vec![
            agent("a1", "openai", "ok"),
            agent("a2", "anthropic", "ok"),
            agent("med", "gemini", "ok"),
        ],
    )
    .await;
    let alice = app.register("alice").await;
    let thread = app.create_thread(&alice, "debate").await;
    let mut ws = app.ws(&alice).await;
    ws.subscribe(&thread, None).await;
    ws.send(
        json!({"type":"debate","thread":thread,"client_id":"d1","topic":"Tea or coffee?",
        "agents":["a1","a2"],"rounds":2,"mediator":"med"}),
    )
    .await;
    let mut turns = Vec::new();
    for _ in 0..5 {
        let start = ws.recv_type("stream_start").await;
        let stream_id = start["stream_id"].as_str().unwrap().to_string();
        let seen = crate::agents::follow_known(&mut ws, &stream_id, "").await;
        let end = seen.end.expect("each turn ends");
        turns.push((start, end));
    }
    let debate_id = turns[0].0["debate_id"].as_str().unwrap().to_string();
    let places: Vec<(String, Value, Value)> = turns
        .iter()
        .map(|(s, e)| {
            assert_eq!(s["debate_id"], debate_id.as_str(), "one debate id: {s}");
            (
                e["message"]["author"]["id"].as_str().unwrap().to_string(),
                s["round"].clone(),
                s["role"].clone(),
            )
        })
        .collect();
    assert_eq!(
        places,
        [
            ("a1".into(), json!(1), json!("turn")),
            ("a2".into(), json!(1), json!("turn")),
            ("a1".into(), json!(2), json!("turn")),
            ("a2".into(), json!(2), json!("turn")),
            ("med".into(), Value::Null, json!("synthesis")),
        ]
    );
    // The stored answers carry their place (stream_end and history alike), model and duration.
    let synthesis = &turns[4].1["message"];
    assert_eq!(synthesis["debate"]["role"], "synthesis");
    assert_eq!(synthesis["debate"]["id"], debate_id.as_str());
    assert_eq!(synthesis["model"], "ok");
    assert!(synthesis["duration_ms"].as_u64().is_some());

    let history = app.messages(&alice, &thread, "").await;
    assert_eq!(history.len(), 6, "topic + four turns + synthesis");
    let topic = &history[0];
    assert_eq!(topic["body"], "Tea or coffee?");
    assert_eq!(
        topic["debate"],
        json!({"id": debate_id, "role": "topic", "agents": ["a1", "a2"], "rounds": 2, "mediator": "med"})
    );
    let stored: Vec<(Value, Value, Value)> = history[1..]
        .iter()
        .map(|m| {
            assert_eq!(m["debate"]["id"], debate_id.as_str());
            assert_eq!(m["model"], "ok", "{m}");
            assert!(m["duration_ms"].as_u64().is_some(), "{m}");
            assert!(
                m["completion_tokens"].as_i64().is_some_and(|n| n > 0),
                "{m}"
            );
            (
                m["author"]["id"].clone(),
                m["debate"]["round"].clone(),
                m["debate"]["role"].clone(),
            )
        })
        .collect();
    assert_eq!(
        stored,
        [
            (json!("a1"), json!(1), json!("turn")),
            (json!("a2"), json!(1), json!("turn")),
            (json!("a1"), json!(2), json!("turn")),
            (json!("a2"), json!(2), json!("turn")),
            (json!("med"), Value::Null, json!("synthesis")),
        ]
    );
    // A plain message carries none of it.
    ws.send_message(&thread, "plain", "thanks").await;
    ws.recv_until("plain", |f| {
        f["type"] == "message" && f["client_id"] == "plain"
    })
    .await;
    let last = app.messages(&alice, &thread, "?after_seq=6").await;
    assert_eq!(last.len(), 1);
    for field in [
        "debate",
        "model",
        "duration_ms",
        "version_of",
        "error_class",
    ] {
        assert!(last[0].get(field).is_none(), "{field} on a plain message");
    }
}

#[tokio::test]
async fn a_debate_with_a_mediator_closes_with_a_synthesis_and_history_keeps_its_places_sqlite() {
    mediator_story(TestDb::sqlite()).await;
}

#[tokio::test]
async fn a_debate_with_a_mediator_closes_with_a_synthesis_and_history_keeps_its_places_postgres() {
    mediator_story(TestDb::postgres().await).await;
}

async fn stop_story(db: TestDb) {
    let (fake, url) = FakeLlm::start().await;
    let app = app_on(
        db,
        &url,
        vec![
            agent("s1", "openai", "slow-60-50"),
            agent("s2", "openai", "slow-60-50"),
            agent("med", "openai", "ok"),
        ],
    )
    .await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let thread = app.create_thread(&alice, "stop").await;
    app.add_member(&alice, &thread, "bob").await;
    let mut a = app.ws(&alice).await;
    a.subscribe(&thread, None).await;
    a.send(
        json!({"type":"debate","thread":thread,"client_id":"d","topic":"Stop me",
        "agents":["s1","s2"],"rounds":3,"mediator":"med"}),
    )
    .await;
    let start = a.recv_type("stream_start").await;
    let debate_id = start["debate_id"].as_str().unwrap().to_string();
    a.recv_type("stream_chunk").await;
    // Bob stops the whole debate by its id.
    let mut b = app.ws(&bob).await;
    b.send(json!({"type":"cancel","debate_id":debate_id})).await;
    let err = a
        .recv_until("stream_error", |f| f["type"] == "stream_error")
        .await;
    assert_eq!(err["code"], "cancelled");
    assert_eq!(err["stream_id"], start["stream_id"]);
    let partial = a
        .recv_until("incomplete message", |f| {
            f["type"] == "message" && f["author"]["kind"] == "agent"
        })
        .await;
    assert_eq!(partial["status"], "incomplete");
    assert_eq!(partial["debate"]["id"], debate_id.as_str());
    assert_eq!(partial["debate"]["round"], 1);
    assert_eq!(partial["error_class"], "cancelled");
    assert!(!partial["body"].as_str().unwrap().is_empty());
    // No further turn and no synthesis.
    let mut later = Vec::new();
    while let Some(f) = a.recv_within(Duration::from_millis(800)).await {
        later.push(f["type"].as_str().unwrap_or("").to_string());
    }
    assert!(!later.iter().any(|t| t == "stream_start"), "{later:?}");
    assert_eq!(fake.count("ok"), 0, "the mediator never ran");
    let history = app.messages(&alice, &thread, "").await;
    assert_eq!(history.len(), 2, "topic + the stopped turn");
    // A finished or unknown debate, or one of another thread, is not found.
    b.send(json!({"type":"cancel","debate_id":debate_id})).await;
    assert_eq!(b.recv_type("error").await["code"], "not_found");
    b.send(json!({"type":"cancel"})).await;
    assert_eq!(b.recv_type("error").await["code"], "validation");
}

#[tokio::test]
async fn cancel_with_a_debate_id_stops_the_whole_debate_and_keeps_the_partial_turn_sqlite() {
    stop_story(TestDb::sqlite()).await;
}

#[tokio::test]
async fn cancel_with_a_debate_id_stops_the_whole_debate_and_keeps_the_partial_turn_postgres() {
    stop_story(TestDb::postgres().await).await;
}

/// Stop a debate the moment a turn ends, before the next one streams (the stop button stays
/// while a debate is under way): the debate ends there, whether or not the next turn had
/// started on the server (then it ends `cancelled`); the next round and the synthesis never run.
async fn stop_between_turns_story(db: TestDb) {
    let (fake, url) = FakeLlm::start().await;
    let app = app_on(
        db,
        &url,
        vec![
            agent("t1", "openai", "ok"),
            agent("t2", "anthropic", "slow-20-40"),
            agent("med", "gemini", "ping"),
        ],
    )
    .await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let thread = app.create_thread(&alice, "between").await;
    app.add_member(&alice, &thread, "bob").await;
    let mut a = app.ws(&alice).await;
    a.subscribe(&thread, None).await;
    a.send(
        json!({"type":"debate","thread":thread,"client_id":"d","topic":"Between turns",
        "agents":["t1","t2"],"rounds":3,"mediator":"med"}),
    )
    .await;
    let first = a.recv_type("stream_start").await;
    let debate_id = first["debate_id"].as_str().unwrap().to_string();
    let mut b = app.ws(&bob).await;
    a.recv_until("the first turn's end", |f| {
        f["type"] == "stream_end" && f["stream_id"] == first["stream_id"]
    })
    .await;
    b.send(json!({"type":"cancel","debate_id":debate_id})).await;
    // Accepted: no error for bob.
    while let Some(f) = b.recv_within(Duration::from_millis(700)).await {
        assert_ne!(f["type"], "error", "{f}");
    }
    // At most the second turn started; if so, it was stopped.
    let mut started = Vec::new();
    let mut ended = Vec::new();
    while let Some(f) = a.recv_within(Duration::from_millis(1200)).await {
        match f["type"].as_str().unwrap() {
            "stream_start" => started.push(f),
            "stream_end" => panic!("no turn finishes after the stop: {f}"),
            "stream_error" => ended.push(f),
            _ => {}
        }
    }
    assert!(started.len() <= 1, "{started:?}");
    if let Some(second) = started.first() {
        assert_eq!(second["agent"]["id"], "t2");
        assert_eq!(ended.len(), 1);
        assert_eq!(ended[0]["code"], "cancelled");
    }
    assert_eq!(fake.count("ok"), 1, "t1 never spoke again");
    assert_eq!(fake.count("ping"), 0, "the mediator never ran");
    let history = app.messages(&alice, &thread, "").await;
    assert!(
        history.len() <= 3,
        "topic, turn 1, at most a partial turn 2"
    );
    assert!(history[2..].iter().all(|m| m["status"] == "incomplete"));
    // The debate is over: stopping it again is not found.
    b.send(json!({"type":"cancel","debate_id":debate_id})).await;
    assert_eq!(b.recv_type("error").await["code"], "not_found");
}

#[tokio::test]
async fn stopping_a_debate_between_two_turns_ends_it_sqlite() {
    stop_between_turns_story(TestDb::sqlite()).await;
}

#[tokio::test]
async fn stopping_a_debate_between_two_turns_ends_it_postgres() {
    stop_between_turns_story(TestDb::postgres().await).await;
}

async fn parallel_story(db: TestDb) {
    let (_fake, url) = FakeLlm::start().await;
    let app = app_on(
        db,
        &url,
        vec![
            agent("p1", "openai", "slow-30-40"),
            agent("p2", "anthropic", "slow-30-40"),
        ],
    )
    .await;
    let alice = app.register("alice").await;
    let thread = app.create_thread(&alice, "parallel").await;
    let mut ws = app.ws(&alice).await;
    ws.subscribe(&thread, None).await;
    ws.send(
        json!({"type":"send","thread":thread,"client_id":"q","body":"Both of you?",
        "agents":["p1","p2","p1"]}),
    )
    .await;
    // Both answers start before either ends: they run at once.
    let mut starts = Vec::new();
    while starts.len() < 2 {
        let f = ws
            .recv_within(Duration::from_secs(10))
            .await
            .expect("frames");
        assert_ne!(
            f["type"], "stream_end",
            "an answer ended before both started"
        );
        if f["type"] == "stream_start" {
            assert!(f.get("debate_id").is_none());
            starts.push(f);
        }
    }
    let mut agents: Vec<&str> = starts
        .iter()
        .map(|s| s["agent"]["id"].as_str().unwrap())
        .collect();
    agents.sort_unstable();
    assert_eq!(agents, ["p1", "p2"], "duplicates are dropped");
    // Stop p1's answer alone: p2's goes on to its end.
    let p1 = starts.iter().find(|s| s["agent"]["id"] == "p1").unwrap();
    let p2 = starts.iter().find(|s| s["agent"]["id"] == "p2").unwrap();
    ws.send(json!({"type":"cancel","stream_id":p1["stream_id"]}))
        .await;
    let mut p1_error = None;
    let mut p2_end = None;
    while p1_error.is_none() || p2_end.is_none() {
        let f = ws
            .recv_within(Duration::from_secs(20))
            .await
            .expect("frames");
        if f["type"] == "stream_error" {
            assert_eq!(f["stream_id"], p1["stream_id"], "only p1 stops");
            p1_error = Some(f);
        } else if f["type"] == "stream_end" {
            assert_eq!(f["stream_id"], p2["stream_id"]);
            p2_end = Some(f);
        }
    }
    assert_eq!(p1_error.unwrap()["code"], "cancelled");
    assert_eq!(
        p2_end.unwrap()["message"]["body"],
        crate::support::fake_llm::FakeLlm::full_text("slow-30-40")
    );
}

#[tokio::test]
async fn several_agents_answer_one_message_at_once_each_stoppable_alone_sqlite() {
    parallel_story(TestDb::sqlite()).await;
}

#[tokio::test]
async fn several_agents_answer_one_message_at_once_each_stoppable_alone_postgres() {
    parallel_story(TestDb::postgres().await).await;
}

#[tokio::test]
async fn bad_agent_lists_and_mediators_get_contract_errors() {
    let (_fake, url) = FakeLlm::start().await;
    let app = app_on(
        TestDb::sqlite(),
        &url,
        vec![agent("a1", "openai", "ok"), agent("a2", "openai", "ok")],
    )
    .await;
    let alice = app.register("alice").await;
    let thread = app.create_thread(&alice, "bad").await;
    let mut ws = app.ws(&alice).await;
    ws.subscribe(&thread, None).await;
    let cases = [
        (
            json!({"type":"send","thread":thread,"client_id":"b1","body":"x","agents":[]}),
            "validation",
        ),
        (
            json!({"type":"send","thread":thread,"client_id":"b2","body":"x","agents":["a1","a2","a1","x","y","z"]}),
            "validation",
        ),
        (
            json!({"type":"send","thread":thread,"client_id":"b3","body":"x","agents":"a1"}),
            "validation",
        ),
        (
            json!({"type":"send","thread":thread,"client_id":"b4","body":"x","agents":[1]}),
            "validation",
        ),
        (
            json!({"type":"send","thread":thread,"client_id":"b5","body":"x","agent":"a1","agents":["a2"]}),
            "validation",
        ),
        (
            json!({"type":"send","thread":thread,"client_id":"b6","body":"x","agents":["a1","ghost"]}),
            "not_found",
        ),
        (
            json!({"type":"debate","thread":thread,"client_id":"b7","topic":"x","agents":["a1","a2"],"rounds":1,"mediator":"ghost"}),
            "validation",
        ),
        (
            json!({"type":"debate","thread":thread,"client_id":"b8","topic":"x","agents":["a1","a2"],"rounds":1,"mediator":7}),
            "validation",
        ),
    ];
    for (frame, code) in cases {
        let cid = frame["client_id"].clone();
        ws.send(frame.clone()).await;
        let err = ws.recv_type("error").await;
        assert_eq!(err["code"], code, "{frame}");
        assert_eq!(err["client_id"], cid, "{frame}");
    }
    // Over HTTP: 422 naming the field, never a 500.
    let path = format!("/api/threads/{thread}/messages");
    let token = Some(alice.token.as_str());
    for (body, field) in [
        (json!({"client_id":"h1","body":"x","agents":[]}), "agents"),
        (
            json!({"client_id":"h2","body":"x","agents":["a1","ghost"]}),
            "agents",
        ),
        (
            json!({"client_id":"h3","body":"x","agent":"a1","agents":["a2"]}),
            "agents",
        ),
        (
            json!({"client_id":"h4","body":"x","agents":{"a":1}}),
            "agents",
        ),
    ] {
        let r = app.post(&path, token, body.clone()).await;
        assert_eq!(r.status(), 422, "{body}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "validation", "{body}");
        assert!(v["error"]["fields"][field].is_string(), "{body}: {v}");
    }
    let r = app
        .post(
            &format!("/api/threads/{thread}/debate"),
            token,
            json!({"client_id":"h5","topic":"x","agents":["a1","a2"],"rounds":1,"mediator":"ghost"}),
        )
        .await;
    assert_eq!(r.status(), 422);
    let v: Value = r.json().await.unwrap();
    assert!(v["error"]["fields"]["mediator"].is_string(), "{v}");
    // Both agents over HTTP: 201, then both answer.
    let r = app
        .post(
            &path,
            token,
            json!({"client_id":"h6","body":"both","agents":["a1","a2"]}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let mut ended = Vec::new();
    while ended.len() < 2 {
        let f = ws
            .recv_within(Duration::from_secs(20))
            .await
            .expect("both answers end");
        assert_ne!(f["type"], "stream_error", "{f}");
        if f["type"] == "stream_end" {
            ended.push(f["message"]["author"]["id"].as_str().unwrap().to_string());
        }
    }
    ended.sort_unstable();
    assert_eq!(ended, ["a1", "a2"]);
}
