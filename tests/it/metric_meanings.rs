//! The documented meaning of each HTTP, WebSocket, rate-limit, overload, LLM and process metric
//! (docs/operations.md#metrics), asserted by producing its events and comparing two scrapes:
//! exactly the documented series move, by exactly the documented amounts.

use std::time::Duration;

use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::{
    agents::{agent, follow_known, follow_stream, use_fake_providers},
    support::{
        TestApp, WsClient,
        fake_llm::FakeLlm,
        process::{BUILT, KillOnDrop, free_port, spawn_server, wait_ready},
        scrape::{Scrape, deltas},
        spawn_app, spawn_app_with,
        ws::{break_protocol, send_invalid_utf8},
    },
};

/// The before-scrape is itself a request: it counts once, after its own answer.
const SCRAPE: (&str, f64) = (
    r#"http_requests_total{route="/metrics",method="GET",status="200"}"#,
    1.0,
);

fn http(route: &str, method: &str, status: u16) -> String {
    format!(r#"http_requests_total{{route="{route}",method="{method}",status="{status}"}}"#)
}

#[tokio::test]
async fn http_requests_count_each_answer_by_route_template_method_and_status() {
    let app = spawn_app().await;
    let alice = app.register("alice").await;
    let thread = app.create_thread(&alice, "http").await;
    let index = app.get("/", None).await.text().await.unwrap();
    let asset = index
        .split("\"/assets/")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the shell links a hashed asset");
    let before = Scrape::of(&app).await;

    let t = Some(alice.token.as_str());
    let statuses = [
        app.get(&format!("/api/threads/{thread}"), t).await.status(),
        app.get("/api/threads/no-such-thread", t).await.status(),
        app.get("/api/me", None).await.status(),
        app.get("/api/no-such-route", t).await.status(),
        app.http
            .post(app.url("/api/threads"))
            .bearer_auth(&alice.token)
            .header("content-type", "text/plain")
            .body("title")
            .send()
            .await
            .unwrap()
            .status(),
        app.get("/", None).await.status(),
        app.get(&format!("/assets/{asset}"), None).await.status(),
    ];
    assert_eq!(
        statuses.map(|s| s.as_u16()),
        [200, 404, 401, 404, 415, 200, 200]
    );

    let after = Scrape::of(&app).await;
    let (one, two) = (1.0, 2.0);
    assert_eq!(
        after.moved_since(&before, "http_requests_total"),
        deltas(&[
            SCRAPE,
            (&http("/api/threads/{id}", "GET", 200), one),
            (&http("/api/threads/{id}", "GET", 404), one),
            (&http("/api/me", "GET", 401), one),
            (&http("/api/*", "GET", 404), one),
            (&http("/api/threads", "POST", 415), one),
            (&http("/", "GET", 200), one),
            (&http("/assets/{*path}", "GET", 200), one),
        ]),
        "one count per answer, labelled with the route template"
    );
    let timed = |route: &str, method: &str| {
        format!(r#"http_request_duration_seconds_count{{route="{route}",method="{method}"}}"#)
    };
    assert_eq!(
        after.moved_since(&before, "http_request_duration_seconds_count"),
        deltas(&[
            (&timed("/metrics", "GET"), one),
            (&timed("/api/threads/{id}", "GET"), two),
            (&timed("/api/me", "GET"), one),
            (&timed("/api/*", "GET"), one),
            (&timed("/api/threads", "POST"), one),
            (&timed("/", "GET"), one),
            (&timed("/assets/{*path}", "GET"), one),
        ]),
        "one latency observation per request"
    );
}

const CLOSED: &str = r#"ws_connections_total{outcome="closed"}"#;
const REJECTED: &str = r#"ws_connections_total{outcome="rejected"}"#;
const ERROR: &str = r#"ws_connections_total{outcome="error"}"#;

#[tokio::test]
async fn websocket_outcomes_active_connections_and_frames_count_as_documented() {
    let app = spawn_app().await;
    let alice = app.register("alice").await;

    // Accepted: one connection, a ping answered, a clean close.
    let before = Scrape::of(&app).await;
    let mut ws = app.ws(&alice).await;
    let open = Scrape::of(&app).await;
    assert_eq!(
        open.get("ws_active_connections") - before.get("ws_active_connections"),
        1.0
    );
    ws.send(json!({"type": "ping"})).await;
    ws.recv_type("pong").await;
    ws.stream.close(None).await.unwrap();
    let mut after = Scrape::of(&app).await;
    for _ in 0..100 {
        if after.get("ws_active_connections") == before.get("ws_active_connections") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        after = Scrape::of(&app).await;
    }
    assert_eq!(
        after.moved_since(&before, "ws_"),
        deltas(&[
            (CLOSED, 1.0),
            (r#"ws_frames_total{direction="in"}"#, 1.0),
            // welcome and pong; the close frame is not a data frame
            (r#"ws_frames_total{direction="out"}"#, 2.0),
        ])
    );

    // Rejected: a bad token is upgraded, told `unauthorized` and closed 4401.
    let before = after;
    let mut bad = WsClient::connect(&format!("{}?token=nope", app.ws_url()))
        .await
        .unwrap();
    assert_eq!(bad.close_code().await, Some(4401));
    let after = Scrape::of(&app).await;
    assert_eq!(
        after.moved_since(&before, "ws_"),
        deltas(&[(REJECTED, 1.0)])
    );

    // Error: a protocol violation (an unmasked client frame) is closed 1002.
    let before = after;
    assert_eq!(break_protocol(app.port, &alice.token).await, Some(1002));
    let after = Scrape::of(&app).await;
    let moved = after.moved_since(&before, "ws_connections_total");
    assert_eq!(moved.get(ERROR), Some(&1.0), "{moved:?}");
    assert_eq!(moved.get(REJECTED), None, "{moved:?}");

    // Errors too: invalid UTF-8 (1007) and an oversized frame (1009) end an authenticated
    // connection with an error close code (counted once, as `error`).
    let before = Scrape::of(&app).await;
    assert_eq!(send_invalid_utf8(app.port, &alice.token).await, Some(1007));
    let mut big = app.ws(&alice).await;
    let _ = big
        .send_raw(Message::Text("x".repeat(300 * 1024).into()))
        .await;
    assert_eq!(big.close_code().await, Some(1009));
    let after = Scrape::of(&app).await;
    let moved = after.moved_since(&before, "ws_connections_total");
    assert_eq!(moved.get(ERROR), Some(&2.0), "{moved:?}");
    assert_eq!(moved.get(REJECTED), None, "{moved:?}");
}

/// A WebSocket connection attempt that is refused before the upgrade: its HTTP status.
async fn ws_refused(app: &TestApp, token: &str) -> u16 {
    match WsClient::connect(&format!("{}?token={token}", app.ws_url())).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => r.status().as_u16(),
        Ok(_) => panic!("the connection was accepted"),
        Err(e) => panic!("{e}"),
    }
}

async fn post_message(app: &TestApp, token: &str, thread: &str, body: Value) -> u16 {
    app.post(
        &format!("/api/threads/{thread}/messages"),
        Some(token),
        body,
    )
    .await
    .status()
    .as_u16()
}

/// Set the limit of `scope` to one, use it up, then be refused once. Returns the scrapes just
/// before and after the refusal, and the HTTP answer it was counted as.
async fn refused_once(scope: &str) -> (Scrape, Scrape, String, Vec<String>) {
    let (_fake, url) = FakeLlm::start().await;
    let scope_owned = scope.to_string();
    let app = spawn_app_with(move |s| {
        s.agents = vec![agent("slow", "openai", "slow-50-100")];
        use_fake_providers(s, &url);
        let l = &mut s.limits;
        match scope_owned.as_str() {
            "auth" => (l.auth_rate_per_min, l.auth_burst) = (1, 1),
            "send" => (l.send_rate_per_sec, l.send_burst) = (1, 1),
            "ws_connect" => (l.ws_connect_rate_per_min, l.ws_connect_burst) = (1, 1),
            "threads" => (l.thread_rate_per_min, l.thread_burst) = (1, 1),
            "members" => (l.member_rate_per_min, l.member_burst) = (1, 1),
            "agents" => l.agent_streams_per_user = 1,
            "ws_per_user" => l.ws_per_user = 1,
            "ws_per_ip" => l.ws_per_ip = 1,
            other => panic!("no test case for the rate-limit scope {other}: add one"),
        }
    })
    .await;
    let alice = app.register("alice").await;
    let t = alice.token.clone();
    let mut extra = Vec::new();
    let (before, status, route_method) = match scope {
        "auth" => {
            let before = Scrape::of(&app).await;
            let body = json!({"username": "alice", "password": "correct horse battery"});
            let r = app.post("/api/auth/login", None, body).await;
            (before, r.status().as_u16(), ("/api/auth/login", "POST"))
        }
        "send" => {
            let thread = app.create_thread(&alice, "s").await;
            let first = json!({"client_id": "1", "body": "one"});
            assert_eq!(post_message(&app, &t, &thread, first).await, 201);
            let before = Scrape::of(&app).await;
            let second = json!({"client_id": "2", "body": "two"});
            let status = post_message(&app, &t, &thread, second).await;
            (before, status, ("/api/threads/{id}/messages", "POST"))
        }
        "threads" => {
            app.create_thread(&alice, "first").await;
            let before = Scrape::of(&app).await;
            let r = app
                .post("/api/threads", Some(&t), json!({"title": "x"}))
                .await;
            (before, r.status().as_u16(), ("/api/threads", "POST"))
        }
        "members" => {
            app.register("bob").await;
            app.register("carol").await;
            let thread = app.create_thread(&alice, "m").await;
            app.add_member(&alice, &thread, "bob").await;
            let before = Scrape::of(&app).await;
            let path = format!("/api/threads/{thread}/members");
            let r = app
                .post(&path, Some(&t), json!({"username": "carol"}))
                .await;
            (
                before,
                r.status().as_u16(),
                ("/api/threads/{id}/members", "POST"),
            )
        }
        "agents" => {
            let thread = app.create_thread(&alice, "a").await;
            let ask = json!({"client_id": "1", "body": "answer slowly", "agent": "slow"});
            assert_eq!(post_message(&app, &t, &thread, ask).await, 201);
            let before = Scrape::of(&app).await;
            let again = json!({"client_id": "2", "body": "and again", "agent": "slow"});
            let status = post_message(&app, &t, &thread, again).await;
            (before, status, ("/api/threads/{id}/messages", "POST"))
        }
        "ws_connect" | "ws_per_user" | "ws_per_ip" => {
            let _first = app.ws(&alice).await;
            let token = if scope == "ws_per_ip" {
                app.register("bob").await.token
            } else {
                t.clone()
            };
            let before = Scrape::of(&app).await;
            let status = ws_refused(&app, &token).await;
            extra.push(REJECTED.to_string());
            let after = Scrape::of(&app).await;
            return (before, after, http("/ws", "GET", status), extra);
        }
        _ => unreachable!(),
    };
    let after = Scrape::of(&app).await;
    (
        before,
        after,
        http(route_method.0, route_method.1, status),
        extra,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_rate_limit_scope_counts_one_per_refusal_and_nothing_else() {
    for scope in emergence::metrics::labels::RATE_LIMIT_SCOPES {
        let (before, after, answer, extra) = refused_once(scope).await;
        assert!(
            answer.contains(r#"status="429""#) || answer.contains(r#"status="503""#),
            "{scope}: refused with {answer}"
        );
        assert_eq!(
            after.moved_since(&before, "rate_limited_total"),
            deltas(&[(&format!(r#"rate_limited_total{{scope="{scope}"}}"#), 1.0)]),
            "{scope}"
        );
        assert_eq!(
            after.moved_since(&before, "http_requests_total"),
            deltas(&[SCRAPE, (&answer, 1.0)]),
            "{scope}: one HTTP answer"
        );
        let mut ws = deltas(&[]);
        for key in extra {
            ws.insert(key, 1.0);
        }
        assert_eq!(
            after.moved_since(&before, "ws_connections_total"),
            ws,
            "{scope}"
        );
    }
}

#[tokio::test]
async fn a_saturated_instance_counts_each_503_as_an_overload_rejection() {
    let app = spawn_app_with(|s| s.server.max_inflight_requests = 0).await;
    let before = Scrape::of(&app).await;
    let body = json!({"username": "alice", "password": "correct horse battery"});
    let r = app.post("/api/auth/register", None, body).await;
    assert_eq!(r.status(), 503);
    let after = Scrape::of(&app).await;
    assert_eq!(
        after.moved_since(&before, "overload_rejections_total"),
        deltas(&[("overload_rejections_total", 1.0)])
    );
    assert_eq!(
        after.moved_since(&before, "http_requests_total"),
        deltas(&[SCRAPE, (&http("/api/auth/register", "POST", 503), 1.0)])
    );
    assert!(after.moved_since(&before, "rate_limited_total").is_empty());

    let app = spawn_app_with(|s| s.server.max_websockets = 0).await;
    let alice = app.register("alice").await;
    let before = Scrape::of(&app).await;
    assert_eq!(ws_refused(&app, &alice.token).await, 503);
    let after = Scrape::of(&app).await;
    assert_eq!(
        after.moved_since(&before, "overload_rejections_total"),
        deltas(&[("overload_rejections_total", 1.0)])
    );
    assert_eq!(
        after.moved_since(&before, "ws_connections_total"),
        deltas(&[(REJECTED, 1.0)])
    );
}

/// Wait (bounded) until the LLM series moved exactly as `want`.
async fn llm_moved(app: &TestApp, before: &Scrape, want: &[(&str, f64)]) {
    let want = deltas(want);
    let mut got = Default::default();
    for _ in 0..100 {
        let after = Scrape::of(app).await;
        got = after.moved_since(before, "llm_requests_total");
        got.extend(after.moved_since(before, "llm_tokens_total"));
        for h in ["llm_first_token_seconds_count", "llm_stream_seconds_count"] {
            got.extend(after.moved_since(before, h));
        }
        if got == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(got, want);
}

fn llm(model: &str, outcome: &str) -> String {
    format!(r#"llm_requests_total{{provider="openai",model="{model}",outcome="{outcome}"}}"#)
}

const FIRST_TOKEN: &str = r#"llm_first_token_seconds_count{provider="openai"}"#;
const STREAM: &str = r#"llm_stream_seconds_count{provider="openai"}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_llm_outcome_tokens_and_latencies_count_as_documented() {
    let (_fake, url) = FakeLlm::start().await;
    let models = ["ok", "fail-500", "ratelimit-once", "hang", "slow-50-100"];
    let app = spawn_app_with(move |s| {
        s.agents = models.iter().map(|m| agent(m, "openai", m)).collect();
        use_fake_providers(s, &url);
        s.providers.max_retries = 0;
    })
    .await;
    let alice = app.register("alice").await;
    let thread = app.create_thread(&alice, "llm").await;
    let mut ws = app.ws(&alice).await;
    ws.subscribe(&thread, None).await;
    let ask =
        |id: &str| json!({"type":"send","thread":thread,"client_id":id,"body":"go","agent":id});

    let cases: [(&str, &[(&str, f64)]); 4] = [
        // One stream, its usage (25 prompt, 5 completion tokens), first token, duration.
        (
            "ok",
            &[
                (&llm("ok", "ok"), 1.0),
                (r#"llm_tokens_total{direction="prompt"}"#, 25.0),
                (r#"llm_tokens_total{direction="completion"}"#, 5.0),
                (FIRST_TOKEN, 1.0),
                (STREAM, 1.0),
            ],
        ),
        // A request that could not be opened: HTTP 500, no retry.
        (
            "fail-500",
            &[(&llm("fail-500", "error"), 1.0), (STREAM, 1.0)],
        ),
        // HTTP 429 from the provider.
        (
            "ratelimit-once",
            &[(&llm("ratelimit-once", "rate_limited"), 1.0), (STREAM, 1.0)],
        ),
        // Headers, then no token within the first-token timeout.
        ("hang", &[(&llm("hang", "timeout"), 1.0), (STREAM, 1.0)]),
    ];
    for (model, want) in cases {
        let before = Scrape::of(&app).await;
        ws.send(ask(model)).await;
        let seen = follow_stream(&mut ws).await;
        assert_eq!(seen.end.is_some(), model == "ok", "{model}: {seen:?}");
        llm_moved(&app, &before, want).await;
    }
    // Cancelled by a member after the first token.
    let before = Scrape::of(&app).await;
    ws.send(ask("slow-50-100")).await;
    let start = ws.recv_type("stream_start").await;
    let stream_id = start["stream_id"].as_str().unwrap().to_string();
    let chunk = ws.recv_type("stream_chunk").await;
    ws.send(json!({"type": "cancel", "stream_id": stream_id}))
        .await;
    let seen = follow_known(&mut ws, &stream_id, chunk["delta"].as_str().unwrap()).await;
    assert_eq!(seen.error.unwrap()["code"], "cancelled");
    llm_moved(
        &app,
        &before,
        &[
            (&llm("slow-50-100", "cancelled"), 1.0),
            (FIRST_TOKEN, 1.0),
            (STREAM, 1.0),
        ],
    )
    .await;
}

fn llm_error(class: &str) -> String {
    format!(r#"llm_errors_total{{provider="openai",class="{class}"}}"#)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_failed_provider_try_counts_once_by_its_error_class() {
    let (_fake, url) = FakeLlm::start().await;
    let models = ["fail-500", "missing", "html", "error-event", "ok"];
    let app = spawn_app_with(move |s| {
        s.agents = models.iter().map(|m| agent(m, "openai", m)).collect();
        use_fake_providers(s, &url);
        s.providers.max_retries = 1;
    })
    .await;
    let first = Scrape::of(&app).await;
    for class in [
        "unavailable",
        "model_not_found",
        "rate_limited",
        "bad_response",
    ] {
        assert_eq!(first.get(&llm_error(class)), 0.0, "{class} exported at 0");
    }
    let alice = app.register("alice").await;
    let thread = app.create_thread(&alice, "errors").await;
    let mut ws = app.ws(&alice).await;
    ws.subscribe(&thread, None).await;
    let cases: [(&str, &[(&str, f64)]); 5] = [
        // Two tries (one retry), each failing with a 500.
        ("fail-500", &[(&llm_error("unavailable"), 2.0)]),
        // A 404 is not retried.
        ("missing", &[(&llm_error("model_not_found"), 1.0)]),
        ("html", &[(&llm_error("bad_response"), 1.0)]),
        // The stream broke after its first token: one failed call.
        ("error-event", &[(&llm_error("unavailable"), 1.0)]),
        ("ok", &[]),
    ];
    for (model, want) in cases {
        let before = Scrape::of(&app).await;
        ws.send(json!({"type":"send","thread":thread,"client_id":model,"body":"go","agent":model}))
            .await;
        let seen = follow_stream(&mut ws).await;
        assert_eq!(seen.end.is_some(), model == "ok", "{model}: {seen:?}");
        let after = Scrape::of(&app).await;
        assert_eq!(
            after.moved_since(&before, "llm_errors_total"),
            deltas(want),
            "{model}"
        );
    }
}

/// `utime + stime` of a process, in seconds (the kernel counts in 1/100 s).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    (fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap()) / 100.0
}

#[tokio::test]
async fn process_and_build_metrics_match_what_the_kernel_reports() {
    let db = crate::support::TestDb::sqlite();
    let port = free_port();
    let spawned = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let server = KillOnDrop(spawn_server(
        BUILT,
        port,
        &[("DATABASE_URL", &db.url())],
        false,
    ));
    wait_ready(port).await;
    let ready = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let pid = server.0.id();
    let http = reqwest::Client::new();
    let cpu_before = cpu_seconds(pid);
    let m = Scrape::at(&http, port).await;
    let cpu_after = cpu_seconds(pid);
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count() as f64;
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).unwrap();
    let rss = statm
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<f64>()
        .unwrap()
        * 4096.0;

    let version = format!(
        r#"emergence_build_info{{version="{}"}}"#,
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(m.get(&version), 1.0);
    let start = m.get("process_start_time_seconds");
    assert!(
        spawned - 0.01 <= start && start <= ready,
        "started at {start}, spawned at {spawned}, ready at {ready}"
    );
    let cpu = m.get("process_cpu_seconds_total");
    assert!(
        cpu_before <= cpu && cpu <= cpu_after,
        "{cpu_before} <= {cpu} <= {cpu_after}"
    );
    let open = m.get("process_open_fds");
    assert!((open - fds).abs() <= 3.0, "{open} reported, {fds} open");
    let resident = m.get("process_resident_memory_bytes");
    assert!(
        (resident - rss).abs() <= rss * 0.2,
        "{resident} reported, {rss} resident"
    );
}
