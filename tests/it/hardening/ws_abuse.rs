//! WebSocket floods and bad frames: connection floods get 503 before the upgrade, message floods
//! rate-limited frames then 1008, bad UTF-8 1007, oversized frames 1009, unknown frames an error.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::{
    self, Message,
    protocol::frame::{
        Frame,
        coding::{Data, OpCode},
    },
};

use crate::support::{spawn_app, spawn_app_with};

use super::{MAX_FRAME, raw::*};

#[tokio::test]
async fn websocket_connection_floods_from_one_ip_get_503_with_retry_after_before_the_upgrade() {
    // The default refill (300/min, a token every 200 ms) can hand a token back between the
    // refusal and the next attempt on a loaded machine; at 6/min "right away" means 10 s.
    let app = spawn_app_with(|s| s.limits.ws_connect_rate_per_min = 6).await;
    let alice = app.register("alice").await;
    let mut open = app.ws(&alice).await; // one token of the burst
    let mut upgraded = 1;
    let mut refusal = None;
    for _ in 0..300 {
        match tokio_tungstenite::connect_async(app.ws_url()).await {
            Ok((mut ws, _)) => {
                upgraded += 1;
                let _ = ws.close(None).await;
            }
            Err(tungstenite::Error::Http(resp)) => {
                refusal = Some(resp);
                break;
            }
            Err(e) => panic!("unexpected {e}"),
        }
    }
    let resp = refusal.expect("the flood was never refused");
    assert!(
        (100..=130).contains(&upgraded),
        "a burst of 100 is allowed, then refused; upgraded {upgraded}"
    );
    assert_eq!(resp.status(), 503);
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry >= 1);
    let body: Value = serde_json::from_slice(resp.body().as_deref().unwrap_or_default()).unwrap();
    assert_eq!(body["error"]["code"], "unavailable");
    // Still refused right away; HTTP and existing sockets are unaffected.
    match tokio_tungstenite::connect_async(app.ws_url()).await {
        Err(tungstenite::Error::Http(r)) => assert_eq!(r.status(), 503),
        other => panic!("expected 503, got {:?}", other.map(|_| "upgrade")),
    }
    assert_eq!(app.get("/healthz", None).await.status(), 200);
    assert_eq!(app.get("/api/me", Some(&alice.token)).await.status(), 200);
    assert_pong(&mut open, "existing socket").await;
}

#[tokio::test]
async fn a_client_flooding_messages_gets_rate_limited_frames_with_retry_after_then_close_1008() {
    let app = spawn_app().await;
    let mallory = app.register("mallory").await;
    let thread = app.create_thread(&mallory, "flood").await;
    let alice = app.register("alice").await;
    let calm = app.create_thread(&alice, "calm").await;
    let mut a = app.ws(&alice).await;
    let mut ws = app.ws(&mallory).await;
    let (limited, acked, close) = flood_counting_acks(&mut ws, &thread, 400).await;
    assert!(limited > 0, "no rate_limited frames");
    assert_eq!(close, Some(1008));
    // Every acknowledged message is stored exactly once (the writer may still be finishing the
    // burst), and nothing that was refused is stored.
    let deadline = Instant::now() + Duration::from_secs(10);
    let stored = loop {
        let stored = app.messages(&mallory, &thread, "?limit=500").await;
        if stored.len() >= acked.len() || Instant::now() > deadline {
            break stored;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let ids: Vec<&str> = stored
        .iter()
        .map(|m| m["client_id"].as_str().unwrap())
        .collect();
    let unique: std::collections::HashSet<&str> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "stored twice");
    for cid in &acked {
        assert!(
            unique.contains(cid.as_str()),
            "{cid} was acknowledged but not stored"
        );
    }
    assert!(
        stored.len() <= 400 - limited,
        "{} stored, {limited} refused",
        stored.len()
    );
    eprintln!(
        "flood: {limited} refused, {} acknowledged, {} stored",
        acked.len(),
        stored.len()
    );
    a.send_message(&calm, "calm-1", "unaffected").await;
    assert_eq!(a.recv_type("ack").await["status"], "persisted");
}

#[tokio::test]
async fn invalid_utf8_in_text_frames_closes_with_1007() {
    let app = spawn_app().await;
    let alice = app.register("alice").await;
    let cases: Vec<(&str, Vec<Vec<u8>>)> = vec![
        (
            "bad bytes",
            vec![b"{\"type\":\"ping\",\"nonce\":\"\xff\xfe\"}".to_vec()],
        ),
        (
            "overlong '/'",
            vec![b"{\"type\":\"ping\",\"nonce\":\"\xc0\xaf\"}".to_vec()],
        ),
        (
            "UTF-16 surrogate",
            vec![b"{\"type\":\"ping\",\"nonce\":\"\xed\xa0\x80\"}".to_vec()],
        ),
        ("beyond U+10FFFF", vec![b"\xf4\x90\x80\x80".to_vec()]),
        (
            "invalid across fragments",
            vec![
                b"{\"type\":\"ping\",\"nonce\":\"\xe2\x82".to_vec(),
                b"(\"}".to_vec(),
            ],
        ),
    ];
    for (what, parts) in cases {
        let mut ws = app.ws(&alice).await;
        let n = parts.len();
        for (i, part) in parts.into_iter().enumerate() {
            let opcode = if i == 0 {
                OpCode::Data(Data::Text)
            } else {
                OpCode::Data(Data::Continue)
            };
            let frame = Frame::message(part, opcode, i + 1 == n);
            ws.send_raw(Message::Frame(frame)).await.unwrap();
        }
        assert_eq!(ws.close_code().await, Some(1007), "{what}");
    }
}

#[tokio::test]
async fn text_frames_over_256_kib_close_with_1009_and_exactly_256_kib_is_accepted() {
    let app = spawn_app().await;
    let alice = app.register("alice").await;
    let mut ws = app.ws(&alice).await;
    let exact = ping_of_size(MAX_FRAME, "exact");
    assert_eq!(exact.len(), MAX_FRAME);
    ws.send_raw(Message::Text(exact.into())).await.unwrap();
    let pong = ws.recv().await.expect("a frame of exactly 256 KiB is read");
    assert_eq!(pong["type"], "pong");
    assert_eq!(
        pong["nonce"].as_str().unwrap().len(),
        MAX_FRAME - r#"{"type":"ping","nonce":""}"#.len()
    );
    // A message of exactly 256 KiB sent in fragments is accepted too.
    let exact = ping_of_size(MAX_FRAME, "fragments").into_bytes();
    send_fragmented(&mut ws, exact, 3).await;
    assert_eq!(ws.recv().await.expect("fragmented 256 KiB")["type"], "pong");
    // One byte more: 1009.
    let over = ping_of_size(MAX_FRAME + 1, "over");
    let _ = ws.send_raw(Message::Text(over.into())).await;
    assert_eq!(ws.close_code().await, Some(1009));
    // One byte more, in fragments each well under the limit: 1009 as well.
    let mut ws = app.ws(&alice).await;
    send_fragmented(
        &mut ws,
        ping_of_size(MAX_FRAME + 1, "split").into_bytes(),
        4,
    )
    .await;
    assert_eq!(ws.close_code().await, Some(1009));
}

#[tokio::test]
async fn unknown_and_malformed_frame_types_get_unknown_type_and_the_connection_stays_open() {
    let app = spawn_app().await;
    let alice = app.register("alice").await;
    let mut ws = app.ws(&alice).await;
    let long_type = "x".repeat(100_000);
    let cases = [
        json!({"type": "teleport"}),
        json!({"type": "SEND"}),
        json!({"type": "send "}),
        json!({"type": " ping"}),
        json!({"type": ""}),
        json!({"type": "__proto__"}),
        json!({"type": "constructor"}),
        json!({"type": "ping\u{0}"}),
        json!({"type": "'; DROP TABLE messages; --"}),
        json!({"type": "<script>alert(1)</script>"}),
        json!({"type": null}),
        json!({"type": 1}),
        json!({"type": ["ping"]}),
        json!({"type": {"ping": true}}),
        json!({"kind": "ping"}),
        json!({}),
        json!({"type": long_type}),
        json!({"type": "nope", "client_id": "echoed"}),
    ];
    for frame in cases {
        let shown: String = frame.to_string().chars().take(60).collect();
        ws.send(frame.clone()).await;
        let e = ws
            .recv()
            .await
            .unwrap_or_else(|| panic!("no answer to {shown}"));
        assert_eq!(
            (e["type"].as_str(), e["code"].as_str()),
            (Some("error"), Some("unknown_type")),
            "{shown}: {e}"
        );
        let message = e["message"].as_str().unwrap();
        assert!(
            message.len() < 512,
            "the error does not echo the whole frame back"
        );
        if frame["client_id"] == "echoed" {
            assert_eq!(e["client_id"], "echoed");
        }
    }
    assert_pong(&mut ws, "after unknown types").await;
}
