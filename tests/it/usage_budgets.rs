//! Budgets (issue #15): a spent budget refuses an ask before any provider call (HTTP body, WS
//! error frame, or the `stream_error` of a debate turn), each with `budget_exceeded` and when
//! it resets (the next UTC midnight for a day, the 1st of next month for a month); admins set
//! the default and per-user overrides; and a user asking on 3 instances at once (PostgreSQL +
//! Redis) passes the budget by at most one answer's worth.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};
use time::{Date, Month, OffsetDateTime};

use crate::{
    agents::{agent, use_fake_providers},
    on_both,
    scale::cluster,
    support::accounts::{call, code, delete_as, get_as},
    support::{TestApp, fake_llm::FakeLlm},
    usage::{ask, priced_app},
};

const REDIS: &str = "redis://127.0.0.1:6379";

fn next_midnight() -> String {
    let d = OffsetDateTime::now_utc().date().next_day().unwrap();
    format!("{d}T00:00:00.000Z")
}

fn next_month() -> String {
    let today = OffsetDateTime::now_utc().date();
    let d = match today.month() {
        Month::December => Date::from_calendar_date(today.year() + 1, Month::January, 1),
        m => Date::from_calendar_date(today.year(), m.next(), 1),
    }
    .unwrap();
    format!("{d}T00:00:00.000Z")
}

async fn post_ask(app: &TestApp, token: &str, thread: &str, client_id: &str) -> (u16, Value) {
    call(
        app,
        Method::POST,
        &format!("/api/threads/{thread}/messages"),
        token,
        Some(json!({"client_id": client_id, "body": "hello", "agent": "gpt"})),
    )
    .await
}

async fn a_spent_budget_refuses_before_any_provider_call(pg: bool) {
    let (fake, url) = FakeLlm::start().await;
    // One answer of the fake is 30 tokens (25 + 5): two fit under 40 (the second starts at 30).
    let app = priced_app(pg, &url, |s| s.budgets.daily_tokens = Some(40)).await;
    let admin = app.register("admin").await;
    let alice = app.register("alice").await;
    let thread = app.create_thread(&alice, "budget").await;
    for i in 0..2 {
        let end = ask(&app, &alice, &thread, "gpt", &format!("ok{i}")).await;
        assert_eq!(end["type"], "stream_end", "{end}");
    }
    assert_eq!(fake.count("ok"), 2);
    let (_, budget) = get_as(&app, &alice.token, "/api/me/budget").await;
    assert_eq!(budget["daily"]["limit"], 40);
    assert_eq!(budget["daily"]["used"], 60);
    assert_eq!(budget["daily"]["remaining"], 0);
    assert_eq!(budget["daily"]["resets_at"], next_midnight());
    assert_eq!(budget["monthly"]["used"], 60);
    assert!(budget["monthly"].get("limit").is_none(), "{budget}");

    // HTTP: 429 budget_exceeded with resets_at; the message is not stored.
    let (status, body) = post_ask(&app, &alice.token, &thread, "refused-http").await;
    assert_eq!((status, code(&body)), (429, "budget_exceeded"), "{body}");
    assert_eq!(body["error"]["resets_at"], next_midnight());
    // WebSocket: an error frame for that send, with resets_at.
    let mut ws = app.ws(&alice).await;
    ws.subscribe(&thread, None).await;
    ws.send(
        json!({"type":"send","thread":thread,"client_id":"refused-ws","body":"hi","agent":"gpt"}),
    )
    .await;
    let err = ws.recv_type("error").await;
    assert_eq!(err["code"], "budget_exceeded");
    assert_eq!(err["client_id"], "refused-ws");
    assert_eq!(err["resets_at"], next_midnight());
    // A message that asks no agent still goes through.
    ws.send_message(&thread, "plain", "just talking").await;
    let ack = ws.recv_type("ack").await;
    assert_eq!(ack["client_id"], "plain");
    assert_eq!(fake.count("ok"), 2, "no provider call for a refused ask");

    // Another user has their own budget.
    let bob = app.register("bob").await;
    let bob_thread = app.create_thread(&bob, "bob").await;
    assert_eq!(
        ask(&app, &bob, &bob_thread, "gpt", "b").await["type"],
        "stream_end"
    );
    assert_eq!(fake.count("ok"), 3);

    // An admin's override for Alice: a larger day, a spent month -> resets on the 1st.
    let path = format!("/api/admin/budgets/{}", alice.id);
    let (status, o) = call(
        &app,
        Method::PUT,
        &path,
        &admin.token,
        Some(json!({"daily_tokens": 1000, "monthly_tokens": 50})),
    )
    .await;
    assert_eq!(status, 200, "{o}");
    assert_eq!(
        (o["username"].as_str(), o["daily_tokens"].as_u64()),
        (Some("alice"), Some(1000))
    );
    let (status, body) = post_ask(&app, &alice.token, &thread, "refused-month").await;
    assert_eq!((status, code(&body)), (429, "budget_exceeded"));
    assert_eq!(body["error"]["resets_at"], next_month());
    // Only the day overridden: the default month (none) applies, and 1000 a day leaves room.
    let (status, _) = call(
        &app,
        Method::PUT,
        &path,
        &admin.token,
        Some(json!({"daily_tokens": 1000, "monthly_tokens": null})),
    )
    .await;
    assert_eq!(status, 200);
    let (status, body) = post_ask(&app, &alice.token, &thread, "allowed").await;
    assert_eq!(status, 201, "{body}");
    // Removing the override brings the default (40 a day) back.
    let (status, _) = delete_as(&app, &admin.token, &path).await;
    assert_eq!(status, 204);
    let (status, _) = delete_as(&app, &admin.token, &path).await;
    assert_eq!(status, 404);
    let (_, list) = get_as(&app, &admin.token, "/api/admin/budgets").await;
    assert_eq!(
        list["default"],
        json!({"daily_tokens": 40, "monthly_tokens": null})
    );
    assert_eq!(list["overrides"], json!([]));
    // The default is the admins' to change: no limit at all now.
    let (status, d) = call(
        &app,
        Method::PUT,
        "/api/admin/budgets",
        &admin.token,
        Some(json!({"daily_tokens": null})),
    )
    .await;
    assert_eq!((status, d["daily_tokens"].clone()), (200, Value::Null));
    let (_, budget) = get_as(&app, &alice.token, "/api/me/budget").await;
    assert!(budget["daily"].get("limit").is_none(), "{budget}");

    // Only admins manage budgets; bad bodies are 422 by field; unknown users 404.
    for (m, p, body) in [
        (Method::GET, "/api/admin/budgets".to_string(), None),
        (
            Method::PUT,
            "/api/admin/budgets".to_string(),
            Some(json!({"daily_tokens": 5})),
        ),
        (
            Method::PUT,
            format!("/api/admin/budgets/{}", alice.id),
            Some(json!({"daily_tokens": 5})),
        ),
        (
            Method::DELETE,
            format!("/api/admin/budgets/{}", alice.id),
            None,
        ),
    ] {
        let (status, b) = call(&app, m, &p, &alice.token, body).await;
        assert_eq!((status, code(&b)), (403, "forbidden"), "{p}");
    }
    for bad in [
        json!({"daily_tokens": -1}),
        json!({"daily_tokens": "many"}),
        json!({"daily_tokens": 1.5}),
        json!({"weekly_tokens": 5}),
        json!({"monthly_tokens": 0}),
    ] {
        let (status, b) = call(&app, Method::PUT, &path, &admin.token, Some(bad.clone())).await;
        assert_eq!((status, code(&b)), (422, "validation"), "{bad}: {b}");
    }
    let (status, _) = call(
        &app,
        Method::PUT,
        "/api/admin/budgets/nobody",
        &admin.token,
        Some(json!({"daily_tokens": 5})),
    )
    .await;
    assert_eq!(status, 404);
}

on_both!(
    a_spent_budget_refuses_before_any_provider_call,
    a_spent_budget_refuses_before_any_provider_call_on_sqlite,
    a_spent_budget_refuses_before_any_provider_call_on_postgres
);

/// A debate passes the send-time check, then each turn reserves: the turn that finds the budget
/// spent ends with `stream_error` `budget_exceeded` (and `resets_at`) and calls no provider.
async fn a_debate_turn_stops_at_the_budget_without_calling_the_provider(pg: bool) {
    let (fake, url) = FakeLlm::start().await;
    let app = priced_app(pg, &url, |s| s.budgets.monthly_tokens = Some(40)).await;
    let alice = app.register("alice").await;
    let thread = app.create_thread(&alice, "debate").await;
    let mut ws = app.ws(&alice).await;
    ws.subscribe(&thread, None).await;
    ws.send(
        json!({"type":"debate","thread":thread,"client_id":"d1","topic":"Tea or coffee?",
        "agents":["gpt","claude"],"rounds":3}),
    )
    .await;
    let err = ws.recv_type("stream_error").await;
    assert_eq!(err["code"], "budget_exceeded", "{err}");
    assert_eq!(err["resets_at"], next_month());
    assert!(err.get("error_class").is_none());
    // Two turns ran (0 then 30 tokens were under 40), the third was refused before its call.
    assert_eq!(fake.count("ok"), 2);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(fake.count("ok"), 2, "the debate stopped");
    let (_, usage) = get_as(&app, &alice.token, "/api/usage").await;
    assert_eq!(usage["total"]["answers"], 2);
}

on_both!(
    a_debate_turn_stops_at_the_budget_without_calling_the_provider,
    a_debate_turn_stops_at_the_budget_without_calling_the_provider_on_sqlite,
    a_debate_turn_stops_at_the_budget_without_calling_the_provider_on_postgres
);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_user_on_three_instances_passes_the_budget_by_at_most_one_answer() {
    const LIMIT: u64 = 200;
    let (fake, url) = FakeLlm::start().await;
    let (apps, _db) = cluster(3, REDIS, |s| {
        // Answers that overlap (5 chunks 40 ms apart).
        s.agents = vec![agent("gpt", "openai", "slow-5-40")];
        use_fake_providers(s, &url);
        s.limits.agent_streams_per_user = 100;
        s.budgets.daily_tokens = Some(LIMIT);
    })
    .await;
    let alice = apps[0].register("alice").await;
    let thread = apps[0].create_thread(&alice, "everywhere").await;
    let mut refused = 0;
    let mut accepted = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    'rounds: for round in 0.. {
        assert!(Instant::now() < deadline, "the budget never ran out");
        // Three asks at once, one per instance.
        let asks = apps.iter().enumerate().map(|(i, app)| {
            let (token, thread) = (alice.token.clone(), thread.clone());
            async move { post_ask(app, &token, &thread, &format!("r{round}-{i}")).await }
        });
        let results = futures_util::future::join_all(asks).await;
        let mut all_refused = true;
        for (status, body) in results {
            match (status, code(&body)) {
                (201, _) => {
                    accepted += 1;
                    all_refused = false;
                }
                (429, "budget_exceeded") => refused += 1,
                other => panic!("unexpected answer {other:?}: {body}"),
            }
        }
        if all_refused {
            break 'rounds;
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    assert!(refused > 0, "the budget ran out");
    // Wait until every admitted answer has ended and settled.
    let started = Instant::now();
    let usage = loop {
        let (_, usage) = get_as(&apps[1], &alice.token, "/api/usage").await;
        let (_, budget) = get_as(&apps[2], &alice.token, "/api/me/budget").await;
        if fake.concurrent() == 0 && budget["daily"]["used"] == usage["total"]["total_tokens"] {
            break usage;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "answers did not settle: {budget} {usage}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let answers = usage["total"]["answers"].as_u64().unwrap();
    let spent = usage["total"]["total_tokens"].as_u64().unwrap();
    let calls = fake.count("slow-5-40") as u64;
    assert_eq!(answers, calls, "every provider call is a stored answer");
    assert!(
        calls >= 2 && accepted as u64 >= calls,
        "{calls} calls, {accepted} accepted"
    );
    let per_answer = spent / answers;
    println!(
        "3 instances: {accepted} asks accepted, {refused} refused at send time, {calls} provider \
         calls, {spent} tokens spent for a limit of {LIMIT} ({per_answer} an answer)"
    );
    assert_eq!(spent, per_answer * answers, "all answers cost the same");
    assert!(spent >= LIMIT, "the budget was used up: {spent}");
    assert!(
        spent < LIMIT + per_answer,
        "passed the budget by more than one answer: {spent} tokens for a limit of {LIMIT}"
    );
}
