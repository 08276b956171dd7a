//! Slow and silent connections: slowloris clients (HTTP/1 headers, the HTTP/2 preface) and silent
//! sockets are closed, and never lock out a normal client.

use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;

use crate::support::spawn_app;

use super::raw::*;

#[tokio::test]
async fn a_slowloris_client_dribbling_headers_byte_by_byte_is_closed_within_10_seconds() {
    let app = spawn_app().await;
    let header = format!(
        "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nUser-Agent: slowloris\r\nX-Padding: ",
        app.port
    );
    let closed_after = dribble(app.port, header.into_bytes(), Duration::from_millis(200)).await;
    assert!(
        closed_after.is_some_and(|d| d < Duration::from_secs(10)),
        "the server kept a dribbling client for {closed_after:?}"
    );
    assert_eq!(app.get("/healthz", None).await.status(), 200);
}

#[tokio::test]
async fn a_slowloris_client_dribbling_the_http2_preface_is_closed_within_10_seconds() {
    let app = spawn_app().await;
    // The bytes an HTTP/2 client starts with, then a never-ending SETTINGS frame: every byte is
    // a valid continuation, so only a deadline can end it.
    let mut bytes = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    bytes.extend_from_slice(&[0, 0, 6, 4, 0, 0, 0, 0, 0]);
    bytes.extend_from_slice(&[0u8; 64]);
    let closed_after = dribble(app.port, bytes, Duration::from_millis(400)).await;
    assert!(
        closed_after.is_some_and(|d| d < Duration::from_secs(10)),
        "the server kept a dribbling HTTP/2 client for {closed_after:?}"
    );
}

#[tokio::test]
async fn many_silent_connections_from_one_ip_do_not_lock_out_a_normal_client() {
    let app = spawn_app().await;
    let silent = open_silent(app.port, 200).await;
    assert_eq!(silent.len(), 200);
    let started = Instant::now();
    let r = app.get("/healthz", None).await;
    assert_eq!(r.status(), 200);
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let thread = app.create_thread(&alice, "still here").await;
    app.add_member(&alice, &thread, "bob").await;
    let mut a = app.ws(&alice).await;
    let mut b = app.ws(&bob).await;
    b.subscribe(&thread, None).await;
    a.send_message(&thread, "m1", "hello through the crowd")
        .await;
    assert_eq!(a.recv_type("ack").await["status"], "persisted");
    assert_eq!(
        b.recv_type("message").await["body"],
        "hello through the crowd"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "a normal client waited {:?}",
        started.elapsed()
    );
    drop(silent);
}

#[tokio::test]
async fn silent_connections_are_closed_by_the_server_within_about_10_seconds() {
    let app = spawn_app().await;
    let started = Instant::now();
    let silent = open_silent(app.port, 200).await;
    let deadline = started + Duration::from_secs(12);
    let waits = silent.into_iter().map(|mut s| async move {
        let mut buf = [0u8; 64];
        matches!(
            tokio::time::timeout_at(deadline.into(), s.read(&mut buf)).await,
            Ok(Ok(0) | Err(_))
        )
    });
    let closed = futures_util::future::join_all(waits)
        .await
        .into_iter()
        .filter(|c| *c)
        .count();
    assert_eq!(
        closed, 200,
        "only {closed} of 200 silent connections were closed within 12 s"
    );
}
