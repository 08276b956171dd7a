//! The security audit of 2026-11 (issue #22), limits side: concurrent agent answers per user (on
//! one instance and across three), concurrent password hashing, open WebSockets per user and per
//! address, and the signing key's length. Counted where the cost is: at the fake provider, in
//! the process's peak memory.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::{
    agents::{agent, use_fake_providers},
    scale::cluster,
    security::proc_kib,
    support::{
        TestApp, WsClient,
        fake_llm::FakeLlm,
        process::{BUILT, free_port, spawn_ready_on_sqlite},
        spawn_app_with,
    },
};

/// Agents that stream for about a second each (20 chunks, 50 ms apart).
fn slow_agents() -> Vec<emergence::agents::AgentSettings> {
    vec![
        agent("slow", "openai", "slow-20-50"),
        agent("slower", "anthropic", "slow-20-50"),
    ]
}

/// Fire `count` agent requests (answers and debates, alternating) over `ws` without waiting.
async fn burst(ws: &mut WsClient, thread: &str, tag: &str, count: usize) {
    for i in 0..count {
        let frame = if i % 2 == 0 {
            json!({"type": "send", "thread": thread, "client_id": format!("{tag}-{i}"),
                   "body": "answer me", "agent": "slow"})
        } else {
            json!({"type": "debate", "thread": thread, "client_id": format!("{tag}-{i}"),
                   "topic": "debate this", "agents": ["slow", "slower"], "rounds": 2})
        };
        ws.send(frame).await;
    }
}

/// Read every socket until the fake provider has been idle for 2 s (bounded); returns how many
/// requests were refused with `rate_limited`.
async fn settle(fake: &FakeLlm, sockets: &mut [WsClient]) -> usize {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut idle_since: Option<Instant> = None;
    let mut refused = 0;
    while Instant::now() < deadline {
        for ws in sockets.iter_mut() {
            while let Some(f) = ws.recv_within(Duration::from_millis(20)).await {
                if f["type"] == "error" && f["code"] == "rate_limited" {
                    refused += 1;
                }
            }
        }
        if fake.concurrent() == 0 {
            let since = *idle_since.get_or_insert_with(Instant::now);
            if since.elapsed() > Duration::from_secs(2) {
                return refused;
            }
        } else {
            idle_since = None;
        }
    }
    panic!("the agents never went quiet");
}

async fn member_socket(app: &TestApp, token: &str, thread: &str) -> WsClient {
    let mut ws = WsClient::connect(&format!("{}?token={token}", app.ws_url()))
        .await
        .unwrap();
    assert_eq!(ws.recv().await.unwrap()["type"], "welcome");
    ws.subscribe(thread, None).await;
    ws
}

#[tokio::test]
async fn fifty_agent_requests_in_one_burst_never_run_more_than_the_per_user_limit() {
    let (fake, url) = FakeLlm::start().await;
    let app = spawn_app_with(|s| {
        s.agents = slow_agents();
        use_fake_providers(s, &url);
    })
    .await;
    let limit = app.state.settings.limits.agent_streams_per_user;
    let alice = app.register("alice").await;
    let thread = app.create_thread(&alice, "burst").await;
    let mut ws = member_socket(&app, &alice.token, &thread).await;
    burst(&mut ws, &thread, "b", 50).await;
    let refused = settle(&fake, std::slice::from_mut(&mut ws)).await;
    println!(
        "one instance: at most {} streams at once at the provider (limit {limit}), {refused} of 50 refused",
        fake.max_concurrent()
    );
    assert!(
        fake.max_concurrent() <= limit,
        "{} streams ran at once",
        fake.max_concurrent()
    );
    assert_eq!(
        fake.max_concurrent(),
        limit,
        "the limit itself was reachable"
    );
    assert_eq!(
        refused,
        50 - limit,
        "every request over the limit was refused"
    );
    // The slots come back when the answers end: the next request runs.
    ws.send(
        json!({"type": "send", "thread": thread, "client_id": "after",
                   "body": "and now?", "agent": "slow"}),
    )
    .await;
    let end = ws.recv_type("stream_end").await;
    assert_eq!(end["message"]["body"], FakeLlm::full_text("slow-20-50"));
}

#[tokio::test]
async fn fifty_agent_requests_spread_over_three_instances_never_run_more_than_the_limit() {
    let (fake, url) = FakeLlm::start().await;
    let (apps, _db) = cluster(3, "redis://127.0.0.1:6379", |s| {
        s.agents = slow_agents();
        use_fake_providers(s, &url);
    })
    .await;
    let limit = apps[0].state.settings.limits.agent_streams_per_user;
    let alice = apps[0].register("alice").await;
    let thread = apps[0].create_thread(&alice, "burst").await;
    let mut sockets = Vec::new();
    for app in &apps {
        sockets.push(member_socket(app, &alice.token, &thread).await);
    }
    // The three bursts leave at the same moment.
    let [a, b, c] = &mut sockets[..] else {
        unreachable!()
    };
    tokio::join!(
        burst(a, &thread, "a", 17),
        burst(b, &thread, "b", 17),
        burst(c, &thread, "c", 16)
    );
    let refused = settle(&fake, &mut sockets).await;
    println!(
        "three instances: at most {} streams at once at the provider (limit {limit}), {refused} of 50 refused",
        fake.max_concurrent()
    );
    assert!(
        fake.max_concurrent() <= limit,
        "{} streams ran at once across the instances",
        fake.max_concurrent()
    );
    assert!(refused >= 50 - limit, "{refused} refused");
}

#[tokio::test]
async fn a_burst_of_32_registrations_hashes_a_few_passwords_at_a_time() {
    let server = spawn_ready_on_sqlite().await;
    let (port, pid) = (server.port, server.pid());
    let http = reqwest::Client::new();
    let register = |name: String| {
        let http = http.clone();
        async move {
            http.post(format!("http://127.0.0.1:{port}/api/auth/register"))
                .json(&json!({"username": name, "password": "correct horse battery"}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(register("first".into()).await, 201);
    let before = proc_kib(pid, "VmRSS:");
    let all: Vec<u16> =
        futures_util::future::join_all((0..32).map(|i| register(format!("user{i}")))).await;
    assert!(all.iter().all(|s| *s == 201), "{all:?}");
    let peak = proc_kib(pid, "VmHWM:");
    println!("32 concurrent registrations: RSS {before} KiB before, peak {peak} KiB");
    // One argon2id hash holds 19 MiB: 32 at once would need about 600 MiB.
    assert!(
        peak < before + 128 * 1024,
        "peak RSS {peak} KiB from {before} KiB: password hashing is not bounded"
    );
    drop(server);
}

/// The first frame (or the refusal) of a WebSocket upgrade.
async fn try_ws(app: &TestApp, token: &str) -> Result<WsClient, u16> {
    match WsClient::connect(&format!("{}?token={token}", app.ws_url())).await {
        Ok(mut ws) => {
            let welcome: Value = ws.recv().await.unwrap();
            assert_eq!(welcome["type"], "welcome");
            Ok(ws)
        }
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => {
            assert!(r.headers().contains_key("retry-after"));
            Err(r.status().as_u16())
        }
        Err(e) => panic!("upgrade: {e}"),
    }
}

#[tokio::test]
async fn open_websockets_are_capped_per_user_and_per_address() {
    let app = spawn_app_with(|s| {
        s.limits.ws_per_user = 3;
        s.limits.ws_per_ip = 5;
    })
    .await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let mut alices = Vec::new();
    for _ in 0..3 {
        alices.push(try_ws(&app, &alice.token).await.expect("under the cap"));
    }
    assert_eq!(
        try_ws(&app, &alice.token).await.err(),
        Some(429),
        "a 4th for alice"
    );
    let _b1 = try_ws(&app, &bob.token).await.expect("bob has his own cap");
    let _b2 = try_ws(&app, &bob.token).await.expect("5 from this address");
    assert_eq!(
        try_ws(&app, &bob.token).await.err(),
        Some(503),
        "a 6th from the address"
    );
    // A closed socket gives its place back (once the server has seen it close).
    let mut closing = alices.pop().unwrap();
    let _ = closing.stream.close(None).await;
    drop(closing);
    let mut again = None;
    for _ in 0..50 {
        if let Ok(ws) = try_ws(&app, &alice.token).await {
            again = Some(ws);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(again.is_some(), "the place came back");
}

#[tokio::test]
async fn a_signing_key_shorter_than_32_bytes_is_refused_at_start() {
    let db = crate::support::TestDb::sqlite();
    let mut s = crate::support::test_settings(&db.url());
    s.auth.signing_key = Some(emergence::settings::Secret::new("too-short-key"));
    let err = emergence::Application::build(s)
        .await
        .err()
        .expect("refused");
    assert!(err.to_string().contains("at least 32 bytes"), "{err}");
    let mut s = crate::support::test_settings(&db.url());
    s.auth.signing_key = Some(emergence::settings::Secret::new("k".repeat(32)));
    assert!(emergence::Application::build(s).await.is_ok());
    // The binary says why and exits non-zero.
    let out = std::process::Command::new(BUILT)
        .arg("serve")
        .env("EMERGENCE_SIGNING_KEY", "too-short-key")
        .env("DATABASE_URL", db.url())
        .env("EMERGENCE_REGISTRATION", "open")
        .env("PORT", free_port().to_string())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("at least 32 bytes"), "{stderr}");
}
