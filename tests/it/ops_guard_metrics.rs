//! `emergence guard` and `/metrics` tell the same story: the real binary runs with its JSON logs
//! captured, an incident is played against it (WebSockets refused, unauthorized, closed with
//! 1007 and 1009, rate-limited logins, sends and connections, 503s), `/metrics` is scraped at the
//! end, and guard's counts from the captured log must equal the counters for every category it
//! reports.

use std::{
    process::{Command, Stdio},
    time::Duration,
};

use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::{
    Message,
    protocol::frame::{
        Frame,
        coding::{Data, OpCode},
    },
};

use crate::support::{
    TestDb, WsClient,
    process::{BUILT, KillOnDrop, free_port, wait_ready},
    scrape::Scrape,
};

/// Tight limits, so that a few seconds of traffic produce every kind of refusal.
const LIMITS: &str = r#"
[limits]
auth_rate_per_min = 60
auth_burst = 4
send_rate_per_sec = 1
send_burst = 3
ws_connect_rate_per_min = 60
ws_connect_burst = 40
ws_per_user = 3
"#;

/// 5xx answers: `http_requests_total` with a status starting with 5.
fn sum_5xx(metrics: &Scrape) -> f64 {
    metrics.sum("http_requests_total", &["status=\"5"])
}

/// The binary serving on `port`, its stderr (JSON logs) in `log`, beside its SQLite database
/// in a directory removed with the [`TestDb`].
struct Server {
    _process: KillOnDrop,
    _db: TestDb,
    port: u16,
    log: std::path::PathBuf,
    http: reqwest::Client,
}

impl Server {
    async fn start() -> Server {
        let db = TestDb::sqlite();
        let dir = db.sqlite_dir().unwrap().clone();
        let config = dir.join("emergence.toml");
        std::fs::write(&config, LIMITS).unwrap();
        let log = dir.join("server.log");
        let port = free_port();
        let child = Command::new(BUILT)
            .arg("serve")
            .env("PORT", port.to_string())
            .env("EMERGENCE_HOST", "127.0.0.1")
            .env("DATABASE_URL", db.url())
            .env("EMERGENCE_REGISTRATION", "open")
            .env("EMERGENCE_CONFIG", &config)
            .env("EMERGENCE_LOG", "info")
            .env("EMERGENCE_LOG_FORMAT", "json")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("the emergence binary starts");
        let process = KillOnDrop(child);
        wait_ready(port).await;
        Server {
            _process: process,
            _db: db,
            port,
            log,
            http: reqwest::Client::new(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn ws_url(&self, token: &str) -> String {
        format!("ws://127.0.0.1:{}/ws?token={token}", self.port)
    }

    async fn post(&self, path: &str, token: Option<&str>, body: Value) -> reqwest::Response {
        let mut req = self.http.post(self.url(path)).json(&body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().await.unwrap()
    }

    async fn register(&self, username: &str) -> String {
        let r = self
            .post(
                "/api/auth/register",
                None,
                json!({"username": username, "password": "correct horse battery"}),
            )
            .await;
        assert_eq!(r.status(), 201, "register {username}");
        r.json::<Value>().await.unwrap()["token"]
            .as_str()
            .unwrap()
            .to_string()
    }

    async fn metrics(&self) -> Scrape {
        Scrape::at(&self.http, self.port).await
    }

    /// An authenticated WebSocket that has its `welcome`.
    async fn ws(&self, token: &str) -> WsClient {
        let mut ws = WsClient::connect(&self.ws_url(token)).await.unwrap();
        assert_eq!(ws.recv().await.unwrap()["type"], "welcome");
        ws
    }
}

/// Close from the client side and wait for the server's close frame.
async fn close(mut ws: WsClient) {
    let _ = ws.stream.close(None).await;
    let _ = ws.close_code().await;
}

fn raw_text(bytes: Vec<u8>) -> Message {
    Message::Frame(Frame::message(bytes, OpCode::Data(Data::Text), true))
}

/// The incident: every WebSocket outcome, three rate-limit scopes plus the per-user cap, and
/// 503s before the upgrade.
async fn play_incident(server: &Server) {
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let thread = server
        .post("/api/threads", Some(&alice), json!({"title": "incident"}))
        .await
        .json::<Value>()
        .await
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();

    // Three sockets for alice, a fourth refused by the per-user cap (429), then closed normally.
    let mut open = Vec::new();
    for _ in 0..3 {
        open.push(server.ws(&alice).await);
    }
    let fourth = WsClient::connect(&server.ws_url(&alice)).await;
    assert!(fourth.is_err(), "the per-user cap refuses a fourth socket");
    // One of them floods sends past the per-user limit: `rate_limited` error frames.
    let ws = &mut open[0];
    for i in 0..10 {
        ws.send_message(&thread, &format!("flood-{i}"), "spam")
            .await;
    }
    let (mut answered, mut limited) = (0, 0);
    while answered < 10 {
        let f = ws.recv().await.expect("an answer to every send");
        if f["code"] == "rate_limited" {
            limited += 1;
        }
        if f["code"] == "rate_limited" || (f["type"] == "ack" && f["status"] == "persisted") {
            answered += 1;
        }
    }
    assert!(limited > 0, "sends met the per-user limit");
    for ws in open {
        close(ws).await;
    }

    // Ordinary connections, one after another.
    for _ in 0..15 {
        close(server.ws(&bob).await).await;
    }

    // Unauthorized: the upgrade completes, then 4401.
    for token in ["v1.bad.token", "nonsense", ""] {
        let mut ws = WsClient::connect(&server.ws_url(token)).await.unwrap();
        assert_eq!(ws.close_code().await, Some(4401));
    }

    // Protocol errors: invalid UTF-8 (1007) and frames over 256 KiB (1009), twice each.
    for _ in 0..2 {
        let mut ws = server.ws(&bob).await;
        ws.send_raw(raw_text(vec![0xff, 0xfe, 0xfd])).await.unwrap();
        assert_eq!(ws.close_code().await, Some(1007));
        let mut ws = server.ws(&bob).await;
        let huge = json!({"type": "ping", "nonce": "x".repeat(crate::hardening::MAX_FRAME + 1)});
        let _ = ws.send_raw(Message::Text(huge.to_string().into())).await;
        assert_eq!(ws.close_code().await, Some(1009));
    }

    // Not an upgrade request: refused with 400.
    let plain = server.http.get(server.url("/ws")).send().await.unwrap();
    assert_eq!(plain.status(), 400);

    // A connection storm from one address: past the burst, 503 before the upgrade.
    let mut refused = 0;
    for _ in 0..30 {
        match WsClient::connect(&server.ws_url("storm")).await {
            Ok(mut ws) => assert_eq!(ws.close_code().await, Some(4401)),
            Err(_) => refused += 1,
        }
    }
    assert!(refused > 0, "the connection storm met the connect limit");

    // Failed logins past the per-address burst: 429.
    let mut too_many = 0;
    for _ in 0..8 {
        let r = server
            .post(
                "/api/auth/login",
                None,
                json!({"username": "alice", "password": "wrong password"}),
            )
            .await;
        if r.status() == 429 {
            too_many += 1;
        }
    }
    assert!(too_many > 0, "logins met the auth limit");
}

/// Until every authenticated socket has ended (and so has been counted).
async fn wait_all_sockets_ended(server: &Server) {
    for _ in 0..200 {
        if server.metrics().await.sum("ws_active_connections", &[]) == 0.0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("sockets still open");
}

fn guard_json(log: &std::path::Path) -> (Option<i32>, Value) {
    let out = Command::new(BUILT)
        .args(["guard", "--json", "--logs"])
        .arg(log)
        .output()
        .expect("runs guard");
    let json = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "guard printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    (out.status.code(), json)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guard_and_metrics_count_the_same_websocket_outcomes_429s_and_5xx_in_one_incident() {
    let server = Server::start().await;

    play_incident(&server).await;
    wait_all_sockets_ended(&server).await;
    // Counters start at 0 with the process, and the log starts with it: the values now are the
    // deltas over exactly the run the log recorded.
    let metrics = server.metrics().await;
    let (code, guard) = guard_json(&server.log);

    let outcome = |o: &str| metrics.sum("ws_connections_total", &[&format!("outcome=\"{o}\"")]);
    let (rejected, error, closed) = (outcome("rejected"), outcome("error"), outcome("closed"));
    let ws = &guard["websocket"];
    assert_eq!(ws["source"], "server events", "{guard:#}");
    assert_eq!(ws["outcomes"]["rejected"].as_f64().unwrap_or(0.0), rejected);
    assert_eq!(ws["outcomes"]["error"].as_f64().unwrap_or(0.0), error);
    assert_eq!(ws["outcomes"]["closed"].as_f64().unwrap_or(0.0), closed);
    assert_eq!(ws["connections"].as_f64(), Some(rejected + error + closed));
    assert_eq!(ws["errors"]["count"].as_f64(), Some(rejected + error));
    // What the incident was made of, so that the equalities above are not 0 == 0.
    assert_eq!(error, 4.0, "two 1007 and two 1009: {ws:#}");
    assert_eq!(
        closed, 18.0,
        "three of alice's and fifteen of bob's: {ws:#}"
    );
    assert_eq!(
        rejected,
        1.0 + 3.0 + 1.0 + 30.0,
        "per-user cap, 4401 x3, not an upgrade, the storm (4401 or 503): {ws:#}"
    );
    assert_eq!(ws["reasons"]["error: invalid UTF-8"], 2);
    assert_eq!(ws["reasons"]["error: frame too large"], 2);
    assert_eq!(
        metrics.sum("ws_connections_total", &["outcome=\"accepted\""]),
        0.0,
        "no connection is counted twice"
    );

    let rate_limited = &guard["rate_limited"];
    assert_eq!(rate_limited["source"], "server events", "{guard:#}");
    assert_eq!(
        rate_limited["count"].as_f64(),
        Some(metrics.sum("rate_limited_total", &[]))
    );
    for scope in ["auth", "send", "ws_connect", "ws_per_user"] {
        let counted = metrics.sum("rate_limited_total", &[&format!("scope=\"{scope}\"")]);
        assert!(counted > 0.0, "the incident has {scope} refusals");
        assert_eq!(
            rate_limited["by"][scope].as_f64(),
            Some(counted),
            "{scope}: {rate_limited:#}"
        );
    }

    let http_5xx = &guard["http_5xx"];
    assert!(sum_5xx(&metrics) > 0.0);
    assert_eq!(http_5xx["source"], "server events", "{guard:#}");
    assert_eq!(http_5xx["count"].as_f64(), Some(sum_5xx(&metrics)));

    assert_eq!(
        guard["db"]["connection_failures"]["count"].as_f64(),
        Some(metrics.sum("db_connection_failures_total", &[]))
    );

    eprintln!(
        "metrics: ws rejected {rejected} error {error} closed {closed}, rate_limited {}, 5xx {}; guard: {}",
        metrics.sum("rate_limited_total", &[]),
        sum_5xx(&metrics),
        json!({"websocket": ws, "rate_limited": rate_limited, "http_5xx": http_5xx})
    );
    // The WebSocket SLI is judged: far over 5 % with more than 20 connections.
    let ratio = (rejected + error) / (rejected + error + closed);
    let guard_ratio = ws["error_rate"].as_f64().unwrap();
    assert!(
        (guard_ratio - ratio).abs() < 1e-4,
        "{guard_ratio} vs {ratio}"
    );
    let worst = &ws["worst_5min"];
    assert!(worst["connections"].as_u64().unwrap() >= 20, "{worst}");
    assert!(
        worst["errors"].as_u64() <= worst["connections"].as_u64(),
        "{worst}"
    );
    assert_eq!(guard["status"], "CRITICAL");
    assert_eq!(code, Some(2));
}
