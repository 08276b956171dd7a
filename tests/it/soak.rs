//! The soak scenario (a bench scenario, not part of CI: `bench/run soak`, or
//! `SOAK_SECS=600 cargo test --release --test it soak -- --ignored --nocapture`):
//! mixed traffic against the real binary for SOAK_SECS (default 600) with a 30 s database outage
//! in the middle. Afterwards RSS and open file descriptors are back at their baseline (±5%) and
//! no acknowledged message is lost.
//!
//! Like is compared with like: the baseline is taken after a 30 s warm-up with the same 40 clients
//! connected and traffic paused for 10 s, the end figure after the run with the same clients
//! connected and traffic stopped for 10 s (a figure taken mid-traffic would count in-flight
//! buffers and keep-alive connections as "baseline").

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::security::proc_kib;
use crate::support::{
    TestDb, WsClient,
    fault_proxy::{FaultProxy, Mode},
    process::{BUILT, KillOnDrop, create_thread, free_port, register, spawn_server, wait_ready},
};

fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

#[derive(Default)]
struct Tally {
    sent: HashMap<String, String>,
    acked: HashMap<String, i64>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a 10-minute bench scenario: bench/run soak"]
async fn soak_mixed_traffic_with_a_database_outage_returns_to_baseline() {
    let _machine = crate::support::heavy().await;
    let secs: u64 = std::env::var("SOAK_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(600);
    let db = TestDb::postgres().await;
    let proxy = FaultProxy::start("127.0.0.1:5432".parse().unwrap()).await;
    let port = free_port();
    let db_url = db.url_via(proxy.port);
    // EMERGENCE_BIN: another build of the server (the allocator comparison in
    // docs/performance.md runs this scenario against each).
    let bin = std::env::var("EMERGENCE_BIN").unwrap_or_else(|_| BUILT.into());
    let server = KillOnDrop(spawn_server(&bin, port, &[("DATABASE_URL", &db_url)], true));
    let pid = server.0.id();
    let base = format!("http://127.0.0.1:{port}");
    // No idle keep-alive connections: each history read is its own connection, so open
    // descriptors count the server's own, not the client pool's.
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    wait_ready(port).await;
    let token = register(&http, &base, "soaker").await;
    let mut threads = Vec::new();
    for i in 0..5 {
        let body = json!({"title": format!("soak {i}"), "agents": ["anima"]});
        threads.push(create_thread(&http, &base, &token, body).await);
    }
    let ws_url = format!("ws://127.0.0.1:{port}/ws?token={token}");
    let tally: Arc<Mutex<Tally>> = Arc::default();
    let traffic = CancellationToken::new();
    let paused = Arc::new(AtomicBool::new(false));
    let mut idle_clients = Vec::new();
    // 40 clients: send every 250 ms, reconnect every ~20 s, read history now and then, ask an
    // agent every ~50 messages; all keep unacknowledged sends and repeat them after reconnecting.
    let mut tasks = Vec::new();
    for c in 0..40 {
        let paused = paused.clone();
        let (ws_url, thread, tally, stop, http, base, token) = (
            ws_url.clone(),
            threads[c % 5].clone(),
            tally.clone(),
            traffic.clone(),
            http.clone(),
            base.clone(),
            token.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut pending: HashMap<String, String> = HashMap::new();
            let mut n = 0u64;
            while !stop.is_cancelled() || !pending.is_empty() {
                let Ok(mut ws) = WsClient::connect(&ws_url).await else {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                };
                ws.recv().await;
                ws.send(json!({"type":"subscribe","thread":thread})).await;
                for (cid, body) in pending.clone() {
                    ws.send_message(&thread, &cid, &body).await;
                }
                let session_end = Instant::now() + Duration::from_secs(15 + (c as u64 % 10));
                let mut tick = tokio::time::interval(Duration::from_millis(250));
                while Instant::now() < session_end || paused.load(Ordering::Relaxed) {
                    tokio::select! {
                        _ = tick.tick() => {
                            if stop.is_cancelled() {
                                if pending.is_empty() { break; }
                                continue;
                            }
                            if paused.load(Ordering::Relaxed) { continue; }
                            n += 1;
                            let cid = format!("s{c}-{n}");
                            let body = format!("soak message {n}");
                            tally.lock().unwrap().sent.insert(cid.clone(), body.clone());
                            pending.insert(cid.clone(), body.clone());
                            let mut frame = json!({"type":"send","thread":thread,"client_id":cid,"body":body});
                            if n.is_multiple_of(50) { frame["agent"] = json!("anima"); }
                            if ws.send_raw(tokio_tungstenite::tungstenite::Message::Text(frame.to_string().into())).await.is_err() { break; }
                            if n.is_multiple_of(40) {
                                let _ = http.get(format!("{base}/api/threads/{thread}/messages?limit=20")).bearer_auth(&token).send().await;
                            }
                        }
                        f = ws.recv_within(Duration::from_secs(5)) => {
                            match f {
                                Some(f) if f["type"] == "ack" && f["status"] == "persisted" => {
                                    let cid = f["client_id"].as_str().unwrap().to_string();
                                    pending.remove(&cid);
                                    tally.lock().unwrap().acked.insert(cid, f["seq"].as_i64().unwrap());
                                }
                                Some(_) => {}
                                None if ws.closed.is_some() => break,
                                None => {}
                            }
                        }
                    }
                }
                if stop.is_cancelled() && pending.is_empty() {
                    return ws; // stays connected, idle, for the final measurement
                }
            }
            WsClient::connect(&ws_url).await.unwrap()
        }));
    }
    // Baseline after warm-up, with the clients connected and traffic paused.
    tokio::time::sleep(Duration::from_secs(30)).await;
    paused.store(true, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(10)).await;
    let (rss0, fds0) = (proc_kib(pid, "VmRSS:"), fds(pid));
    eprintln!("soak baseline: RSS {rss0} KiB, {fds0} fds");
    paused.store(false, Ordering::Relaxed);
    let started = Instant::now();
    let outage_at = Duration::from_secs(secs / 2);
    let mut outage_done = false;
    while started.elapsed() < Duration::from_secs(secs) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if !outage_done && started.elapsed() >= outage_at {
            eprintln!("soak: database outage for 30 s");
            proxy.set(Mode::Refuse);
            proxy.reset_all();
            tokio::time::sleep(Duration::from_secs(30)).await;
            proxy.set(Mode::Pass);
            outage_done = true;
        }
        if started.elapsed().as_secs().is_multiple_of(60) {
            eprintln!(
                "soak: {:?} RSS {} KiB, {} fds",
                started.elapsed(),
                proc_kib(pid, "VmRSS:"),
                fds(pid)
            );
        }
    }
    traffic.cancel();
    for t in tasks {
        idle_clients.push(
            tokio::time::timeout(Duration::from_secs(120), t)
                .await
                .expect("clients drain")
                .unwrap(),
        );
    }
    tokio::time::sleep(Duration::from_secs(10)).await;
    let (rss1, fds1) = (proc_kib(pid, "VmRSS:"), fds(pid));
    eprintln!(
        "soak end: RSS {rss1} KiB ({:+.1}%), {fds1} fds ({:+.1}%)",
        pct(rss0, rss1),
        pct(fds0 as u64, fds1 as u64)
    );
    let (acked, sent_count) = {
        let t = tally.lock().unwrap();
        (t.acked.clone(), t.sent.len())
    };
    let pool = sqlx::PgPool::connect(&db.url()).await.unwrap();
    let rows: Vec<(String, i64)> =
        sqlx::query_as("SELECT client_id, seq FROM messages WHERE author_kind = 'user'")
            .fetch_all(&pool)
            .await
            .unwrap();
    let stored: HashMap<String, i64> = rows.into_iter().collect();
    for (cid, seq) in &acked {
        assert_eq!(stored.get(cid), Some(seq), "acknowledged {cid} is stored");
    }
    assert_eq!(stored.len(), sent_count, "every send stored exactly once");
    eprintln!("soak: {sent_count} messages sent and stored");
    assert!(
        pct(rss0, rss1).abs() <= 5.0 || rss1 <= rss0,
        "RSS back to baseline: {rss0} -> {rss1} KiB"
    );
    assert!(
        pct(fds0 as u64, fds1 as u64).abs() <= 5.0,
        "fds back to baseline: {fds0} -> {fds1}"
    );
    drop(idle_clients);
    drop(server);
}

fn pct(a: u64, b: u64) -> f64 {
    (b as f64 - a as f64) * 100.0 / a.max(1) as f64
}
