//! Bystanders: while every attack of the other files runs against one server, two users keep
//! chatting, every message once and in order.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::{
    self, Message,
    protocol::frame::{
        Frame,
        coding::{Data, OpCode},
    },
};

use crate::support::{TestApp, TestUser, WsClient, spawn_app};

use super::{MAX_BODY, MAX_FRAME, injection::*, raw::*};

/// One side of the bystanders' chat: everything it received, in order.
pub(super) struct Chatter {
    pub(super) ws: WsClient,
    pub(super) messages: Vec<Value>,
    pub(super) acks: Vec<Value>,
}

impl Chatter {
    /// Read frames until the `message` with this client id arrives.
    pub(super) async fn wait_for(&mut self, client_id: &str) {
        loop {
            let f = self.ws.recv().await.unwrap_or_else(|| {
                panic!(
                    "bystander socket ended waiting for {client_id}: {:?}",
                    self.ws.closed
                )
            });
            match f["type"].as_str() {
                Some("message") => {
                    let done = f["client_id"] == client_id;
                    self.messages.push(f);
                    if done {
                        return;
                    }
                }
                Some("ack") => self.acks.push(f),
                _ => panic!("a bystander got {f}"),
            }
        }
    }

    /// Read until `messages` and `acks` frames have arrived in total.
    pub(super) async fn drain(&mut self, messages: usize, acks: usize) {
        while self.messages.len() < messages || self.acks.len() < acks {
            let f = self
                .ws
                .recv()
                .await
                .expect("the rest of the bystanders' frames");
            match f["type"].as_str() {
                Some("message") => self.messages.push(f),
                Some("ack") => self.acks.push(f),
                _ => panic!("a bystander got {f}"),
            }
        }
    }
}

#[tokio::test]
async fn bystanders_keep_chatting_in_order_and_promptly_while_the_battery_runs() {
    let app = Arc::new(spawn_app().await);
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let mallory = app.register("mallory").await;
    let eve = app.register("eve").await;
    let thread = app.create_thread(&alice, "bystanders").await;
    app.add_member(&alice, &thread, "bob").await;
    let mallorys = app.create_thread(&mallory, "mallory's").await;
    let mut a = Chatter {
        ws: app.ws(&alice).await,
        messages: vec![],
        acks: vec![],
    };
    let mut b = Chatter {
        ws: app.ws(&bob).await,
        messages: vec![],
        acks: vec![],
    };
    a.ws.subscribe(&thread, Some(0)).await;
    b.ws.subscribe(&thread, Some(0)).await;
    // The attackers' sockets are opened first: the connection flood will use up this IP's burst.
    let attackers = Attackers {
        flood: app.ws(&mallory).await,
        bad_frames: app.ws(&mallory).await,
        bad_utf8: app.ws(&mallory).await,
        oversize: app.ws(&mallory).await,
        eve: app.ws(&eve).await,
    };
    let battery = tokio::spawn(run_battery(
        app.clone(),
        attackers,
        mallory.clone(),
        eve.clone(),
        mallorys,
        thread.clone(),
    ));

    let mut rtts = Vec::new();
    let mut sent = 0usize;
    let started = Instant::now();
    while sent < 60 || !battery.is_finished() {
        assert!(
            started.elapsed() < Duration::from_secs(40),
            "the battery did not finish"
        );
        let client_id = format!("chat-{sent}");
        let body = format!("bystander message {sent} <b>not bold</b> ' OR 1=1");
        let t0 = Instant::now();
        let (from, to) = if sent.is_multiple_of(2) {
            (&mut a, &mut b)
        } else {
            (&mut b, &mut a)
        };
        from.ws.send_message(&thread, &client_id, &body).await;
        to.wait_for(&client_id).await;
        rtts.push(t0.elapsed());
        sent += 1;
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    let summary = battery.await.expect("the battery itself passed");
    assert!(summary.flood_limited > 0, "{summary:?}");
    assert!(summary.login_429, "{summary:?}");
    assert!(summary.probes_429 && summary.threads_429, "{summary:?}");
    assert!(summary.ws_upgrades_before_503 < 200, "{summary:?}");
    assert!(
        summary
            .slowloris_closed_after
            .iter()
            .all(|d| d.is_some_and(|d| d < Duration::from_secs(10))),
        "{summary:?}"
    );
    for (chatter, own) in [(&mut a, sent.div_ceil(2)), (&mut b, sent / 2)] {
        chatter.drain(sent, own).await;
        let seqs: Vec<i64> = chatter
            .messages
            .iter()
            .map(|m| m["seq"].as_i64().unwrap())
            .collect();
        assert_eq!(
            seqs,
            (1..=sent as i64).collect::<Vec<_>>(),
            "every message once, in order"
        );
        for (i, m) in chatter.messages.iter().enumerate() {
            assert_eq!(m["client_id"], format!("chat-{i}"));
            assert_eq!(
                m["body"],
                format!("bystander message {i} <b>not bold</b> ' OR 1=1")
            );
        }
        assert!(chatter.acks.iter().all(|a| a["status"] == "persisted"));
        assert!(
            chatter
                .ws
                .recv_within(Duration::from_millis(200))
                .await
                .is_none(),
            "nothing extra"
        );
    }
    let history = app.messages(&alice, &thread, "?limit=500").await;
    assert_eq!(history.len(), sent);
    rtts.sort_unstable();
    let p99 = rtts[(rtts.len() * 99 / 100).min(rtts.len() - 1)];
    let p50 = rtts[rtts.len() / 2];
    eprintln!("bystanders: {sent} messages, p50 {p50:?}, p99 {p99:?}; battery: {summary:?}");
    assert!(
        p99 < Duration::from_secs(1),
        "p99 round trip {p99:?} (p50 {p50:?}) over {sent} messages; battery: {summary:?}"
    );
}

/// Sockets the battery uses, opened before the connection flood starts.
pub(super) struct Attackers {
    pub(super) flood: WsClient,
    pub(super) bad_frames: WsClient,
    pub(super) bad_utf8: WsClient,
    pub(super) oversize: WsClient,
    pub(super) eve: WsClient,
}

/// What the battery observed (for the failure message).
#[derive(Debug, Default)]
pub(super) struct Battery {
    pub(super) slowloris_closed_after: Vec<Option<Duration>>,
    pub(super) flood_limited: usize,
    pub(super) ws_upgrades_before_503: usize,
    pub(super) login_429: bool,
    /// The 2026-11 audit's cases: member probes and thread creation were throttled.
    pub(super) probes_429: bool,
    pub(super) threads_429: bool,
}

/// Every attack of this file at once, against the bystanders' server; each checks its own answer.
pub(super) async fn run_battery(
    app: Arc<TestApp>,
    att: Attackers,
    mallory: TestUser,
    eve: TestUser,
    mallorys: String,
    bystanders: String,
) -> Battery {
    let Attackers {
        flood: mut flooder,
        mut bad_frames,
        mut bad_utf8,
        mut oversize,
        eve: mut eve_ws,
    } = att;
    let port = app.port;
    let slowloris = async {
        let dribblers = (0..3).map(|i| {
            let header = format!("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow-{i}: ");
            dribble(port, header.into_bytes(), Duration::from_millis(250))
        });
        futures_util::future::join_all(dribblers).await
    };
    let silent = async {
        let conns = open_silent(port, 100).await;
        tokio::time::sleep(Duration::from_secs(6)).await;
        drop(conns);
    };
    let message_flood = async {
        let (limited, close) = flood(&mut flooder, &mallorys, 400).await;
        assert_eq!(close, Some(1008));
        limited
    };
    let frames = async {
        for text in [
            "not json".to_string(),
            "[1,2,3]".into(),
            format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)),
            r#"{"type":"teleport"}"#.into(),
            json!({"type": "subscribe", "thread": bystanders}).to_string(),
            json!({"type": "send", "thread": bystanders, "client_id": "evil", "body": "x"})
                .to_string(),
        ] {
            bad_frames
                .send_raw(Message::Text(text.into()))
                .await
                .unwrap();
            assert_eq!(bad_frames.recv().await.unwrap()["type"], "error");
        }
        bad_utf8
            .send_raw(Message::Frame(Frame::message(
                vec![0xff, 0xfe],
                OpCode::Data(Data::Text),
                true,
            )))
            .await
            .unwrap();
        assert_eq!(bad_utf8.close_code().await, Some(1007));
        let _ = oversize
            .send_raw(Message::Text(ping_of_size(MAX_FRAME + 1, "x").into()))
            .await;
        assert_eq!(oversize.close_code().await, Some(1009));
    };
    let stranger = async {
        for _ in 0..20 {
            let r = app
                .get(
                    &format!("/api/threads/{bystanders}/messages"),
                    Some(&eve.token),
                )
                .await;
            assert_eq!(r.status(), 404);
            eve_ws
                .send(json!({"type": "subscribe", "thread": bystanders}))
                .await;
            assert_eq!(eve_ws.recv().await.unwrap()["code"], "not_found");
        }
    };
    let http_junk = async {
        let huge = padded_object(r#"{"title":"x""#, 2 * MAX_BODY);
        let r = post_bytes(&app, "/api/threads", Some(&mallory.token), huge).await;
        assert_eq!(r.status(), 413);
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        let r = post_bytes(
            &app,
            "/api/threads",
            Some(&mallory.token),
            deep.into_bytes(),
        )
        .await;
        assert_eq!(r.status(), 400);
        for p in PAYLOADS {
            let r = app
                .post(
                    &format!("/api/threads/{mallorys}/messages"),
                    Some(&mallory.token),
                    json!({"client_id": p, "body": p}),
                )
                .await;
            assert!(
                matches!(r.status().as_u16(), 200 | 201 | 429),
                "{p}: {}",
                r.status()
            );
        }
        for path in ["/assets/../Cargo.toml", "/assets/..%2f..%2fetc%2fpasswd"] {
            let r = raw_http(
                port,
                format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").into_bytes(),
            )
            .await;
            assert_eq!(r.status, 404);
        }
    };
    let logins = async {
        let mut limited = false;
        for _ in 0..25 {
            let r = app
                .post(
                    "/api/auth/login",
                    None,
                    json!({"username": "alice", "password": "guessing"}),
                )
                .await;
            match r.status().as_u16() {
                401 => {}
                429 => {
                    assert!(r.headers().contains_key("retry-after"));
                    limited = true;
                }
                other => panic!("login brute force got {other}"),
            }
        }
        limited
    };
    let connect_flood = async {
        let mut upgraded = 0;
        for _ in 0..200 {
            match tokio_tungstenite::connect_async(app.ws_url()).await {
                Ok((mut ws, _)) => {
                    upgraded += 1;
                    let _ = ws.close(None).await;
                }
                Err(tungstenite::Error::Http(r)) => {
                    assert_eq!(r.status(), 503);
                    assert!(r.headers().contains_key("retry-after"));
                    return upgraded;
                }
                Err(e) => panic!("connect flood: {e}"),
            }
        }
        panic!("the connection flood was never refused");
    };
    // The 2026-11 audit (docs/security.md §6): login CSRF, huge usernames, probes, bursts.
    let audit = async {
        let login = json!({"username": "alice", "password": "correct horse battery"});
        let r = app
            .http
            .post(app.url("/api/auth/login"))
            .header("content-type", "text/plain")
            .body(login.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 415, "a text/plain login");
        let r = app
            .http
            .post(app.url("/api/auth/login"))
            .header("origin", "https://evil.example")
            .json(&login)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "a cross-site login");
        let huge = "m".repeat(1_000_000);
        for i in 0..10 {
            let r = app
                .post(
                    "/api/auth/login",
                    None,
                    json!({"username": format!("{huge}{i}"), "password": "whatever it is"}),
                )
                .await;
            assert!(matches!(r.status().as_u16(), 401 | 429), "{}", r.status());
        }
        let mut probes_429 = false;
        for i in 0..40 {
            let r = app
                .post(
                    &format!("/api/threads/{mallorys}/members"),
                    Some(&mallory.token),
                    json!({"username": format!("probe{i}")}),
                )
                .await;
            match r.status().as_u16() {
                404 => {}
                429 => probes_429 = true,
                other => panic!("member probe got {other}"),
            }
        }
        let mut threads_429 = false;
        for i in 0..40 {
            let r = app
                .post(
                    "/api/threads",
                    Some(&mallory.token),
                    json!({"title": format!("spam {i}")}),
                )
                .await;
            match r.status().as_u16() {
                201 => {}
                429 => threads_429 = true,
                other => panic!("thread burst got {other}"),
            }
        }
        (probes_429, threads_429)
    };
    let (
        slow,
        (),
        limited,
        (),
        (),
        (),
        login_429,
        ws_upgrades_before_503,
        (probes_429, threads_429),
    ) = tokio::join!(
        slowloris,
        silent,
        message_flood,
        frames,
        stranger,
        http_junk,
        logins,
        connect_flood,
        audit
    );
    Battery {
        slowloris_closed_after: slow,
        flood_limited: limited,
        ws_upgrades_before_503,
        login_429,
        probes_429,
        threads_429,
    }
}
