//! Sizes at the contract's limits: request bodies over 1 MiB (sent or only announced) get 413
//! at once, exactly 1 MiB is read; message bodies of exactly 16384 characters are accepted.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::spawn_app;

use super::{MAX_BODY, raw::*};

#[tokio::test]
async fn bodies_over_1_mib_get_413_too_large_and_a_body_of_exactly_1_mib_is_read() {
    let app = spawn_app().await;
    let alice = app.register("alice").await;

    // Exactly 1 MiB (a valid object padded with spaces): read and handled normally.
    let exact = padded_object(r#"{"title":"exactly one mebibyte""#, MAX_BODY);
    let r = post_bytes(&app, "/api/threads", Some(&alice.token), exact).await;
    assert_eq!(r.status(), 201, "a body of exactly 1 MiB is accepted");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["title"], "exactly one mebibyte");

    // One byte more, with a Content-Length, on several routes.
    let over = padded_object(r#"{"title":"one byte too many""#, MAX_BODY + 1);
    let thread = v["id"].as_str().unwrap().to_string();
    for (path, token) in [
        ("/api/threads".to_string(), Some(alice.token.as_str())),
        (
            format!("/api/threads/{thread}/messages"),
            Some(alice.token.as_str()),
        ),
        ("/api/auth/register".to_string(), None),
        ("/api/auth/login".to_string(), None),
    ] {
        let mut req = format!(
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n",
            app.port,
            over.len()
        );
        if let Some(t) = token {
            req.push_str(&format!("Authorization: Bearer {t}\r\n"));
        }
        req.push_str("\r\n");
        let mut bytes = req.into_bytes();
        bytes.extend_from_slice(&over);
        let r = raw_http(app.port, bytes).await;
        assert_eq!(r.status, 413, "{path}: {}", r.text());
        assert_eq!(r.json()["error"]["code"], "too_large", "{path}");
    }

    // Chunked, with no Content-Length: counted as it arrives.
    let mut req = format!(
        "POST /api/threads HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        app.port, alice.token
    )
    .into_bytes();
    let chunk = vec![b' '; 64 * 1024];
    for _ in 0..((2 * MAX_BODY) / chunk.len()) {
        req.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        req.extend_from_slice(&chunk);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    let r = raw_http(app.port, req).await;
    assert_eq!(r.status, 413, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "too_large");

    // Nothing oversized was stored.
    let list: Value = app
        .get("/api/threads", Some(&alice.token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["threads"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn a_body_announced_over_1_mib_is_refused_with_413_without_waiting_for_it() {
    let app = spawn_app().await;
    let alice = app.register("alice").await;
    // 4 MiB announced by Content-Length, a few bytes sent: the answer must not wait for the
    // rest (a client that never sends it would otherwise hold the request open).
    let req = format!(
        "POST /api/threads HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{{\"title\":\"",
        app.port,
        alice.token,
        4 * MAX_BODY
    );
    let started = Instant::now();
    let r = raw_http_within(app.port, req.into_bytes(), Duration::from_secs(5)).await;
    let r = r.unwrap_or_else(|| {
        panic!(
            "no answer within 5 s to a request announcing 4 MiB ({:?})",
            started.elapsed()
        )
    });
    assert_eq!(r.status, 413, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "too_large");
}

#[tokio::test]
async fn bodies_of_exactly_16384_characters_after_trimming_are_accepted_and_one_more_is_refused() {
    let app = spawn_app().await;
    let alice = app.register("alice").await;
    let thread = app.create_thread(&alice, "limits").await;
    let path = format!("/api/threads/{thread}/messages");
    // Four-byte characters: the limit counts code points, not bytes or UTF-16 units.
    let exact = "😀".repeat(16_384);
    let r = app
        .post(
            &path,
            Some(&alice.token),
            json!({"client_id": "exact", "body": format!(" \n\u{3000}{exact}\t ")}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let m: Value = r.json().await.unwrap();
    assert_eq!(m["body"].as_str().unwrap().chars().count(), 16_384);
    assert_eq!(m["body"], exact.as_str());
    for (cid, body) in [
        ("over-emoji", "😀".repeat(16_385)),
        ("over-ascii", "x".repeat(16_385)),
        ("over-mixed", format!("{}é", "x".repeat(16_384))),
    ] {
        let r = app
            .post(
                &path,
                Some(&alice.token),
                json!({"client_id": cid, "body": body}),
            )
            .await;
        let status = r.status().as_u16();
        let v: Value = r.json().await.unwrap();
        assert_eq!(
            (status, v["error"]["code"].as_str()),
            (422, Some("validation")),
            "{cid}"
        );
        assert!(v["error"]["fields"]["body"].is_string());
    }
    // Over WebSocket: the same rule, error frame `validation` with the client_id.
    let mut ws = app.ws(&alice).await;
    ws.send_message(&thread, "ws-over", &"😀".repeat(16_385))
        .await;
    let e = ws.recv().await.unwrap();
    assert_eq!(
        (e["code"].as_str(), e["client_id"].as_str()),
        (Some("validation"), Some("ws-over"))
    );
    ws.send_message(&thread, "ws-exact", &format!("\u{a0}{exact}\u{a0}"))
        .await;
    let ack = ws.recv_type("ack").await;
    assert_eq!(
        (ack["status"].as_str(), ack["seq"].as_i64()),
        (Some("persisted"), Some(2))
    );
    // Titles: 200 characters after trimming, 201 refused.
    let r = app
        .post(
            "/api/threads",
            Some(&alice.token),
            json!({"title": format!("  {}  ", "é".repeat(200))}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let r = app
        .post(
            "/api/threads",
            Some(&alice.token),
            json!({"title": "é".repeat(201)}),
        )
        .await;
    assert_eq!(r.status(), 422);
}
