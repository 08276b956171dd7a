//! What a socket that attaches to a running answer is told besides its text: a failed try that
//! waits to be retried ("retrying in N s", with the time left), and the model that really
//! answers once the agent's fallback model took over (also announced to the watchers).

use std::time::Duration;

use serde_json::json;

use crate::agents::{agent, agent_app, follow_known};
use crate::support::fake_llm::FakeLlm;

#[tokio::test]
async fn a_late_subscriber_is_told_that_the_answer_waits_to_be_retried() {
    let (_fake, url) = FakeLlm::start().await;
    let app = agent_app(&url, vec![agent("rl", "gemini", "ratelimit-once")]).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let thread = app.create_thread(&alice, "retry").await;
    app.add_member(&alice, &thread, "bob").await;
    let mut a = app.ws(&alice).await;
    a.subscribe(&thread, None).await;
    a.send(json!({"type":"send","thread":thread,"client_id":"q","body":"hi","agent":"rl"}))
        .await;
    let start = a.recv_type("stream_start").await;
    let retry = a.recv_type("stream_retry").await;
    assert_eq!(
        (retry["attempt"].as_u64(), retry["retry_in_ms"].as_u64()),
        (Some(1), Some(1000))
    );
    // Bob opens the thread while the answer waits: he is told so, with the time left.
    let mut b = app.ws(&bob).await;
    b.subscribe(&thread, None).await;
    let late_start = b.recv_type("stream_start").await;
    assert_eq!(late_start["stream_id"], start["stream_id"]);
    let snapshot = b.recv_type("stream_snapshot").await;
    assert_eq!(snapshot["text"], "");
    let late_retry = b.recv_within(Duration::from_millis(500)).await.unwrap();
    assert_eq!(late_retry["type"], "stream_retry", "{late_retry}");
    assert_eq!(late_retry["stream_id"], start["stream_id"]);
    assert_eq!(late_retry["attempt"], 1);
    assert_eq!(late_retry["error_class"], "rate_limited");
    let left = late_retry["retry_in_ms"].as_u64().unwrap();
    assert!(
        (1..1000).contains(&left),
        "the time left, not the whole wait: {left}"
    );
    let seen = follow_known(&mut b, start["stream_id"].as_str().unwrap(), "").await;
    assert_eq!(seen.text, FakeLlm::full_text("ok"));
    // Once text flows, a socket that attaches is not told of a retry any more.
    let mut b2 = app.ws(&bob).await;
    b2.subscribe(&thread, None).await;
    while let Some(f) = b2.recv_within(Duration::from_millis(300)).await {
        assert_ne!(f["type"], "stream_retry", "{f}");
    }
}

#[tokio::test]
async fn the_fallback_model_is_named_to_watchers_and_to_late_subscribers() {
    let (fake, url) = FakeLlm::start().await;
    let mut fb = agent("fb", "anthropic", "missing");
    fb.fallback_model = Some("slow-20-40".into());
    let app = agent_app(&url, vec![fb]).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let thread = app.create_thread(&alice, "fallback").await;
    app.add_member(&alice, &thread, "bob").await;
    let mut a = app.ws(&alice).await;
    a.subscribe(&thread, None).await;
    a.send(json!({"type":"send","thread":thread,"client_id":"q","body":"hi","agent":"fb"}))
        .await;
    let start = a.recv_type("stream_start").await;
    assert_eq!(start["agent"]["model"], "missing");
    // The same stream again, now naming the fallback model, before any text.
    let again = a
        .recv_until("the model change", |f| {
            f["type"] == "stream_start" || f["type"] == "stream_chunk"
        })
        .await;
    assert_eq!(again["type"], "stream_start", "{again}");
    assert_eq!(again["stream_id"], start["stream_id"]);
    assert_eq!(again["agent"]["model"], "slow-20-40");
    assert_eq!(again["agent"]["id"], "fb");
    let first = a.recv_type("stream_chunk").await;
    // Bob, arriving mid-answer, is told the model that answers.
    let mut b = app.ws(&bob).await;
    b.subscribe(&thread, None).await;
    let late = b.recv_type("stream_start").await;
    assert_eq!(late["stream_id"], start["stream_id"]);
    assert_eq!(late["agent"]["model"], "slow-20-40");
    let stream_id = start["stream_id"].as_str().unwrap();
    let seen = follow_known(&mut a, stream_id, first["delta"].as_str().unwrap()).await;
    assert_eq!(seen.text, FakeLlm::full_text("slow-20-40"));
    let stored = seen.end.expect("the fallback answers")["message"].clone();
    assert_eq!(stored["model"], "slow-20-40");
    assert_eq!(fake.count("missing"), 1);
}
