//! Bad frames get error frames and the connection stays open; oversize and invalid UTF-8 close
//! with 1009 and 1007; idle clients are closed with 4408; floods end with 1008.

use std::time::Duration;

use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use crate::support::{spawn_app, spawn_app_with};

#[tokio::test]
async fn bad_frames_get_error_frames_and_the_connection_stays_open() {
    let app = spawn_app().await;
    let alice = app.register("alice").await;
    let thread = app.create_thread(&alice, "t").await;
    let mut ws = app.ws(&alice).await;
    let cases: Vec<(Message, &str)> = vec![
        (Message::Text("not json".into()), "invalid_json"),
        (Message::Text("[1,2,3]".into()), "invalid_json"),
        (Message::Text("42".into()), "invalid_json"),
        (Message::Binary(vec![1, 2, 3].into()), "invalid_json"),
        (Message::Text("{}".into()), "unknown_type"),
        (Message::Text(r#"{"type":"teleport"}"#.into()), "unknown_type"),
        (Message::Text(r#"{"type":7}"#.into()), "unknown_type"),
        (Message::Text(json!({"type":"send","thread":thread,"client_id":"c1","body":"   "}).to_string().into()), "validation"),
        (Message::Text(json!({"type":"send","thread":thread,"client_id":"","body":"x"}).to_string().into()), "validation"),
        (Message::Text(json!({"type":"send","thread":thread,"body":"x"}).to_string().into()), "validation"),
        (Message::Text(json!({"type":"send","thread":thread,"client_id":"c2","body":"x".repeat(16_385)}).to_string().into()), "validation"),
        (Message::Text(json!({"type":"subscribe","thread":thread,"after_seq":"nope"}).to_string().into()), "validation"),
        (Message::Text(r#"{"type":"subscribe","thread":"t","after_seq":1e400}"#.into()), "invalid_json"),
        (Message::Text(format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)).into()), "invalid_json"),
        (Message::Text(json!({"type":"send","thread":thread,"client_id":"c3","body":"hi","agent":"nobody"}).to_string().into()), "not_found"),
    ];
    for (frame, code) in cases {
        let shown = format!("{frame:?}").chars().take(80).collect::<String>();
        ws.send_raw(frame).await.unwrap();
        let e = ws
            .recv()
            .await
            .unwrap_or_else(|| panic!("no answer to {shown}"));
        assert_eq!(
            (e["type"].as_str(), e["code"].as_str()),
            (Some("error"), Some(code)),
            "{shown}: {e}"
        );
        assert!(e["message"].is_string());
    }
    ws.send(json!({"type": "ping", "nonce": 7})).await;
    assert_eq!(
        ws.recv().await.unwrap(),
        json!({"type": "pong", "nonce": 7})
    );
    ws.send(json!({"type": "ping"})).await;
    assert_eq!(
        ws.recv().await.unwrap(),
        json!({"type": "pong", "nonce": null})
    );
    // Exactly 16384 characters after trimming is accepted.
    ws.send_message(&thread, "max", &format!("  {}  ", "é".repeat(16_384)))
        .await;
    let ack = ws.recv_type("ack").await;
    assert_eq!(ack["status"], "persisted");
}

#[tokio::test]
async fn frames_over_256_kib_close_with_1009_and_smaller_ones_are_read() {
    let app = spawn_app().await;
    let alice = app.register("alice").await;
    let mut ws = app.ws(&alice).await;
    // 200 KiB is accepted as a frame (then refused as a message by validation).
    let big = json!({"type": "ping", "nonce": "x".repeat(200 * 1024)});
    ws.send(big).await;
    assert_eq!(ws.recv().await.unwrap()["type"], "pong");
    let huge = json!({"type": "ping", "nonce": "x".repeat(crate::hardening::MAX_FRAME + 1)});
    let _ = ws.send_raw(Message::Text(huge.to_string().into())).await;
    assert_eq!(ws.close_code().await, Some(1009));
}

#[tokio::test]
async fn invalid_utf8_in_a_text_frame_closes_with_1007() {
    let app = spawn_app().await;
    let alice = app.register("alice").await;
    let mut ws = app.ws(&alice).await;
    // Write a raw masked text frame with invalid UTF-8, bypassing the client's checks.
    let frame = tokio_tungstenite::tungstenite::protocol::frame::Frame::message(
        vec![0xff, 0xfe, 0xfd],
        tokio_tungstenite::tungstenite::protocol::frame::coding::OpCode::Data(
            tokio_tungstenite::tungstenite::protocol::frame::coding::Data::Text,
        ),
        true,
    );
    ws.send_raw(Message::Frame(frame)).await.unwrap();
    assert_eq!(ws.close_code().await, Some(1007));
}

#[tokio::test]
async fn an_idle_client_is_closed_with_4408() {
    let app = spawn_app_with(|s| s.realtime.idle_timeout_ms = 600).await;
    let alice = app.register("alice").await;
    let mut ws = app.ws(&alice).await;
    let started = std::time::Instant::now();
    assert_eq!(ws.close_code().await, Some(4408));
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn a_client_flooding_past_rate_limited_is_closed_with_1008() {
    let app = spawn_app().await;
    let alice = app.register("alice").await;
    let thread = app.create_thread(&alice, "flood").await;
    let mut ws = app.ws(&alice).await;
    let mut limited = 0;
    for i in 0..400 {
        if ws
            .send_raw(Message::Text(
                json!({"type":"send","thread":thread,"client_id":format!("f{i}"),"body":"spam"})
                    .to_string()
                    .into(),
            ))
            .await
            .is_err()
        {
            break;
        }
    }
    let code = loop {
        match ws.recv().await {
            Some(f) if f["code"] == "rate_limited" => {
                assert!(f["retry_after_ms"].as_u64().is_some());
                limited += 1;
            }
            Some(_) => {}
            None => break ws.closed.clone().flatten().map(|c| u16::from(c.code)),
        }
    };
    assert!(limited > 0);
    assert_eq!(code, Some(1008));
    assert!(app.metric("rate_limited_total{scope=\"send\"}").await > 0.0);
    // Other users are unaffected.
    let bob = app.register("bob").await;
    let t2 = app.create_thread(&bob, "calm").await;
    let mut b = app.ws(&bob).await;
    b.send_message(&t2, "ok", "fine").await;
    assert_eq!(b.recv_type("ack").await["status"], "persisted");
}
