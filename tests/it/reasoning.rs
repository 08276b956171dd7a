//! Reasoning and long contexts (issue #18). Reasoning ("thinking") streamed by a provider in any
//! of its real wire shapes reaches watchers as `stream_reasoning` frames, never as answer text;
//! it is stored with the answer (history shows it) and a socket that attaches mid-stream gets it
//! in its snapshot. A thread that outgrows an agent's context window gets a stored summary of
//! its older turns, reused by the next turn and extended when more fall out: the provider sees
//! the summary, not the dropped turns. Agents show their colour; a persona's fallback may be
//! another agent.

use std::time::Duration;

use emergence::agents::AgentSettings;
use reqwest::Method;
use serde_json::{Value, json};

use crate::agents::{agent, use_fake_providers};
use crate::support::{TestApp, TestDb, WsClient, accounts::call, fake_llm::FakeLlm, spawn_on};

/// What one socket saw of one stream: its text and its reasoning, each rebuilt by offset.
#[derive(Debug, Default)]
struct Thought {
    stream_id: String,
    text: String,
    reasoning: String,
    end: Option<Value>,
    error: Option<Value>,
}

/// Follow the next stream (or the one already named in `seen`) to its end.
async fn follow(ws: &mut WsClient, mut seen: Thought) -> Thought {
    loop {
        let f = ws
            .recv_within(Duration::from_secs(20))
            .await
            .expect("stream frames keep coming");
        let mine = f["stream_id"] == seen.stream_id.as_str();
        match f["type"].as_str().unwrap() {
            "stream_start" if seen.stream_id.is_empty() => {
                seen.stream_id = f["stream_id"].as_str().unwrap().into()
            }
            "stream_snapshot" if mine => {
                seen.text = f["text"].as_str().unwrap().into();
                seen.reasoning = f["reasoning"].as_str().unwrap_or("").into();
            }
            "stream_chunk" if mine => {
                assert_eq!(
                    f["offset"].as_u64().unwrap() as usize,
                    seen.text.chars().count(),
                    "{f}"
                );
                seen.text.push_str(f["delta"].as_str().unwrap());
            }
            "stream_reasoning" if mine => {
                assert_eq!(
                    f["offset"].as_u64().unwrap() as usize,
                    seen.reasoning.chars().count(),
                    "no gap, no repeat: {f}"
                );
                seen.reasoning.push_str(f["delta"].as_str().unwrap());
            }
            "stream_end" if mine => {
                seen.end = Some(f);
                return seen;
            }
            "stream_error" if mine => {
                seen.error = Some(f);
                return seen;
            }
            _ => {}
        }
    }
}

fn with(mut a: AgentSettings, edit: impl FnOnce(&mut AgentSettings)) -> AgentSettings {
    edit(&mut a);
    a
}

async fn app_on(db: TestDb, url: &str, agents: Vec<AgentSettings>) -> TestApp {
    let url = url.to_string();
    spawn_on(db, move |s| {
        s.agents = agents;
        use_fake_providers(s, &url);
        s.providers.summary_timeout_ms = 800;
    })
    .await
}

/// Every reasoning shape: (agent id, provider, model, reasoning tokens reported).
const SHAPES: [(&str, &str, &str, Option<i64>); 7] = [
    ("o-think", "openai", "think", Some(7)),
    ("o-alt", "openai", "think-alt", Some(7)),
    ("o-json", "openai", "think-json", Some(7)),
    ("a-think", "anthropic", "think", None),
    ("a-json", "anthropic", "think-json", None),
    ("g-think", "gemini", "think", Some(7)),
    ("g-json", "gemini", "think-json", Some(7)),
];

async fn reasoning_is_streamed_and_stored_apart(db: TestDb) {
    let (_fake, url) = FakeLlm::start().await;
    let agents = SHAPES.iter().map(|(id, p, m, _)| agent(id, p, m)).collect();
    let app = app_on(db, &url, agents).await;
    let alice = app.register("alice").await;
    let thread = app.create_thread(&alice, "thinking").await;
    let mut ws = app.ws(&alice).await;
    ws.subscribe(&thread, None).await;
    let answer = FakeLlm::full_text("ok");
    for (i, (id, _, model, tokens)) in SHAPES.iter().enumerate() {
        ws.send(json!({"type":"send","thread":thread,"client_id":format!("q{i}"),"body":"Think first.","agent":id})).await;
        let seen = follow(&mut ws, Thought::default()).await;
        let thinking = FakeLlm::full_reasoning(model);
        assert!(seen.error.is_none(), "{id}: {:?}", seen.error);
        assert_eq!(seen.reasoning, thinking, "{id}: reasoning frames");
        assert_eq!(
            seen.text, answer,
            "{id}: the answer alone, no reasoning in it"
        );
        let end = seen.end.unwrap();
        assert_eq!(end["message"]["body"], answer.as_str(), "{id}");
        assert_eq!(end["message"]["reasoning"], thinking.as_str(), "{id}");
        assert_eq!(end["message"]["reasoning_tokens"].as_i64(), *tokens, "{id}");
        // Anthropic's signature and redacted block never show.
        assert!(!end.to_string().contains("EqQB") && !end.to_string().contains("EmwK"));
    }
    // History (a reload) shows each answer's reasoning apart from its body.
    let messages = app.messages(&alice, &thread, "").await;
    let answers: Vec<&Value> = messages
        .iter()
        .filter(|m| m["author"]["kind"] == "agent")
        .collect();
    assert_eq!(answers.len(), SHAPES.len());
    for (m, (id, _, model, _)) in answers.iter().zip(SHAPES) {
        assert_eq!(m["author"]["id"], id);
        assert_eq!(m["body"], answer.as_str());
        assert_eq!(m["reasoning"], FakeLlm::full_reasoning(model).as_str());
    }
    // Gemini bills thoughts: they count as completion tokens (5 + 7).
    let gem = answers
        .iter()
        .find(|m| m["author"]["id"] == "g-think")
        .unwrap();
    assert_eq!(gem["completion_tokens"], 12);
}

#[tokio::test]
async fn reasoning_in_every_wire_shape_streams_apart_and_is_stored_with_the_answer_on_sqlite() {
    reasoning_is_streamed_and_stored_apart(TestDb::sqlite()).await;
}

#[tokio::test]
async fn reasoning_in_every_wire_shape_streams_apart_and_is_stored_with_the_answer_on_postgres() {
    reasoning_is_streamed_and_stored_apart(TestDb::postgres().await).await;
}

#[tokio::test]
async fn a_socket_that_attaches_mid_reasoning_gets_it_in_its_snapshot_then_the_rest() {
    let (_fake, url) = FakeLlm::start().await;
    let model = "think-slow-30-40";
    let app = app_on(TestDb::sqlite(), &url, vec![agent("slow", "openai", model)]).await;
    let alice = app.register("alice").await;
    let thread = app.create_thread(&alice, "resume").await;
    let mut a = app.ws(&alice).await;
    a.subscribe(&thread, None).await;
    a.send(json!({"type":"send","thread":thread,"client_id":"q","body":"Think slowly.","agent":"slow"}))
        .await;
    let start = a.recv_type("stream_start").await;
    let stream_id = start["stream_id"].as_str().unwrap().to_string();
    // Some reasoning has streamed; then a second socket (a reload) attaches.
    let mut early = String::new();
    for _ in 0..3 {
        let f = a.recv_type("stream_reasoning").await;
        assert_eq!(
            f["offset"].as_u64().unwrap() as usize,
            early.chars().count()
        );
        early.push_str(f["delta"].as_str().unwrap());
    }
    let mut b = app.ws(&alice).await;
    b.subscribe(&thread, None).await;
    let known = Thought {
        stream_id: stream_id.clone(),
        reasoning: early,
        ..Thought::default()
    };
    let (sa, sb) = tokio::join!(follow(&mut a, known), follow(&mut b, Thought::default()));
    let full = FakeLlm::full_reasoning(model);
    assert_eq!(sb.stream_id, stream_id);
    assert_eq!(
        sb.reasoning, full,
        "snapshot + live reasoning: nothing missing, nothing repeated"
    );
    assert_eq!(sb.text, FakeLlm::full_text("ok"));
    assert_eq!(sa.reasoning, full);
    assert_eq!(sb.end.unwrap()["message"]["reasoning"], full.as_str());
}

#[tokio::test]
async fn a_socket_on_another_instance_gets_the_reasoning_live_and_after_attaching_mid_stream() {
    let (_fake, url) = FakeLlm::start().await;
    let model = "think-slow-30-40";
    let db = TestDb::postgres().await;
    let apps = crate::support::cluster::instances_on(&db, 2, "redis://127.0.0.1:6379", |s| {
        s.agents = vec![agent("slow", "openai", model)];
        use_fake_providers(s, &url);
    })
    .await;
    let alice = apps[0].register("alice").await;
    let thread = apps[0].create_thread(&alice, "two instances").await;
    let mut a = apps[0].ws(&alice).await;
    let mut b = apps[1].ws(&alice).await;
    a.subscribe(&thread, None).await;
    b.subscribe(&thread, None).await;
    a.send(json!({"type":"send","thread":thread,"client_id":"q","body":"Think.","agent":"slow"}))
        .await;
    // `b` (instance B) follows from the start; `c` attaches on B mid-reasoning.
    let start = b.recv_type("stream_start").await;
    let stream_id = start["stream_id"].as_str().unwrap().to_string();
    let mut early = String::new();
    for _ in 0..3 {
        let f = b.recv_type("stream_reasoning").await;
        assert_eq!(
            f["offset"].as_u64().unwrap() as usize,
            early.chars().count()
        );
        early.push_str(f["delta"].as_str().unwrap());
    }
    let mut c = apps[1].ws(&alice).await;
    c.subscribe(&thread, None).await;
    let known = Thought {
        stream_id,
        reasoning: early,
        ..Thought::default()
    };
    let (sb, sc) = tokio::join!(follow(&mut b, known), follow(&mut c, Thought::default()));
    let full = FakeLlm::full_reasoning(model);
    assert_eq!(sb.reasoning, full);
    assert_eq!(
        sc.reasoning, full,
        "snapshot on a mirror + live: nothing missing or repeated"
    );
    assert_eq!(sc.text, FakeLlm::full_text("ok"));
}

/// Post `n` long user turns (`{tag}-{i}: ...`), none asking an agent.
async fn post_turns(
    app: &TestApp,
    user: &crate::support::TestUser,
    thread: &str,
    tag: &str,
    n: usize,
) {
    for i in 1..=n {
        let body = format!(
            "{tag}-{i}: we weigh the plan once more. {}",
            "Details of the plan that only matter to this turn. ".repeat(3)
        );
        let (status, v) = call(
            app,
            Method::POST,
            &format!("/api/threads/{thread}/messages"),
            &user.token,
            Some(json!({"client_id": format!("{tag}{i}"), "body": body})),
        )
        .await;
        assert_eq!(status, 201, "{v}");
    }
}

/// Ask `agent` over the socket and follow its answer to the end.
async fn ask(ws: &mut WsClient, thread: &str, client_id: &str, body: &str, agent: &str) -> Value {
    ws.send(json!({"type":"send","thread":thread,"client_id":client_id,"body":body,"agent":agent}))
        .await;
    let seen = follow(ws, Thought::default()).await;
    assert!(seen.error.is_none(), "{:?}", seen.error);
    seen.end.unwrap()["message"].clone()
}

fn request_text(body: &Value) -> String {
    body.to_string()
}

async fn long_threads_are_summarised_and_the_summary_reused(db: TestDb) {
    let (fake, url) = FakeLlm::start().await;
    let small = with(agent("gpt", "openai", "ok"), |a| {
        a.context_tokens = Some(120)
    });
    let app = app_on(db, &url, vec![small]).await;
    let alice = app.register("alice").await;
    let thread = app.create_thread(&alice, "long").await;
    let mut ws = app.ws(&alice).await;
    ws.subscribe(&thread, None).await;
    post_turns(&app, &alice, &thread, "early", 8).await;
    let first = ask(&mut ws, &thread, "ask1", "What did we decide?", "gpt").await;
    let bodies = fake.bodies.lock().unwrap().clone();
    assert_eq!(bodies.len(), 2, "one summary call, then the answer");
    let (summary_call, answer_call) = (request_text(&bodies[0]), request_text(&bodies[1]));
    assert!(summary_call.contains("You summarise conversations"));
    assert!(summary_call.contains("early-1:") && summary_call.contains("early-8:"));
    // The answer's provider sees the summary and the question, not the dropped turns.
    assert!(answer_call.contains(FakeLlm::SUMMARY), "{answer_call}");
    assert!(answer_call.contains("messages 1 to 8"), "{answer_call}");
    assert!(answer_call.contains("What did we decide?"));
    assert!(!answer_call.contains("early-"), "{answer_call}");
    let marker = &first["context_summary"];
    assert_eq!(marker["through_seq"], 8, "{first}");
    assert_eq!(marker["method"], "provider");
    assert_eq!(marker["body"], FakeLlm::SUMMARY);
    // The next turn reuses it: no second summary call, the same marker.
    let second = ask(&mut ws, &thread, "ask2", "And then?", "gpt").await;
    let bodies = fake.bodies.lock().unwrap().clone();
    assert_eq!(
        bodies.len(),
        3,
        "the stored summary is reused, not written again"
    );
    let again = request_text(&bodies[2]);
    assert!(again.contains(FakeLlm::SUMMARY) && again.contains("And then?"));
    assert!(!again.contains("early-"), "{again}");
    assert_eq!(second["context_summary"]["through_seq"], 8);
    // More turns fall out: the summary is extended from the stored one and the new turns only.
    post_turns(&app, &alice, &thread, "later", 6).await;
    let third = ask(&mut ws, &thread, "ask3", "Where are we now?", "gpt").await;
    let bodies = fake.bodies.lock().unwrap().clone();
    assert_eq!(bodies.len(), 5);
    let extend = request_text(&bodies[3]);
    assert!(
        extend.contains("Summary so far") && extend.contains(FakeLlm::SUMMARY),
        "{extend}"
    );
    assert!(
        extend.contains("later-1:") && !extend.contains("early-"),
        "{extend}"
    );
    let through = third["context_summary"]["through_seq"].as_i64().unwrap();
    assert!(through > 8, "{third}");
    assert!(!request_text(&bodies[4]).contains("later-1:"));
    // History shows the markers, on every answer that used a summary.
    let messages = app.messages(&alice, &thread, "").await;
    let markers: Vec<i64> = messages
        .iter()
        .filter_map(|m| m["context_summary"]["through_seq"].as_i64())
        .collect();
    assert_eq!(markers, vec![8, 8, through]);
}

#[tokio::test]
async fn a_long_thread_is_summarised_once_reused_and_extended_on_sqlite() {
    long_threads_are_summarised_and_the_summary_reused(TestDb::sqlite()).await;
}

#[tokio::test]
async fn a_long_thread_is_summarised_once_reused_and_extended_on_postgres() {
    long_threads_are_summarised_and_the_summary_reused(TestDb::postgres().await).await;
}

#[tokio::test]
async fn the_offline_agent_and_a_slow_provider_get_the_extractive_summary() {
    let (fake, url) = FakeLlm::start().await;
    let local = with(agent("offline", "local", "offline"), |a| {
        a.context_tokens = Some(120)
    });
    // `hang-summary`: the fake never finishes a summary for it, but answers normally.
    let slow = with(agent("slow", "openai", "hang-summary"), |a| {
        a.context_tokens = Some(120)
    });
    let app = app_on(TestDb::sqlite(), &url, vec![local, slow]).await;
    let alice = app.register("alice").await;
    let mut ws = app.ws(&alice).await;
    for id in ["offline", "slow"] {
        let thread = app.create_thread(&alice, id).await;
        ws.subscribe(&thread, None).await;
        post_turns(&app, &alice, &thread, "early", 6).await;
        let started = std::time::Instant::now();
        let answer = ask(&mut ws, &thread, "ask", "Summarise for me?", id).await;
        let marker = &answer["context_summary"];
        assert_eq!(marker["method"], "extractive", "{id}: {answer}");
        let body = marker["body"].as_str().unwrap();
        // Each turn's first sentence, by name.
        assert!(
            body.contains("alice: early-6: we weigh the plan once more."),
            "{id}: {body}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{id}: bounded by time"
        );
    }
    assert!(fake.count("hang-summary") >= 2);
}

#[tokio::test]
async fn agents_show_their_colour_and_a_persona_falls_back_to_another_agent() {
    let (fake, url) = FakeLlm::start().await;
    let primary = with(agent("primary", "openai", "missing"), |a| {
        a.colour = Some("#12ab34".into());
        a.fallback_agent = Some("backup".into());
    });
    let backup = agent("backup", "anthropic", "ok");
    let app = app_on(TestDb::sqlite(), &url, vec![primary, backup]).await;
    let alice = app.register("alice").await;
    let (status, list) = call(&app, Method::GET, "/api/agents", &alice.token, None).await;
    assert_eq!(status, 200);
    let agents = list["agents"].as_array().unwrap();
    assert_eq!(agents[0]["colour"], "#12ab34", "{list}");
    assert!(agents[1].get("colour").is_none(), "{list}");
    // The primary's model is missing: the backup agent's provider answers, in primary's name.
    let thread = app.create_thread(&alice, "fallback").await;
    let mut ws = app.ws(&alice).await;
    ws.subscribe(&thread, None).await;
    let message = ask(&mut ws, &thread, "q", "Hello?", "primary").await;
    assert_eq!(message["author"]["id"], "primary");
    assert_eq!(message["body"], FakeLlm::full_text("ok"));
    assert_eq!(message["model"], "ok");
    assert_eq!(fake.count("missing"), 1);
    assert_eq!(fake.count("ok"), 1);
    let calls = fake.calls.lock().unwrap().clone();
    assert!(
        calls.last().unwrap().0.ends_with("/v1/messages"),
        "{calls:?}"
    );
}

async fn admins_name_a_fallback_agent(db: TestDb) {
    let app = crate::support::spawn_on(db, |_| {}).await;
    let admin = app.register("root").await;
    let (status, made) = call(
        &app,
        Method::POST,
        "/api/admin/agents",
        &admin.token,
        Some(json!({"name": "Scout", "model": "offline", "colour": "#aa5500", "fallback_agent": "anima"})),
    )
    .await;
    assert_eq!(status, 201, "{made}");
    assert_eq!(made["fallback_agent"], "anima");
    for (bad, why) in [
        ("nobody", "no such agent"),
        ("scout", "cannot be the agent itself"),
    ] {
        let (status, v) = call(
            &app,
            Method::PATCH,
            "/api/admin/agents/scout",
            &admin.token,
            Some(json!({"fallback_agent": bad})),
        )
        .await;
        assert_eq!(status, 422, "{v}");
        assert_eq!(v["error"]["fields"]["fallback_agent"], why);
    }
    let (status, v) = call(
        &app,
        Method::PATCH,
        "/api/admin/agents/scout",
        &admin.token,
        Some(json!({"fallback_agent": "neo"})),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let (_, list) = call(&app, Method::GET, "/api/admin/agents", &admin.token, None).await;
    let scout = list["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == "scout")
        .cloned()
        .unwrap();
    assert_eq!(scout["fallback_agent"], "neo");
    let (_, agents) = call(&app, Method::GET, "/api/agents", &admin.token, None).await;
    let listed = agents["agents"].as_array().unwrap();
    let colour = |id: &str| listed.iter().find(|a| a["id"] == id).unwrap()["colour"].clone();
    assert_eq!(colour("scout"), "#aa5500");
    assert_eq!(
        colour("anima"),
        "#b5487a",
        "the default personas have colours"
    );
}

#[tokio::test]
async fn admins_name_a_fallback_agent_on_sqlite() {
    admins_name_a_fallback_agent(TestDb::sqlite()).await;
}

#[tokio::test]
async fn admins_name_a_fallback_agent_on_postgres() {
    admins_name_a_fallback_agent(TestDb::postgres().await).await;
}
