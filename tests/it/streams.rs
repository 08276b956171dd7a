//! Resumable, exactly-once agent streams: resume mid-answer with a snapshot, generation that
//! outlives its requester, resends that never reach the provider twice, streams that survive a
//! database outage, and SIGTERM mid-stream.

use std::time::Duration;

use serde_json::json;

use crate::{
    agents::{agent, agent_app, follow_known, follow_stream},
    support::{
        TestDb,
        fake_llm::FakeLlm,
        fault_proxy::{FaultProxy, Mode},
        start, test_settings,
    },
};

const SLOW: &str = "slow-200-50"; // 200 chunks over 10 s

#[tokio::test]
async fn a_client_that_leaves_at_chunk_50_and_returns_at_chunk_120_ends_with_the_full_text() {
    let (fake, url) = FakeLlm::start().await;
    let app = agent_app(&url, vec![agent("slow", "openai", SLOW)]).await;
    let alice = app.register("alice").await;
    let thread = app.create_thread(&alice, "resume").await;
    let mut ws = app.ws(&alice).await;
    ws.subscribe(&thread, None).await;
    ws.send(json!({"type":"send","thread":thread,"client_id":"q","body":"tell me a long story","agent":"slow"})).await;
    let stream_id = ws.recv_type("stream_start").await["stream_id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut text = String::new();
    while text.split_whitespace().count() < 50 {
        let f = ws.recv_type("stream_chunk").await;
        assert_eq!(f["offset"].as_u64().unwrap() as usize, text.chars().count());
        text.push_str(f["delta"].as_str().unwrap());
    }
    drop(ws); // gone at chunk ~50
    tokio::time::sleep(Duration::from_millis(70 * 50)).await; // until ~chunk 120
    let mut ws = app.ws(&alice).await;
    let last_seq = 1; // the question
    ws.subscribe(&thread, Some(last_seq)).await;
    let seen = follow_stream(&mut ws).await;
    assert_eq!(seen.stream_id, stream_id);
    assert!(seen.end.is_some());
    assert_eq!(
        seen.text,
        FakeLlm::full_text(SLOW),
        "identical to the provider's full text"
    );
    assert!(seen.text.starts_with(&text));
    assert_eq!(fake.count(SLOW), 1);
}

#[tokio::test]
async fn generation_continues_when_the_requester_disconnects() {
    let (_fake, url) = FakeLlm::start().await;
    let app = agent_app(&url, vec![agent("slow", "anthropic", "slow-40-20")]).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let thread = app.create_thread(&alice, "detached").await;
    app.add_member(&alice, &thread, "bob").await;
    let mut b = app.ws(&bob).await;
    b.subscribe(&thread, None).await;
    let mut a = app.ws(&alice).await;
    a.send(json!({"type":"send","thread":thread,"client_id":"q","body":"go","agent":"slow"}))
        .await;
    a.recv_until("ack", |f| f["type"] == "ack" && f["status"] == "persisted")
        .await;
    drop(a);
    let seen = follow_stream(&mut b).await;
    assert_eq!(seen.text, FakeLlm::full_text("slow-40-20"));
    let stored = app.messages(&bob, &thread, "").await;
    assert_eq!(stored.last().unwrap()["body"].as_str().unwrap(), seen.text);
}

#[tokio::test]
async fn resends_never_reach_the_provider_twice() {
    let (fake, url) = FakeLlm::start().await;
    let app = agent_app(&url, vec![agent("g", "gemini", "slow-20-20")]).await;
    let alice = app.register("alice").await;
    let thread = app.create_thread(&alice, "once").await;
    let send =
        json!({"type":"send","thread":thread,"client_id":"same","body":"answer once","agent":"g"});
    let mut ws = app.ws(&alice).await;
    ws.send(send.clone()).await;
    let first = ws
        .recv_until("ack", |f| f["type"] == "ack" && f["status"] == "persisted")
        .await;
    drop(ws);
    // After a reconnect, the same send again (twice), and once more over HTTP.
    let mut ws = app.ws(&alice).await;
    ws.subscribe(&thread, Some(0)).await;
    ws.send(send.clone()).await;
    ws.send(send).await;
    let again = ws
        .recv_until("ack", |f| f["type"] == "ack" && f["status"] == "persisted")
        .await;
    assert_eq!(again["seq"], first["seq"]);
    let r = app
        .post(
            &format!("/api/threads/{thread}/messages"),
            Some(&alice.token),
            json!({"client_id":"same","body":"answer once","agent":"g"}),
        )
        .await;
    assert_eq!(r.status(), 200);
    // Let the answer finish, then count.
    let agent_msg = ws
        .recv_until("the answer", |f| {
            f["type"] == "message" && f["author"]["kind"] == "agent"
        })
        .await;
    assert_eq!(agent_msg["body"], FakeLlm::full_text("slow-20-20"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(fake.count("slow-20-20"), 1, "exactly one provider request");
    let agents = app
        .messages(&alice, &thread, "")
        .await
        .iter()
        .filter(|m| m["author"]["kind"] == "agent")
        .count();
    assert_eq!(agents, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_during_a_stream_loses_nothing() {
    let (fake, url) = FakeLlm::start().await;
    let db = TestDb::postgres().await;
    let proxy = FaultProxy::start("127.0.0.1:5432".parse().unwrap()).await;
    let mut settings = test_settings(&db.url_via(proxy.port));
    settings.agents = vec![agent("slow", "openai", "slow-60-50")];
    settings.providers.openai_base_url = Some(format!("{url}/v1"));
    settings.providers.openai_api_key = Some(emergence::settings::Secret::new("k"));
    let direct = db.url();
    let app = start(settings, db, true).await;
    let alice = app.register("alice").await;
    let thread = app.create_thread(&alice, "outage").await;
    let mut ws = app.ws(&alice).await;
    ws.subscribe(&thread, None).await;
    ws.send(json!({"type":"send","thread":thread,"client_id":"q","body":"go","agent":"slow"}))
        .await;
    let collect = async {
        let seen = follow_stream(&mut ws).await;
        (seen, ws)
    };
    let fault = async {
        tokio::time::sleep(Duration::from_millis(800)).await;
        proxy.set(Mode::Refuse);
        proxy.reset_all();
        tokio::time::sleep(Duration::from_secs(4)).await; // the stream ends while the database is down
        proxy.set(Mode::Pass);
    };
    let ((seen, mut ws), ()) = tokio::join!(collect, fault);
    assert_eq!(seen.text, FakeLlm::full_text("slow-60-50"));
    let end = seen.end.expect("stream_end once the answer is stored");
    assert_eq!(end["message"]["body"], seen.text.as_str());
    // stream_end first, then the stored message.
    assert!(
        seen.messages.is_empty(),
        "the message frame comes after stream_end"
    );
    let stored = ws
        .recv_until("stored answer", |f| {
            f["type"] == "message" && f["author"]["kind"] == "agent"
        })
        .await;
    assert_eq!(stored["id"], end["message"]["id"]);
    let pool = sqlx::PgPool::connect(&direct).await.unwrap();
    let rows: Vec<(String,)> =
        sqlx::query_as("SELECT body FROM messages WHERE author_kind = 'agent'")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(rows, vec![(seen.text.clone(),)], "stored exactly once");
    assert_eq!(fake.count("slow-60-50"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_stream_interrupts_and_stores_the_partial_answer() {
    let (_fake, url) = FakeLlm::start().await;
    let mut app = agent_app(&url, vec![agent("slow", "openai", SLOW)]).await;
    let alice = app.register("alice").await;
    let thread = app.create_thread(&alice, "drain").await;
    let mut ws = app.ws(&alice).await;
    ws.subscribe(&thread, None).await;
    ws.send(json!({"type":"send","thread":thread,"client_id":"q","body":"go","agent":"slow"}))
        .await;
    let stream_id = ws.recv_type("stream_start").await["stream_id"]
        .as_str()
        .unwrap()
        .to_string();
    let first = ws.recv_type("stream_chunk").await;
    app.trigger_shutdown();
    let seen = follow_known(&mut ws, &stream_id, first["delta"].as_str().unwrap()).await;
    let err = seen
        .error
        .expect("an interrupted stream ends in stream_error");
    assert_eq!(err["code"], "interrupted");
    assert_eq!(ws.close_code().await, Some(1012));
    app.wait_stopped().await;
    // Restart on the same database: the partial answer is there, once, marked incomplete.
    let db = app.take_db();
    let url2 = db.url();
    let app = start(test_settings(&url2), db, true).await;
    let agent_msgs: Vec<_> = app
        .messages(&alice, &thread, "")
        .await
        .into_iter()
        .filter(|m| m["author"]["kind"] == "agent")
        .collect();
    assert_eq!(agent_msgs.len(), 1);
    assert_eq!(agent_msgs[0]["status"], "incomplete");
    assert!(FakeLlm::full_text(SLOW).starts_with(agent_msgs[0]["body"].as_str().unwrap()));
    assert!(!agent_msgs[0]["body"].as_str().unwrap().is_empty());
}
