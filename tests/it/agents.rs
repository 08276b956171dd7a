//! Agents: answers stream to every subscriber and are stored once, debates run in order, cancel
//! works, every provider failure ends in `stream_error`, and the offline agent needs no network.
//! Providers are faked by a local server speaking their real wire formats.

use std::time::Duration;

use emergence::agents::AgentSettings;
use serde_json::{Value, json};

use crate::support::{TestApp, WsClient, fake_llm::FakeLlm, spawn_app, spawn_app_with};

pub fn agent(id: &str, provider: &str, model: &str) -> AgentSettings {
    AgentSettings {
        id: id.into(),
        name: id.to_uppercase(),
        system_prompt: format!("You are {id}."),
        provider: provider.into(),
        model: model.into(),
        temperature: 0.5,
        max_tokens: 256,
        fallback_model: None,
        fallback_agent: None,
        colour: None,
        context_tokens: None,
    }
}

/// A server whose agents talk to the fake providers.
pub async fn agent_app(fake_url: &str, agents: Vec<AgentSettings>) -> TestApp {
    let url = fake_url.to_string();
    spawn_app_with(move |s| {
        s.agents = agents;
        use_fake_providers(s, &url);
    })
    .await
}

/// Point every provider of `s` at the fake at `url` (with test keys and short timeouts).
pub fn use_fake_providers(s: &mut emergence::Settings, url: &str) {
    s.providers.openai_base_url = Some(format!("{url}/v1"));
    s.providers.openai_api_key = Some(emergence::settings::Secret::new("sk-test-openai"));
    s.providers.anthropic_base_url = Some(url.to_string());
    s.providers.anthropic_api_key = Some(emergence::settings::Secret::new("sk-test-anthropic"));
    s.providers.gemini_base_url = Some(url.to_string());
    s.providers.gemini_api_key = Some(emergence::settings::Secret::new("test-gemini"));
    s.providers.first_token_timeout_ms = 1500;
    s.providers.idle_timeout_ms = 1500;
    s.limits.send_rate_per_sec = 0;
}

/// What one client saw of a stream.
#[derive(Debug, Default)]
pub struct Seen {
    pub stream_id: String,
    pub text: String,
    pub end: Option<Value>,
    pub error: Option<Value>,
    pub chunks: usize,
    /// Agent `message` frames seen meanwhile.
    pub messages: Vec<Value>,
}

/// Follow the next stream on this socket until it ends, applying chunks by offset.
pub async fn follow_stream(ws: &mut WsClient) -> Seen {
    follow(ws, Seen::default()).await
}

/// Follow a stream whose `stream_start` was already read (text so far: `text`).
pub async fn follow_known(ws: &mut WsClient, stream_id: &str, text: &str) -> Seen {
    follow(
        ws,
        Seen {
            stream_id: stream_id.into(),
            text: text.into(),
            ..Seen::default()
        },
    )
    .await
}

async fn follow(ws: &mut WsClient, mut seen: Seen) -> Seen {
    loop {
        let f = ws
            .recv_within(Duration::from_secs(20))
            .await
            .expect("stream frames keep coming");
        match f["type"].as_str().unwrap() {
            "stream_start" if seen.stream_id.is_empty() => {
                seen.stream_id = f["stream_id"].as_str().unwrap().into()
            }
            "stream_snapshot" if f["stream_id"] == seen.stream_id.as_str() => {
                seen.text = f["text"].as_str().unwrap().into();
                assert_eq!(
                    f["offset"].as_u64().unwrap() as usize,
                    seen.text.chars().count()
                );
            }
            "stream_chunk" if f["stream_id"] == seen.stream_id.as_str() => {
                assert_eq!(
                    f["offset"].as_u64().unwrap() as usize,
                    seen.text.chars().count(),
                    "no gap, no repeat: {f}"
                );
                seen.text.push_str(f["delta"].as_str().unwrap());
                seen.chunks += 1;
            }
            "stream_end" if f["stream_id"] == seen.stream_id.as_str() => {
                seen.end = Some(f);
                return seen;
            }
            "stream_error" if f["stream_id"] == seen.stream_id.as_str() => {
                seen.error = Some(f);
                return seen;
            }
            "message" if f["author"]["kind"] == "agent" => seen.messages.push(f),
            _ => {}
        }
    }
}

#[tokio::test]
async fn an_answer_streams_to_two_subscribers_and_is_stored_once_for_every_wire_format() {
    let (fake, url) = FakeLlm::start().await;
    let app = agent_app(
        &url,
        vec![
            agent("gpt", "openai", "ok"),
            agent("claude", "anthropic", "ok"),
            agent("gem", "gemini", "ok"),
        ],
    )
    .await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let thread = app.create_thread(&alice, "agents").await;
    app.add_member(&alice, &thread, "bob").await;
    let mut a = app.ws(&alice).await;
    let mut b = app.ws(&bob).await;
    a.subscribe(&thread, None).await;
    b.subscribe(&thread, None).await;
    for (i, agent_id) in ["gpt", "claude", "gem"].iter().enumerate() {
        a.send(json!({"type":"send","thread":thread,"client_id":format!("q{i}"),"body":"hello agents","agent":agent_id})).await;
        let (sa, sb) = tokio::join!(follow_stream(&mut a), follow_stream(&mut b));
        for s in [&sa, &sb] {
            assert_eq!(s.text, FakeLlm::full_text("ok"), "{agent_id}");
            let end = s.end.as_ref().expect("stream_end");
            assert_eq!(end["message"]["body"], FakeLlm::full_text("ok"));
            assert_eq!(end["message"]["author"]["kind"], "agent");
            assert_eq!(end["message"]["author"]["id"], *agent_id);
        }
        assert_eq!(sa.stream_id, sb.stream_id);
    }
    let messages = app.messages(&alice, &thread, "").await;
    let agent_bodies: Vec<&Value> = messages
        .iter()
        .filter(|m| m["author"]["kind"] == "agent")
        .collect();
    assert_eq!(agent_bodies.len(), 3, "each answer stored exactly once");
    assert_eq!(fake.count("ok"), 3);
    // The provider saw the persona prompt and the thread, attributed by name.
    let bodies = fake.bodies.lock().unwrap().clone();
    assert!(
        bodies[0]["messages"]
            .to_string()
            .contains("alice: hello agents"),
        "{}",
        bodies[0]
    );
    assert!(
        bodies[1]["system"]
            .as_str()
            .unwrap()
            .contains("You are claude")
    );
    assert!(
        bodies[2]["systemInstruction"]
            .to_string()
            .contains("You are gem")
    );
    // Token accounting reaches the metrics.
    assert!(
        app.metric("llm_tokens_total{direction=\"completion\"}")
            .await
            >= 15.0
    );
    assert!(
        app.metric("llm_requests_total{provider=\"anthropic\",model=\"ok\",outcome=\"ok\"}")
            .await
            >= 1.0
    );
    assert!(app.metric("llm_first_token_seconds_count").await >= 3.0);
}

#[tokio::test]
async fn a_three_agent_two_round_debate_completes_in_order() {
    let (_fake, url) = FakeLlm::start().await;
    let app = agent_app(
        &url,
        vec![
            agent("a1", "openai", "ok"),
            agent("a2", "anthropic", "ok"),
            agent("a3", "gemini", "ok"),
        ],
    )
    .await;
    let alice = app.register("alice").await;
    let thread = app.create_thread(&alice, "debate").await;
    let mut ws = app.ws(&alice).await;
    ws.subscribe(&thread, None).await;
    ws.send(json!({"type":"debate","thread":thread,"client_id":"d1","topic":"Is tea better than coffee?","agents":["a1","a2","a3"],"rounds":2})).await;
    let mut order = Vec::new();
    for _ in 0..6 {
        let s = follow_stream(&mut ws).await;
        let end = s.end.expect("each turn ends");
        order.push(end["message"]["author"]["id"].as_str().unwrap().to_string());
    }
    assert_eq!(order, ["a1", "a2", "a3", "a1", "a2", "a3"]);
    let messages = app.messages(&alice, &thread, "").await;
    assert_eq!(messages.len(), 7, "topic + six turns");
    assert_eq!(messages[0]["body"], "Is tea better than coffee?");
    let authors: Vec<&str> = messages[1..]
        .iter()
        .map(|m| m["author"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(authors, ["a1", "a2", "a3", "a1", "a2", "a3"]);
    // Repeating the debate frame never starts it again.
    ws.send(json!({"type":"debate","thread":thread,"client_id":"d1","topic":"Is tea better than coffee?","agents":["a1","a2","a3"],"rounds":2})).await;
    ws.recv_until("ack", |f| f["type"] == "ack" && f["status"] == "persisted")
        .await;
    assert!(
        ws.recv_within(Duration::from_millis(500))
            .await
            .is_none_or(|f| f["type"] != "stream_start")
    );
}

#[tokio::test]
async fn cancel_stops_a_stream_and_keeps_its_partial_text_as_incomplete() {
    let (_fake, url) = FakeLlm::start().await;
    let app = agent_app(&url, vec![agent("slow", "openai", "slow-200-20")]).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let thread = app.create_thread(&alice, "cancel").await;
    app.add_member(&alice, &thread, "bob").await;
    let mut a = app.ws(&alice).await;
    a.subscribe(&thread, None).await;
    a.send(json!({"type":"send","thread":thread,"client_id":"q","body":"go","agent":"slow"}))
        .await;
    let start = a.recv_type("stream_start").await;
    let stream_id = start["stream_id"].as_str().unwrap().to_string();
    a.recv_type("stream_chunk").await;
    // Any member may cancel: Bob does, from his own connection.
    let mut b = app.ws(&bob).await;
    b.send(json!({"type":"cancel","stream_id":stream_id})).await;
    let err = a
        .recv_until("stream_error", |f| f["type"] == "stream_error")
        .await;
    assert_eq!(err["code"], "cancelled");
    let stored = a
        .recv_until("incomplete message", |f| {
            f["type"] == "message" && f["author"]["kind"] == "agent"
        })
        .await;
    assert_eq!(stored["status"], "incomplete");
    assert!(!stored["body"].as_str().unwrap().is_empty());
    // A stranger cannot cancel, and unknown streams are not found.
    let carol = app.register("carol").await;
    let mut c = app.ws(&carol).await;
    c.send(json!({"type":"cancel","stream_id":"nope"})).await;
    assert_eq!(c.recv_type("error").await["code"], "not_found");
}

#[tokio::test]
async fn every_provider_failure_ends_in_stream_error_or_recovers() {
    let (fake, url) = FakeLlm::start().await;
    let mut fallback = agent("fb", "anthropic", "fail-500");
    fallback.fallback_model = Some("ok".into());
    let app = agent_app(
        &url,
        vec![
            agent("oe", "openai", "error-event"),
            agent("ae", "anthropic", "error-event"),
            agent("ge", "gemini", "error-event"),
            agent("od", "openai", "disconnect"),
            agent("ad", "anthropic", "disconnect"),
            agent("gd", "gemini", "disconnect"),
            agent("hang", "openai", "hang"),
            agent("rl", "gemini", "ratelimit-once"),
            fallback,
        ],
    )
    .await;
    let alice = app.register("alice").await;
    let thread = app.create_thread(&alice, "failures").await;
    let mut ws = app.ws(&alice).await;
    ws.subscribe(&thread, None).await;
    for (i, (agent_id, code)) in [
        ("oe", "provider_error"),
        ("ae", "provider_error"),
        ("ge", "provider_error"),
        ("od", "provider_error"),
        ("ad", "provider_error"),
        ("gd", "provider_error"),
        ("hang", "timeout"),
    ]
    .iter()
    .enumerate()
    {
        ws.send(json!({"type":"send","thread":thread,"client_id":format!("f{i}"),"body":"try","agent":agent_id})).await;
        let s = follow_stream(&mut ws).await;
        let err = s
            .error
            .unwrap_or_else(|| panic!("{agent_id} must end in stream_error"));
        assert_eq!(err["code"], *code, "{agent_id}: {err}");
        if *agent_id != "hang" {
            // The partial text of a stream that broke mid-way is stored, marked incomplete.
            let m = ws
                .recv_until("partial", |f| {
                    f["type"] == "message" && f["author"]["id"] == *agent_id
                })
                .await;
            assert_eq!(
                (m["status"].as_str(), m["body"].as_str()),
                (Some("incomplete"), Some("Hello from"))
            );
        }
    }
    // 429 with Retry-After before the first token: retried, then it answers.
    let started = std::time::Instant::now();
    ws.send(json!({"type":"send","thread":thread,"client_id":"rl","body":"try","agent":"rl"}))
        .await;
    let s = follow_stream(&mut ws).await;
    assert!(s.end.is_some(), "{:?}", s.error);
    assert_eq!(fake.count("ratelimit-once"), 2);
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "Retry-After was honoured"
    );
    // A failing model falls back to the agent's fallback model.
    ws.send(json!({"type":"send","thread":thread,"client_id":"fb","body":"try","agent":"fb"}))
        .await;
    let s = follow_stream(&mut ws).await;
    assert_eq!(s.text, FakeLlm::full_text("ok"));
    assert!(fake.count("fail-500") >= 1);
    // The connection survived all of it.
    ws.send(json!({"type":"ping","nonce":1})).await;
    assert_eq!(ws.recv_type("pong").await["nonce"], 1);
}

#[tokio::test]
async fn the_offline_agent_answers_with_no_network_and_keys_are_never_listed() {
    let app = spawn_app().await;
    let alice = app.register("alice").await;
    let list: Value = app
        .get("/api/agents", Some(&alice.token))
        .await
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = list["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["anima", "neo", "nexus"]);
    assert_eq!(
        list["agents"][0],
        json!({"id": "anima", "name": "Anima", "provider": "local", "model": "offline", "colour": "#b5487a"})
    );
    let thread = app.create_thread(&alice, "offline").await;
    let mut ws = app.ws(&alice).await;
    ws.subscribe(&thread, None).await;
    ws.send(json!({"type":"send","thread":thread,"client_id":"q","body":"Are you there?","agent":"anima"})).await;
    let s = follow_stream(&mut ws).await;
    assert!(s.chunks > 1, "streamed, not dumped");
    assert!(s.text.contains("offline agent"), "{}", s.text);
    assert_eq!(s.end.unwrap()["message"]["body"].as_str().unwrap(), s.text);
}

#[tokio::test]
async fn keys_never_appear_in_the_agent_list() {
    let (_fake, url) = FakeLlm::start().await;
    let app = agent_app(&url, vec![agent("gpt", "openai", "ok")]).await;
    let alice = app.register("alice").await;
    let text = app
        .get("/api/agents", Some(&alice.token))
        .await
        .text()
        .await
        .unwrap();
    assert!(!text.contains("sk-test"), "{text}");
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap()["agents"][0]["provider"],
        "openai"
    );
}

#[tokio::test]
async fn a_user_may_run_at_most_three_agent_streams_at_once() {
    let (_fake, url) = FakeLlm::start().await;
    let app = agent_app(&url, vec![agent("slow", "openai", "slow-100-20")]).await;
    let alice = app.register("alice").await;
    let thread = app.create_thread(&alice, "busy").await;
    let mut ws = app.ws(&alice).await;
    for i in 0..3 {
        ws.send(json!({"type":"send","thread":thread,"client_id":format!("s{i}"),"body":"go","agent":"slow"})).await;
        ws.recv_until("ack", |f| f["type"] == "ack" && f["status"] == "persisted")
            .await;
    }
    ws.send(json!({"type":"send","thread":thread,"client_id":"s3","body":"go","agent":"slow"}))
        .await;
    let e = ws.recv_type("error").await;
    assert_eq!(
        (e["code"].as_str(), e["client_id"].as_str()),
        (Some("rate_limited"), Some("s3"))
    );
    assert!(e["message"].as_str().unwrap().contains("at most 3"));
}
