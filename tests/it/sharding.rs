//! Sharded fan-out across instances: an instance receives the events of the threads it serves,
//! not the fleet's. Six real server processes on one PostgreSQL and one Redis; traffic on
//! threads served by instance A only; the five others' broker messages and CPU time are read
//! from `/metrics` and `/proc`. The same run with `EMERGENCE_BROKER_SHARDING=off` is the control
//! (every instance receives everything), so the figures are a ratio from one run.

use std::time::Duration;

use emergence_client::metrics;
use serde_json::json;

use crate::support::{
    TestDb, WsClient,
    process::{BUILT, KillOnDrop, create_thread, free_port, register, spawn_server, wait_ready},
};

/// CPU time (user + system) a process has used, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which is in parentheses and may hold spaces).
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0 // USER_HZ
}

/// The broker messages instance `port` received with this relevance, read with the typed
/// client's `/metrics` reader.
async fn received(http: &reqwest::Client, port: u16, relevance: &str) -> f64 {
    let client = emergence_client::Client::with_http(
        format!("http://127.0.0.1:{port}").parse().unwrap(),
        http.clone(),
    );
    let text = client.metrics_text(None).await.unwrap();
    metrics::samples(&text)
        .filter(|s| s.name == "broker_received_total" && s.has_label("relevance", relevance))
        .map(|s| s.value)
        .sum()
}

/// What the five bystanders did while instance A served all the traffic.
#[derive(Debug)]
struct Run {
    events: i64,
    a_cpu: f64,
    bystander_cpu: Vec<f64>,
    bystander_relevant: Vec<f64>,
    bystander_irrelevant: Vec<f64>,
}

/// Six instances (`sharding`); 4 threads on A with 2 sockets each; 1,000 messages sent on A.
async fn run(sharding: &str) -> Run {
    let db = TestDb::postgres().await;
    let channel = format!("emergence:test:{}", uuid::Uuid::new_v4());
    let ports: Vec<u16> = (0..6).map(|_| free_port()).collect();
    let procs: Vec<KillOnDrop> = ports
        .iter()
        .map(|p| {
            KillOnDrop(spawn_server(
                BUILT,
                *p,
                &[
                    ("DATABASE_URL", &db.url()),
                    ("EMERGENCE_BROKER_URL", "redis://127.0.0.1:6379"),
                    ("EMERGENCE_BROKER_CHANNEL", &channel),
                    ("EMERGENCE_BROKER_SHARDING", sharding),
                ],
                false,
            ))
        })
        .collect();
    for p in &ports {
        wait_ready(*p).await;
    }
    let http = reqwest::Client::new();
    let a = format!("http://127.0.0.1:{}", ports[0]);
    let token = register(&http, &a, "busy").await;
    let mut threads = Vec::new();
    for i in 0..4 {
        threads.push(create_thread(&http, &a, &token, json!({"title": format!("t{i}")})).await);
    }
    let mut sockets = Vec::new();
    for t in &threads {
        for _ in 0..2 {
            let mut ws =
                WsClient::connect(&format!("ws://127.0.0.1:{}/ws?token={token}", ports[0]))
                    .await
                    .unwrap();
            ws.subscribe(t, None).await;
            sockets.push(ws);
        }
    }
    // Let start-up work settle before measuring.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let cpu_before: Vec<f64> = procs.iter().map(|p| cpu_seconds(p.0.id())).collect();
    let received_before = {
        let mut v = Vec::new();
        for p in &ports {
            v.push((
                received(&http, *p, "relevant").await,
                received(&http, *p, "irrelevant").await,
            ));
        }
        v
    };
    let per_thread = 250;
    for n in 0..per_thread {
        for (i, t) in threads.iter().enumerate() {
            sockets[i * 2]
                .send_message(t, &format!("m{i}-{n}"), "busy thread")
                .await;
        }
    }
    let total = per_thread * threads.len();
    for ws in sockets.iter_mut() {
        let mut got = 0;
        while got < per_thread {
            let f = ws
                .recv_within(Duration::from_secs(20))
                .await
                .expect("every message reaches A's sockets");
            if f["type"] == "message" {
                got += 1;
            }
        }
    }
    // Give the bystanders time to receive whatever they were going to.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut out = Run {
        events: total as i64,
        a_cpu: cpu_seconds(procs[0].0.id()) - cpu_before[0],
        bystander_cpu: Vec::new(),
        bystander_relevant: Vec::new(),
        bystander_irrelevant: Vec::new(),
    };
    for (i, p) in ports.iter().enumerate().skip(1) {
        out.bystander_cpu
            .push(cpu_seconds(procs[i].0.id()) - cpu_before[i]);
        out.bystander_relevant
            .push(received(&http, *p, "relevant").await - received_before[i].0);
        out.bystander_irrelevant
            .push(received(&http, *p, "irrelevant").await - received_before[i].1);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_receive_only_the_threads_they_serve() {
    let sharded = run("on").await;
    let control = run("off").await;
    eprintln!("sharded: {sharded:?}\ncontrol (sharding off): {control:?}");
    // The control: without sharding every bystander receives every message, all irrelevant.
    for irrelevant in &control.bystander_irrelevant {
        assert!(*irrelevant >= control.events as f64, "{control:?}");
    }
    // Sharded: the bystanders receive none of the busy threads' events.
    for (relevant, irrelevant) in sharded
        .bystander_relevant
        .iter()
        .zip(&sharded.bystander_irrelevant)
    {
        assert_eq!(*irrelevant, 0.0, "{sharded:?}");
        assert!(*relevant <= 5.0, "only instance-wide events: {sharded:?}");
    }
    // And their CPU stays near zero next to the instance that serves the traffic, while the
    // control's bystanders pay for every event.
    let idle: f64 = sharded.bystander_cpu.iter().sum::<f64>() / 5.0;
    let paying: f64 = control.bystander_cpu.iter().sum::<f64>() / 5.0;
    assert!(
        idle < sharded.a_cpu * 0.2,
        "bystander CPU {idle:.3} s vs A {:.3} s",
        sharded.a_cpu
    );
    assert!(
        idle < paying,
        "sharded bystanders {idle:.3} s vs control {paying:.3} s"
    );
}
