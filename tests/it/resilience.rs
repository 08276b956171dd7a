//! Database resilience under real faults: 50 WebSocket clients send throughout while the
//! database (PostgreSQL behind a TCP fault proxy, or SQLite made unavailable) fails. Afterwards
//! the database is read directly: zero acknowledged messages lost, zero duplicates, gapless
//! `seq`, ≥ 99% of WebSocket connects during the fault succeeded, and the first persisted write
//! came ≤ 1 s after the fault ended.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::support::{
    TestApp, TestDb, WsClient,
    fault_proxy::{FaultProxy, Mode},
    start, test_settings,
};

const CLIENTS: usize = 50;
const THREADS: usize = 5;
const SEND_EVERY: Duration = Duration::from_millis(150);

/// What the clients saw.
#[derive(Default)]
struct Observed {
    /// client_id -> seq from the `persisted` ack.
    acked: HashMap<String, (String, i64)>,
    /// Every client_id sent, with its thread.
    sent: HashMap<String, String>,
    /// When each persisted ack arrived.
    ack_times: Vec<Instant>,
    connects_ok: usize,
    connects_failed: usize,
}

type Shared = Arc<Mutex<Observed>>;

/// One chat client, written as the contract asks: it keeps every unacknowledged send, repeats
/// all of them (same `client_id`) after reconnecting, retries a send refused with `unavailable`
/// after `retry_after_ms`, and resubscribes with the last `seq` it saw.
#[allow(clippy::too_many_arguments)]
async fn client(
    app_ws: String,
    token: String,
    thread: String,
    name: String,
    stop_sending: CancellationToken,
    done: CancellationToken,
    seen: Shared,
) {
    // client_id -> (body, retry at: Some when refused and to be sent again)
    let mut pending: BTreeMap<String, (String, Option<Instant>)> = BTreeMap::new();
    let mut n = 0;
    let mut last_seq: Option<i64> = None;
    let send = |cid: &str, body: &str| {
        tokio_tungstenite::tungstenite::Message::Text(
            json!({"type":"send","thread":thread,"client_id":cid,"body":body})
                .to_string()
                .into(),
        )
    };
    'connect: loop {
        if done.is_cancelled() {
            return;
        }
        let Ok(mut ws) = WsClient::connect(&format!("{app_ws}?token={token}")).await else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        if ws.recv().await.is_none_or(|w| w["type"] != "welcome") {
            continue;
        }
        let mut sub = json!({"type": "subscribe", "thread": thread});
        if let Some(s) = last_seq {
            sub["after_seq"] = s.into();
        }
        ws.send(sub).await;
        for (cid, (body, retry)) in pending.iter_mut() {
            *retry = None;
            if ws.send_raw(send(cid, body)).await.is_err() {
                continue 'connect;
            }
        }
        let mut tick = tokio::time::interval(SEND_EVERY);
        let mut retry_tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            if stop_sending.is_cancelled() && pending.is_empty() {
                return;
            }
            tokio::select! {
                _ = done.cancelled() => return,
                _ = tick.tick(), if !stop_sending.is_cancelled() => {
                    n += 1;
                    let cid = format!("{name}-{n}");
                    let body = format!("message {n} from {name}");
                    seen.lock().unwrap().sent.insert(cid.clone(), thread.clone());
                    pending.insert(cid.clone(), (body.clone(), None));
                    if ws.send_raw(send(&cid, &body)).await.is_err() {
                        continue 'connect;
                    }
                }
                _ = retry_tick.tick() => {
                    let now = Instant::now();
                    for (cid, (body, retry)) in pending.iter_mut() {
                        if retry.is_some_and(|at| at <= now) {
                            *retry = None;
                            if ws.send_raw(send(cid, body)).await.is_err() {
                                continue 'connect;
                            }
                        }
                    }
                }
                frame = ws.recv_within(Duration::from_secs(60)) => {
                    let Some(f) = frame else { continue 'connect };
                    match f["type"].as_str() {
                        Some("ack") if f["status"] == "persisted" => {
                            let cid = f["client_id"].as_str().unwrap().to_string();
                            pending.remove(&cid);
                            let mut s = seen.lock().unwrap();
                            s.ack_times.push(Instant::now());
                            s.acked.insert(cid, (thread.clone(), f["seq"].as_i64().unwrap()));
                        }
                        Some("error") => {
                            if let Some(entry) = f["client_id"].as_str().and_then(|c| pending.get_mut(c)) {
                                let wait = f["retry_after_ms"].as_u64().unwrap_or(1000);
                                entry.1 = Some(Instant::now() + Duration::from_millis(wait));
                            }
                        }
                        Some("message") => {
                            let seq = f["seq"].as_i64().unwrap();
                            last_seq = Some(last_seq.map_or(seq, |l: i64| l.max(seq)));
                        }
                        _ => {}
                    }
                }
            }
        }
    }
}

/// Connect new WebSockets throughout the fault and count how many get their `welcome`.
async fn probe_connects(app_ws: String, token: String, until: CancellationToken, seen: Shared) {
    while !until.is_cancelled() {
        let ok = tokio::time::timeout(Duration::from_secs(5), async {
            let mut ws = WsClient::connect(&format!("{app_ws}?token={token}"))
                .await
                .ok()?;
            let w = ws.recv().await?;
            (w["type"] == "welcome").then_some(())
        })
        .await
        .ok()
        .flatten()
        .is_some();
        {
            let mut s = seen.lock().unwrap();
            if ok {
                s.connects_ok += 1
            } else {
                s.connects_failed += 1
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

enum Fault {
    Outage(Duration),
    TerminateBackends,
    Blackhole(Duration),
    Latency(Duration, Duration),
    SqliteUnavailable(Duration),
}

async fn scenario(fault: Fault) {
    let _machine = crate::support::heavy().await;
    let sqlite = matches!(fault, Fault::SqliteUnavailable(_));
    let db = if sqlite {
        TestDb::sqlite()
    } else {
        TestDb::postgres().await
    };
    let proxy = FaultProxy::start("127.0.0.1:5432".parse().unwrap()).await;
    let url = if sqlite {
        db.url()
    } else {
        db.url_via(proxy.port)
    };
    let mut settings = test_settings(&url);
    settings.limits.send_rate_per_sec = 0;
    settings.limits.ws_connect_rate_per_min = 0;
    settings.limits.auth_rate_per_min = 0;
    let direct_url = db.url();
    let sqlite_dir = db.sqlite_dir().cloned();
    let app: TestApp = start(settings, db, true).await;

    let mut threads = Vec::new();
    let mut users = Vec::new();
    for t in 0..THREADS {
        let user = app.register(&format!("user{t}")).await;
        let thread = app.create_thread(&user, &format!("thread {t}")).await;
        threads.push(thread);
        users.push(user);
    }
    let seen: Shared = Arc::default();
    let stop_sending = CancellationToken::new();
    let done = CancellationToken::new();
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let t = c % THREADS;
        tasks.push(tokio::spawn(client(
            app.ws_url(),
            users[t].token.clone(),
            threads[t].clone(),
            format!("c{c}"),
            stop_sending.clone(),
            done.clone(),
            seen.clone(),
        )));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Inject the fault while everyone keeps sending; new clients keep connecting meanwhile.
    let probing = CancellationToken::new();
    let probe = tokio::spawn(probe_connects(
        app.ws_url(),
        users[0].token.clone(),
        probing.clone(),
        seen.clone(),
    ));
    let fault_ended = match fault {
        Fault::Outage(d) => {
            proxy.set(Mode::Refuse);
            proxy.reset_all();
            tokio::time::sleep(d).await;
            proxy.set(Mode::Pass);
            Instant::now()
        }
        Fault::TerminateBackends => {
            let name = direct_url.rsplit('/').next().unwrap().to_string();
            let admin = sqlx::PgPool::connect(crate::support::PG_ADMIN_URL)
                .await
                .unwrap();
            let killed: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()) t",
            )
            .bind(&name)
            .fetch_one(&admin)
            .await
            .unwrap();
            assert!(killed > 0, "the server had backends to terminate");
            admin.close().await;
            Instant::now()
        }
        Fault::Blackhole(d) => {
            proxy.set(Mode::Blackhole);
            tokio::time::sleep(d).await;
            proxy.set(Mode::Pass);
            Instant::now()
        }
        Fault::Latency(added, d) => {
            proxy.set(Mode::Latency(added));
            tokio::time::sleep(d).await;
            proxy.set(Mode::Pass);
            Instant::now()
        }
        Fault::SqliteUnavailable(d) => {
            let dir = sqlite_dir.clone().unwrap();
            let moved = dir.with_extension("away");
            std::fs::rename(&dir, &moved).unwrap();
            app.state
                .db
                .drop_connections("test: database file made unavailable")
                .await;
            tokio::time::sleep(d).await;
            std::fs::rename(&moved, &dir).unwrap();
            Instant::now()
        }
    };
    probing.cancel();
    probe.await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop_sending.cancel();
    // Every client repeats its unacknowledged sends until all are stored.
    let all_acked = async {
        for t in tasks {
            t.await.unwrap();
        }
    };
    if tokio::time::timeout(Duration::from_secs(60), all_acked)
        .await
        .is_err()
    {
        done.cancel();
        let (sent, acked) = {
            let s = seen.lock().unwrap();
            (s.sent.len(), s.acked.len())
        };
        let mut state = String::new();
        for m in [
            "db_up",
            "messages_persisted_total",
            "ws_slow_consumer_disconnects_total",
            "ws_connections_total",
            "db_connection_failures_total",
            "db_reconnect_attempts_total",
            "db_reconnect_success_total",
        ] {
            state.push_str(&format!(" {m}={}", app.metric(m).await));
        }
        panic!("not every send was acknowledged: {sent} sent, {acked} acked;{state}");
    }

    // Read the database directly.
    let rows: Vec<(String, String, i64)> = if sqlite {
        let pool = sqlx::SqlitePool::connect(&direct_url).await.unwrap();
        let r = sqlx::query_as("SELECT thread_id, client_id, seq FROM messages")
            .fetch_all(&pool)
            .await
            .unwrap();
        pool.close().await;
        r
    } else {
        let pool = sqlx::PgPool::connect(&direct_url).await.unwrap();
        let r = sqlx::query_as("SELECT thread_id, client_id, seq FROM messages")
            .fetch_all(&pool)
            .await
            .unwrap();
        pool.close().await;
        r
    };
    let s = seen.lock().unwrap();
    let stored: HashMap<&str, (&str, i64)> = rows
        .iter()
        .map(|(t, c, q)| (c.as_str(), (t.as_str(), *q)))
        .collect();
    assert_eq!(stored.len(), rows.len(), "no client_id stored twice");
    for (cid, (thread, seq)) in &s.acked {
        assert_eq!(
            stored.get(cid.as_str()),
            Some(&(thread.as_str(), *seq)),
            "acknowledged {cid} is stored with its seq"
        );
    }
    assert_eq!(
        rows.len(),
        s.sent.len(),
        "every message sent is stored exactly once"
    );
    for thread in &threads {
        let mut seqs: Vec<i64> = rows
            .iter()
            .filter(|r| &r.0 == thread)
            .map(|r| r.2)
            .collect();
        seqs.sort();
        assert!(
            seqs.iter().enumerate().all(|(i, q)| *q == i as i64 + 1),
            "gapless seq in {thread}"
        );
    }
    let attempts = s.connects_ok + s.connects_failed;
    assert!(attempts > 0);
    let ratio = s.connects_ok as f64 / attempts as f64;
    assert!(
        ratio >= 0.99,
        "WebSocket connects during the fault: {}/{attempts}",
        s.connects_ok
    );
    let first_after = s
        .ack_times
        .iter()
        .filter(|t| **t >= fault_ended)
        .min()
        .copied()
        .expect("writes after the fault");
    let recovery = first_after.duration_since(fault_ended);
    assert!(
        recovery <= Duration::from_secs(1),
        "first persisted write {recovery:?} after the fault ended"
    );
    eprintln!(
        "fault scenario: {} messages stored, {} connects during fault ({} failed), first write {recovery:?} after the fault",
        rows.len(),
        attempts,
        s.connects_failed
    );
    drop(s);
    done.cancel();
    drop(app);
    drop(proxy);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_two_second_postgres_outage_loses_nothing() {
    scenario(Fault::Outage(Duration::from_secs(2))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thirty_second_postgres_outage_loses_nothing() {
    scenario(Fault::Outage(Duration::from_secs(30))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminating_every_backend_loses_nothing() {
    scenario(Fault::TerminateBackends).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_twenty_second_blackhole_loses_nothing() {
    scenario(Fault::Blackhole(Duration::from_secs(20))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_seconds_of_added_latency_loses_nothing() {
    scenario(Fault::Latency(
        Duration::from_secs(2),
        Duration::from_secs(6),
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unavailable_sqlite_database_loses_nothing() {
    scenario(Fault::SqliteUnavailable(Duration::from_secs(3))).await;
}

#[tokio::test]
async fn an_outage_is_visible_in_frames_readiness_and_metrics_and_sends_are_queued() {
    let db = TestDb::postgres().await;
    let proxy = FaultProxy::start("127.0.0.1:5432".parse().unwrap()).await;
    let settings = test_settings(&db.url_via(proxy.port));
    let app = start(settings, db, true).await;
    let alice = app.register("alice").await;
    let thread = app.create_thread(&alice, "outage").await;
    let mut ws = app.ws(&alice).await;
    ws.subscribe(&thread, None).await;
    ws.send_message(&thread, "before", "before the outage")
        .await;
    // The ack and the sender's own message frame may come in either order.
    let mut kinds = vec![
        ws.recv().await.unwrap()["type"].clone(),
        ws.recv().await.unwrap()["type"].clone(),
    ];
    kinds.sort_by_key(|k| k.to_string());
    assert_eq!(kinds, vec![json!("ack"), json!("message")]);

    proxy.set(Mode::Refuse);
    proxy.reset_all();
    let status = ws.recv_type("status").await;
    assert_eq!(status["db"], "down");
    assert_eq!(app.metric("db_up").await, 0.0);
    let ready = app.get("/readyz", None).await;
    assert_eq!(ready.status(), 200, "a down database never fails readiness");
    assert_eq!(
        ready.json::<serde_json::Value>().await.unwrap()["status"],
        "degraded"
    );
    // New connections are accepted and told the database is down.
    let mut late = WsClient::connect(&format!("{}?token={}", app.ws_url(), alice.token))
        .await
        .unwrap();
    let welcome = late.recv().await.unwrap();
    assert_eq!(
        (welcome["type"].as_str(), welcome["db"].as_str()),
        (Some("welcome"), Some("down"))
    );
    // Subscribing replays from the in-memory ring.
    late.send(json!({"type": "subscribe", "thread": thread, "after_seq": 0}))
        .await;
    assert_eq!(late.recv_type("subscribed").await["head_seq"], 1);
    assert_eq!(late.recv_type("message").await["client_id"], "before");
    // Sends are queued, over WebSocket and HTTP.
    ws.send_message(&thread, "during", "while the database is down")
        .await;
    let ack = ws.recv_type("ack").await;
    assert_eq!(
        (ack["status"].as_str(), ack["client_id"].as_str()),
        (Some("queued"), Some("during"))
    );
    let r = app
        .post(
            &format!("/api/threads/{thread}/messages"),
            Some(&alice.token),
            json!({"client_id": "http", "body": "queued too"}),
        )
        .await;
    assert_eq!(r.status(), 202);
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap(),
        json!({"client_id": "http", "status": "queued"})
    );
    assert!(app.metric("db_pending_writes").await >= 2.0);
    let history = app
        .get(
            &format!("/api/threads/{thread}/messages"),
            Some(&alice.token),
        )
        .await;
    assert_eq!(history.status(), 503);
    assert!(history.headers().get("retry-after").is_some());
    let from_ring = app
        .get(
            &format!("/api/threads/{thread}/messages?after_seq=0"),
            Some(&alice.token),
        )
        .await;
    assert_eq!(from_ring.status(), 200);

    proxy.set(Mode::Pass);
    let up = ws.recv_type("status").await;
    assert_eq!(up["db"], "up");
    let persisted = ws
        .recv_until("persisted ack", |f| {
            f["type"] == "ack" && f["status"] == "persisted"
        })
        .await;
    assert_eq!(
        (persisted["client_id"].as_str(), persisted["seq"].as_i64()),
        (Some("during"), Some(2))
    );
    let again = app
        .post(
            &format!("/api/threads/{thread}/messages"),
            Some(&alice.token),
            json!({"client_id": "http", "body": "queued too"}),
        )
        .await;
    assert_eq!(
        again.status(),
        200,
        "repeating the POST returns the stored message"
    );
    assert_eq!(app.metric("db_up").await, 1.0);
    assert!(app.metric("db_reconnect_attempts_total").await >= 1.0);
    assert!(app.metric("db_reconnect_success_total").await >= 1.0);
    assert!(app.metric("db_connection_failures_total").await >= 1.0);
    assert_eq!(app.metric("db_pending_writes").await, 0.0);
    assert!(app.metric("db_query_duration_seconds_count").await > 0.0);
}

#[tokio::test]
async fn the_server_starts_with_the_database_down_and_migrates_when_it_returns() {
    let db = TestDb::postgres().await;
    let proxy = FaultProxy::start("127.0.0.1:5432".parse().unwrap()).await;
    proxy.set(Mode::Refuse);
    let settings = test_settings(&db.url_via(proxy.port));
    let app = start(settings, db, false).await;
    assert_eq!(app.get("/healthz", None).await.status(), 200);
    let ready = app.get("/readyz", None).await;
    assert_eq!(ready.status(), 200);
    assert_eq!(
        ready.json::<serde_json::Value>().await.unwrap(),
        json!({"status": "degraded", "db": "down", "broker": "local"})
    );
    let r = app
        .post(
            "/api/auth/register",
            None,
            json!({"username": "early", "password": "correct horse battery"}),
        )
        .await;
    assert_eq!(r.status(), 503);
    assert!(r.headers().get("retry-after").is_some());
    proxy.set(Mode::Pass);
    assert!(app.state.db.wait_up(Duration::from_secs(10)).await);
    for _ in 0..100 {
        if app.state.auth.has_key() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    app.register("early").await;
}
