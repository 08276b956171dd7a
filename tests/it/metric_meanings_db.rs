//! The documented meaning of the database and broker metrics (docs/operations.md#metrics),
//! asserted through real faults (PostgreSQL and Redis behind the test's fault proxy): an
//! outage's attempts, failures and reconnection are counted exactly as the server's own log
//! lines tell them, and the broker counters follow one message and one Redis cut.

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    time::Duration,
};

use serde_json::{Value, json};

use crate::support::{
    TestApp, TestDb,
    fault_proxy::{FaultProxy, Mode},
    process::{BUILT, KillOnDrop, create_thread, free_port, register, wait_ready},
    scrape::{Scrape, deltas},
    start, test_settings,
};

const PG: &str = "127.0.0.1:5432";

/// Poll `port`'s metrics until `check` holds (bounded).
async fn scrape_until(
    http: &reqwest::Client,
    port: u16,
    what: &str,
    check: impl Fn(&Scrape) -> bool,
) -> Scrape {
    for _ in 0..300 {
        let m = Scrape::at(http, port).await;
        if check(&m) {
            return m;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what}: not within 15 s");
}

/// The server's JSON log lines whose message starts with `prefix`.
fn log_lines(path: &std::path::Path, prefix: &str) -> Vec<Value> {
    let file = std::fs::File::open(path).unwrap();
    BufReader::new(file)
        .lines()
        .map_while(Result::ok)
        .filter_map(|l| serde_json::from_str::<Value>(&l).ok())
        .filter(|v| v["message"].as_str().is_some_and(|m| m.starts_with(prefix)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_counts_each_attempt_failure_and_reconnection_as_the_logs_tell_it() {
    const QUEUED: usize = 5;
    let db = TestDb::postgres().await;
    let proxy = FaultProxy::start(PG.parse().unwrap()).await;
    let port = free_port();
    let log = std::env::temp_dir().join(format!("emergence-outage-{}.log", uuid::Uuid::new_v4()));
    let server = KillOnDrop(
        Command::new(BUILT)
            .arg("serve")
            .env("PORT", port.to_string())
            .env("EMERGENCE_HOST", "127.0.0.1")
            .env("DATABASE_URL", db.url_via(proxy.port))
            .env("EMERGENCE_REGISTRATION", "open")
            .env("EMERGENCE_LOG", "info")
            .env("EMERGENCE_LOG_FORMAT", "json")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("the emergence binary starts"),
    );
    wait_ready(port).await;
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let token = register(&http, &base, "alice").await;
    let thread = create_thread(&http, &base, &token, json!({"title": "outage"})).await;
    let messages = format!("{base}/api/threads/{thread}/messages");
    let before = Scrape::at(&http, port).await;
    assert_eq!(before.get("db_up"), 1.0);
    assert_eq!(before.get("db_pending_writes"), 0.0);

    // The database restarts: open connections are reset, new ones refused.
    proxy.set(Mode::Refuse);
    proxy.reset_all();
    scrape_until(&http, port, "db_up 0", |m| m.get("db_up") == 0.0).await;
    for i in 0..QUEUED {
        let r = http
            .post(&messages)
            .bearer_auth(&token)
            .json(&json!({"client_id": format!("q{i}"), "body": "while down"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202, "queued");
    }
    // Writes are waiting: the instance now tries every 250 ms, up to 4 attempts at once.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let during = Scrape::at(&http, port).await;
    assert_eq!(during.get("db_up"), 0.0);
    assert_eq!(during.get("db_pending_writes"), QUEUED as f64);
    assert_eq!(
        during.moved_since(&before, "db_reconnect_"),
        deltas(&[("db_reconnect_attempts_total", 1.0)]),
        "one reconnection begun, none completed yet"
    );

    proxy.set(Mode::Pass);
    let after = scrape_until(&http, port, "back up and flushed", |m| {
        m.get("db_up") == 1.0 && m.get("db_pending_writes") == 0.0
    })
    .await;
    let reconnected = log_lines(&log, "database reconnected");
    assert_eq!(reconnected.len(), 1, "{reconnected:?}");
    let n = reconnected[0]["attempts"].as_u64().unwrap() as f64;
    let failed = reconnected[0]["failed"].as_u64().unwrap() as f64;
    let moved = |name: &str| after.get(name) - before.get(name);
    assert_eq!(
        moved("db_connect_attempts_total"),
        n,
        "every try counts, as the log says"
    );
    assert!(n >= 8.0, "{n} attempts in 3 s of hedged probing");
    assert!(
        failed <= n - 1.0 && n - 1.0 - failed <= 3.0,
        "{failed} of {n} attempts failed; at most 3 were still running when one connected"
    );
    // The attempts that failed, plus the operation(s) that found the database gone (the
    // heartbeat, and possibly a concurrent one).
    let failures = moved("db_connection_failures_total");
    assert!(
        (1.0..=3.0).contains(&(failures - failed)),
        "{failures} failures, {failed} failed attempts"
    );
    println!(
        "outage: {n} attempts (log and db_connect_attempts_total), {failed} failed, \
         {failures} db_connection_failures_total"
    );
    assert_eq!(moved("db_reconnect_attempts_total"), 1.0, "one outage");
    assert_eq!(moved("db_reconnect_success_total"), 1.0, "one reconnection");
    assert_eq!(moved("messages_persisted_total"), QUEUED as f64);
    // The log's failed-attempt lines are the 1st, 2nd, 4th, 8th... failures of the outage.
    let logged: Vec<u64> = log_lines(&log, "database connection attempt failed")
        .iter()
        .map(|l| l["failed"].as_u64().unwrap())
        .collect();
    let powers: Vec<u64> = (0..20)
        .map(|k| 1u64 << k)
        .filter(|p| *p as f64 <= failed)
        .collect();
    assert_eq!(logged, powers);
    assert_eq!(log_lines(&log, "database connection lost").len(), 1);
    // One source of truth: `emergence guard` reading this log counts the same failures and
    // reconnections as the counters (which started at 0 with the process).
    let text = std::fs::read_to_string(&log).unwrap();
    let guard = emergence_ops::guard::analyse(&text).expect("guard reads the log");
    assert_eq!(
        guard.db.failures.count as f64,
        after.get("db_connection_failures_total"),
        "guard's database failures = db_connection_failures_total"
    );
    assert_eq!(
        guard.db.reconnects.count as f64,
        after.get("db_reconnect_success_total")
    );
    assert_eq!(
        guard.db.losses.count as f64,
        after.get("db_reconnect_attempts_total")
    );
    drop(server);
    let _ = std::fs::remove_file(&log);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_up_attempts_count_and_db_up_stays_0_until_the_first_connection() {
    let db = TestDb::postgres().await;
    let proxy = FaultProxy::start(PG.parse().unwrap()).await;
    proxy.set(Mode::Refuse);
    let app = start(test_settings(&db.url_via(proxy.port)), db, false).await;
    let mut m = Scrape::of(&app).await;
    for _ in 0..150 {
        if m.get("db_connection_failures_total") >= 1.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        m = Scrape::of(&app).await;
    }
    assert_eq!(m.get("db_up"), 0.0, "0 until the first connection");
    assert!(m.get("db_connection_failures_total") >= 1.0);
    assert!(m.get("db_connect_attempts_total") >= m.get("db_connection_failures_total"));
    assert_eq!(m.get("db_reconnect_attempts_total"), 0.0, "not an outage");

    proxy.set(Mode::Pass);
    assert!(app.state.db.wait_up(Duration::from_secs(15)).await);
    let up = Scrape::of(&app).await;
    assert_eq!(up.get("db_up"), 1.0);
    // One attempt at a time (no writes waiting): every attempt but the last failed.
    assert_eq!(
        up.get("db_connect_attempts_total"),
        up.get("db_connection_failures_total") + 1.0
    );
    assert_eq!(up.get("db_reconnect_attempts_total"), 0.0);
    assert_eq!(up.get("db_reconnect_success_total"), 0.0);
    // Every operation is timed, the heartbeat's pings (every second) included.
    let idle = Scrape::of(&app).await;
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let later = Scrape::of(&app).await;
    let pings =
        later.get("db_query_duration_seconds_count") - idle.get("db_query_duration_seconds_count");
    assert!(pings >= 2.0, "{pings} operations timed in 2.5 s of idling");
}

/// Two instances on one database and one Redis channel; the second reaches Redis through a
/// fault proxy.
async fn two_instances(proxy: &FaultProxy) -> (TestApp, TestApp, TestDb) {
    let db = TestDb::postgres().await;
    let channel = format!("emergence:test:{}", uuid::Uuid::new_v4());
    let mut apps = Vec::new();
    for redis in [
        "redis://127.0.0.1:6379".to_string(),
        format!("redis://127.0.0.1:{}", proxy.port),
    ] {
        let mut s = test_settings(&db.url());
        s.broker.url = Some(emergence::settings::Secret::new(redis));
        s.broker.channel = channel.clone();
        apps.push(start(s, TestDb::Shared(db.url()), true).await);
    }
    for app in &apps {
        scrape_until(&app.http, app.port, "broker up", |m| {
            m.get("broker_up") == 1.0
        })
        .await;
    }
    let b = apps.pop().unwrap();
    let a = apps.pop().unwrap();
    (a, b, db)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_counters_follow_one_message_and_one_redis_cut() {
    let proxy = FaultProxy::start("127.0.0.1:6379".parse().unwrap()).await;
    let (a, b, _db) = two_instances(&proxy).await;
    let owner = a.register("owner").await;
    let thread = a.create_thread(&owner, "broker").await;
    let mut listener = b.ws(&owner).await;
    listener.subscribe(&thread, None).await;

    // One message on A reaches B's subscriber through Redis.
    let (a0, b0) = (Scrape::of(&a).await, Scrape::of(&b).await);
    let r = a
        .post(
            &format!("/api/threads/{thread}/messages"),
            Some(&owner.token),
            json!({"client_id": "one", "body": "across"}),
        )
        .await;
    assert_eq!(r.status(), 201);
    assert_eq!(listener.recv_type("message").await["client_id"], "one");
    let (a1, b1) = (Scrape::of(&a).await, Scrape::of(&b).await);
    assert_eq!(
        a1.moved_since(&a0, "broker_"),
        deltas(&[("broker_published_total", 1.0)]),
        "A published one event; its own echo is not counted as received"
    );
    assert_eq!(
        b1.moved_since(&b0, "broker_"),
        deltas(&[("broker_received_total{relevance=\"relevant\"}", 1.0)]),
        "B received one event, for a thread it serves"
    );

    // B loses Redis, then gets it back: one reconnection, one re-read of its subscribed thread.
    proxy.set(Mode::Refuse);
    proxy.reset_all();
    let down = scrape_until(&b.http, b.port, "broker down", |m| {
        m.get("broker_up") == 0.0
    })
    .await;
    assert_eq!(down.get("broker_up"), 0.0);
    proxy.set(Mode::Pass);
    let b2 = scrape_until(&b.http, b.port, "broker back", |m| {
        m.get("broker_up") == 1.0 && m.get("broker_resync_total") > b1.get("broker_resync_total")
    })
    .await;
    assert_eq!(
        b2.moved_since(&b1, "broker_"),
        deltas(&[
            ("broker_reconnects_total", 1.0),
            ("broker_resync_total", 1.0)
        ]),
    );
}
