//! Scale-out: several instances on one PostgreSQL and one Redis, clients spread across them.

use std::{
    collections::BTreeMap,
    process::{Child, Command},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::{
    agents::{agent, follow_known, follow_stream},
    support::{
        TestApp, TestDb, WsClient,
        cluster::instances_on,
        fake_llm::FakeLlm,
        fault_proxy::{FaultProxy, Mode},
        process::{BUILT, create_thread, free_port, register, spawn_server, wait_ready},
        start, test_settings,
    },
};

/// Start `n` in-process instances sharing one fresh PostgreSQL database and a Redis channel.
pub async fn cluster(
    n: usize,
    redis_url: &str,
    configure: impl Fn(&mut emergence::Settings),
) -> (Vec<TestApp>, TestDb) {
    let db = TestDb::postgres().await;
    let apps = instances_on(&db, n, redis_url, configure).await;
    (apps, db)
}

/// Receive until `total` messages arrived; assert they come in `seq` order with no gap or repeat.
pub(crate) async fn receive_all(ws: &mut WsClient, total: i64) {
    let mut last = 0;
    while last < total {
        let f = ws
            .recv_within(Duration::from_secs(20))
            .await
            .unwrap_or_else(|| panic!("stalled at seq {last} of {total}"));
        if f["type"] == "message" {
            let seq = f["seq"].as_i64().unwrap();
            assert_eq!(seq, last + 1, "in order, exactly once");
            last = seq;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_client_on_every_instance_receives_every_message_once_in_order() {
    let _machine = crate::support::heavy().await;
    let (apps, _db) = cluster(3, "redis://127.0.0.1:6379", |_| {}).await;
    let owner = apps[0].register("owner").await;
    let thread = apps[0].create_thread(&owner, "shared").await;
    let mut clients = Vec::new();
    for i in 0..9 {
        let app = &apps[i % 3];
        let mut ws = app.ws(&owner).await;
        ws.subscribe(&thread, None).await;
        clients.push(ws);
    }
    let per_client = 20;
    for round in 0..per_client {
        for (i, ws) in clients.iter_mut().enumerate() {
            ws.send_message(&thread, &format!("c{i}-{round}"), "hello across instances")
                .await;
        }
    }
    let total = (per_client * 9) as i64;
    let readers = clients
        .into_iter()
        .map(|mut ws| tokio::spawn(async move { receive_all(&mut ws, total).await }));
    for r in readers {
        r.await.unwrap();
    }
    for app in &apps {
        assert!(app.metric("broker_published_total").await > 0.0);
        assert!(app.metric("broker_received_total").await > 0.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logout_on_one_instance_is_honoured_by_the_others_within_five_seconds() {
    let (apps, _db) = cluster(3, "redis://127.0.0.1:6379", |_| {}).await;
    let user = apps[0].register("leaver").await;
    let mut b = apps[1].ws(&user).await;
    let mut c = apps[2].ws(&user).await;
    let started = Instant::now();
    assert_eq!(
        apps[0]
            .post("/api/auth/logout", Some(&user.token), json!({}))
            .await
            .status(),
        204
    );
    assert_eq!(b.close_code().await, Some(4401));
    assert_eq!(c.close_code().await, Some(4401));
    assert!(started.elapsed() < Duration::from_secs(5));
    for app in &apps[1..] {
        assert_eq!(app.get("/api/me", Some(&user.token)).await.status(), 401);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_alone_carries_logouts_within_five_seconds_when_redis_misses_them() {
    // No broker at all: the revocation refresh from the database is the only path.
    let db = TestDb::postgres().await;
    let a = start(test_settings(&db.url()), TestDb::Shared(db.url()), true).await;
    let b = start(test_settings(&db.url()), TestDb::Shared(db.url()), true).await;
    let user = a.register("solo").await;
    let mut ws = b.ws(&user).await;
    let started = Instant::now();
    assert_eq!(
        a.post("/api/auth/logout", Some(&user.token), json!({}))
            .await
            .status(),
        204
    );
    assert_eq!(ws.close_code().await, Some(4401));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(b.get("/api/me", Some(&user.token)).await.status(), 401);
}

/// A client that sends, keeps unacknowledged sends, fails over between instances and resumes
/// with `after_seq`, checking order and uniqueness of everything it receives.
async fn roaming_client(
    urls: Vec<String>,
    token: String,
    thread: String,
    name: String,
    sends: usize,
    total: i64,
    got: Arc<Mutex<BTreeMap<String, i64>>>,
) -> Vec<u16> {
    let mut closes = Vec::new();
    let mut pending: BTreeMap<String, String> = BTreeMap::new();
    let mut sent = 0;
    let mut last = 0i64;
    let mut which = 0;
    let mut pace = tokio::time::interval(Duration::from_millis(40));
    'connect: loop {
        let url = &urls[which % urls.len()];
        which += 1;
        let Ok(mut ws) = WsClient::connect(&format!("{url}?token={token}")).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        if ws.recv().await.is_none_or(|w| w["type"] != "welcome") {
            continue;
        }
        ws.send(json!({"type": "subscribe", "thread": thread, "after_seq": last}))
            .await;
        for (cid, body) in pending.clone() {
            ws.send_message(&thread, &cid, &body).await;
        }
        loop {
            if last >= total && pending.is_empty() {
                return closes;
            }
            tokio::select! {
                _ = pace.tick(), if sent < sends => {
                    let cid = format!("{name}-{sent}");
                    pending.insert(cid.clone(), "roaming".into());
                    sent += 1;
                    if ws.send_raw(tokio_tungstenite::tungstenite::Message::Text(
                        json!({"type":"send","thread":thread,"client_id":cid,"body":"roaming"}).to_string().into())).await.is_err() {
                        continue 'connect;
                    }
                }
                f = ws.recv_within(Duration::from_secs(30)) => {
                    let Some(f) = f else {
                        if let Some(Some(frame)) = &ws.closed {
                            closes.push(u16::from(frame.code));
                        }
                        continue 'connect;
                    };
                    match f["type"].as_str() {
                        Some("message") => {
                            let seq = f["seq"].as_i64().unwrap();
                            assert_eq!(seq, last + 1, "{name}: no gap, no duplicate");
                            last = seq;
                            got.lock().unwrap().insert(format!("{name}:{seq}"), seq);
                        }
                        Some("ack") if f["status"] == "persisted" => {
                            pending.remove(f["client_id"].as_str().unwrap());
                        }
                        _ => {}
                    }
                }
            }
        }
    }
}

/// The real binary, as a process that can be killed with SIGKILL.
fn spawn_binary(port: u16, db_url: &str, redis_url: &str, channel: &str) -> Child {
    spawn_server(
        BUILT,
        port,
        &[
            ("DATABASE_URL", db_url),
            ("EMERGENCE_BROKER_URL", redis_url),
            ("EMERGENCE_BROKER_CHANNEL", channel),
        ],
        false,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_one_instance_mid_traffic_loses_and_duplicates_nothing() {
    let _machine = crate::support::heavy().await;
    let db = TestDb::postgres().await;
    let channel = format!("emergence:test:{}", uuid::Uuid::new_v4());
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let mut procs: Vec<Child> = ports
        .iter()
        .map(|p| spawn_binary(*p, &db.url(), "redis://127.0.0.1:6379", &channel))
        .collect();
    for p in &ports {
        wait_ready(*p).await;
    }
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{}", ports[0]);
    let token = register(&http, &base, "roamer").await;
    let thread = create_thread(&http, &base, &token, json!({"title": "failover"})).await;
    let clients = 6;
    let sends = 40;
    let total = (clients * sends) as i64;
    let got = Arc::new(Mutex::new(BTreeMap::new()));
    let mut tasks = Vec::new();
    for i in 0..clients {
        // Each client starts on instance i % 3 and fails over to the next ones.
        let mut urls: Vec<String> = ports
            .iter()
            .map(|p| format!("ws://127.0.0.1:{p}/ws"))
            .collect();
        urls.rotate_left(i % 3);
        tasks.push(tokio::spawn(roaming_client(
            urls,
            token.clone(),
            thread.clone(),
            format!("r{i}"),
            sends,
            total,
            got.clone(),
        )));
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    procs[0].kill().expect("SIGKILL"); // kill -9 mid-traffic
    let _ = procs[0].wait();
    let done = async {
        for t in tasks {
            t.await.unwrap();
        }
    };
    tokio::time::timeout(Duration::from_secs(60), done)
        .await
        .expect("every client got every message");
    assert_eq!(got.lock().unwrap().len(), clients * total as usize);
    let pool = sqlx::PgPool::connect(&db.url()).await.unwrap();
    let (count, max): (i64, i64) = sqlx::query_as("SELECT count(*), max(seq) FROM messages")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(
        (count, max),
        (total, total),
        "every send stored exactly once, gapless"
    );
    for p in procs.iter_mut().skip(1) {
        let _ = p.kill();
        let _ = p.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ten_second_redis_cut_mid_traffic_loses_nothing() {
    let _machine = crate::support::heavy().await;
    let proxy = FaultProxy::start("127.0.0.1:6379".parse().unwrap()).await;
    let (apps, _db) = cluster(3, &format!("redis://127.0.0.1:{}", proxy.port), |_| {}).await;
    let owner = apps[0].register("owner").await;
    let thread = apps[0].create_thread(&owner, "cut").await;
    let mut listeners = Vec::new();
    for app in &apps {
        let mut ws = app.ws(&owner).await;
        ws.subscribe(&thread, None).await;
        listeners.push(ws);
    }
    let stop = CancellationToken::new();
    let sent = Arc::new(Mutex::new(0i64));
    let mut senders = Vec::new();
    for (i, app) in apps.iter().enumerate() {
        let mut ws = app.ws(&owner).await;
        let (stop, thread, sent) = (stop.clone(), thread.clone(), sent.clone());
        senders.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.is_cancelled() {
                ws.send_message(&thread, &format!("s{i}-{n}"), "through the cut")
                    .await;
                let ack = ws
                    .recv_until("ack", |f| f["type"] == "ack" && f["status"] == "persisted")
                    .await;
                assert!(ack["seq"].is_i64());
                *sent.lock().unwrap() += 1;
                n += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    proxy.set(Mode::Refuse);
    proxy.reset_all();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let r: serde_json::Value = apps[1].get("/readyz", None).await.json().await.unwrap();
    assert_eq!(
        r,
        json!({"status": "degraded", "db": "up", "broker": "down"}),
        "still 200, broker down"
    );
    tokio::time::sleep(Duration::from_millis(8500)).await;
    proxy.set(Mode::Pass);
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.cancel();
    for s in senders {
        s.await.unwrap();
    }
    let total = *sent.lock().unwrap();
    assert!(total > 50);
    for ws in listeners.iter_mut() {
        receive_all(ws, total).await;
    }
    // Reconnection backs off with jitter up to 5 s, so an instance may still be waiting for its
    // next attempt when every message has arrived (the database fills delivery gaps meanwhile);
    // and the resync that follows a reconnect runs on the inbound task, just after `broker_up`
    // turns 1. Wait, bounded, for each to be back on Redis and to have resynced. The listeners
    // stay subscribed meanwhile: a resync re-reads the threads that have subscribers here, so an
    // instance that reconnects after its last listener left has nothing to resync.
    for app in &apps {
        for _ in 0..100 {
            if app.metric("broker_up").await == 1.0
                && app.metric("broker_resync_total").await >= 1.0
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let mut reconnects = 0.0;
    for app in &apps {
        reconnects += app.metric("broker_reconnects_total").await;
        assert!(app.metric("broker_resync_total").await >= 1.0);
        assert_eq!(app.metric("broker_up").await, 1.0);
    }
    assert!(reconnects >= 3.0);
    drop(listeners);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_streams_reach_and_resume_on_every_instance() {
    let (_fake, url) = FakeLlm::start().await;
    let (apps, _db) = cluster(2, "redis://127.0.0.1:6379", |s| {
        s.agents = vec![agent("slow", "openai", "slow-100-40")];
        s.providers.openai_base_url = Some(format!("{url}/v1"));
        s.providers.openai_api_key = Some(emergence::settings::Secret::new("k"));
    })
    .await;
    let owner = apps[0].register("owner").await;
    let thread = apps[0].create_thread(&owner, "streams").await;
    let mut on_b = apps[1].ws(&owner).await;
    on_b.subscribe(&thread, None).await;
    let mut on_a = apps[0].ws(&owner).await;
    on_a.subscribe(&thread, None).await;
    on_a.send(json!({"type":"send","thread":thread,"client_id":"q","body":"go","agent":"slow"}))
        .await;
    // Instance B's client sees the stream start and some chunks, leaves, and comes back on B.
    let stream_id = on_b.recv_type("stream_start").await["stream_id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut text = String::new();
    for _ in 0..20 {
        let f = on_b.recv_type("stream_chunk").await;
        assert_eq!(f["offset"].as_u64().unwrap() as usize, text.chars().count());
        text.push_str(f["delta"].as_str().unwrap());
    }
    drop(on_b);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let mut back = apps[1].ws(&owner).await;
    back.subscribe(&thread, Some(1)).await;
    let seen = follow_stream(&mut back).await;
    assert_eq!(seen.stream_id, stream_id);
    assert_eq!(seen.text, FakeLlm::full_text("slow-100-40"));
    assert!(seen.end.is_some());
    // The requester on A saw the same text.
    let first = on_a.recv_type("stream_start").await;
    let a_seen = follow_known(&mut on_a, first["stream_id"].as_str().unwrap(), "").await;
    assert_eq!(a_seen.text, seen.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_traffic_drains_with_1012_and_clients_resume_elsewhere_losing_nothing() {
    let _machine = crate::support::heavy().await;
    let db = TestDb::postgres().await;
    let channel = format!("emergence:test:{}", uuid::Uuid::new_v4());
    let ports: Vec<u16> = (0..2).map(|_| free_port()).collect();
    let mut procs: Vec<Child> = ports
        .iter()
        .map(|p| spawn_binary(*p, &db.url(), "redis://127.0.0.1:6379", &channel))
        .collect();
    for p in &ports {
        wait_ready(*p).await;
    }
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{}", ports[1]);
    let token = register(&http, &base, "drainee").await;
    let thread = create_thread(&http, &base, &token, json!({"title": "drain"})).await;
    let (clients, sends) = (6, 40);
    let total = (clients * sends) as i64;
    let got = Arc::new(Mutex::new(BTreeMap::new()));
    let mut tasks = Vec::new();
    for i in 0..clients {
        // Every client starts on the instance that will be drained.
        let urls: Vec<String> = ports
            .iter()
            .map(|p| format!("ws://127.0.0.1:{p}/ws"))
            .collect();
        tasks.push(tokio::spawn(roaming_client(
            urls,
            token.clone(),
            thread.clone(),
            format!("d{i}"),
            sends,
            total,
            got.clone(),
        )));
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    let status = Command::new("kill")
        .args(["-TERM", &procs[0].id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let done = async {
        let mut closes = Vec::new();
        for t in tasks {
            closes.push(t.await.unwrap());
        }
        closes
    };
    let closes = tokio::time::timeout(Duration::from_secs(60), done)
        .await
        .expect("every client got every message");
    for c in &closes {
        assert!(
            c.contains(&1012),
            "every client was told 1012 by the draining instance: {closes:?}"
        );
    }
    let exit = procs[0].wait().unwrap();
    assert!(
        exit.success(),
        "the drained instance exits cleanly: {exit:?}"
    );
    assert_eq!(got.lock().unwrap().len(), clients * total as usize);
    let pool = sqlx::PgPool::connect(&db.url()).await.unwrap();
    let (count, max): (i64, i64) = sqlx::query_as("SELECT count(*), max(seq) FROM messages")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!((count, max), (total, total), "zero lost, zero duplicated");
    let _ = procs[1].kill();
    let _ = procs[1].wait();
}
