//! Tokens: tampered, forged, garbage, expired and revoked tokens get 401 and close 4401.

use std::time::{Duration, Instant};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD as B64};
use serde_json::{Value, json};

use crate::support::{WsClient, spawn_app, spawn_app_with};

use super::raw::*;

#[tokio::test]
async fn tampered_forged_and_garbage_tokens_get_401_and_close_4401() {
    let app = spawn_app().await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let (payload, sig) = split_token(&alice.token);
    let claims: Value = serde_json::from_slice(&B64.decode(payload).unwrap()).unwrap();
    let with_claims = |c: &Value| B64.encode(serde_json::to_vec(c).unwrap());

    let mut as_bob = claims.clone();
    as_bob["uid"] = json!(bob.id);
    as_bob["name"] = json!("bob");
    let mut forever = claims.clone();
    forever["exp"] = json!(i64::MAX);
    let mut flipped_sig = sig.to_string();
    let last = flipped_sig.pop().unwrap();
    flipped_sig.push(if last == 'A' { 'B' } else { 'A' });
    let other_key = emergence::auth::SigningKey::new(b"a guessed key".to_vec())
        .sign(&serde_json::from_value::<emergence::auth::Claims>(claims.clone()).unwrap());
    let empty_key = emergence::auth::SigningKey::new(Vec::new())
        .sign(&serde_json::from_value::<emergence::auth::Claims>(as_bob.clone()).unwrap());
    let tokens = vec![
        ("signature flipped", format!("v1.{payload}.{flipped_sig}")),
        (
            "claims changed to bob",
            format!("v1.{}.{sig}", with_claims(&as_bob)),
        ),
        (
            "expiry extended",
            format!("v1.{}.{sig}", with_claims(&forever)),
        ),
        ("signed with another key", other_key),
        ("signed with an empty key", empty_key),
        ("no signature", format!("v1.{payload}.")),
        ("no signature part", format!("v1.{payload}")),
        ("other version", format!("v2.{payload}.{sig}")),
        ("extra part", format!("v1.{payload}.{sig}.x")),
        ("padded base64", format!("v1.{payload}==.{sig}")),
        ("alg none style", format!("v1.{}.", with_claims(&as_bob))),
        ("empty", String::new()),
        ("garbage", "garbage".into()),
        ("long garbage", "A".repeat(8_000)),
        ("sql", "' OR '1'='1".into()),
    ];
    for (what, token) in &tokens {
        let r = app
            .http
            .get(app.url("/api/me"))
            .header("authorization", format!("Bearer {token}"))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let v: Value = r.json().await.unwrap();
        assert_eq!(
            (status, v["error"]["code"].as_str()),
            (401, Some("unauthorized")),
            "{what}: {v}"
        );
        if token.is_empty() || token.contains(' ') || token.contains('\'') {
            continue;
        }
        let mut ws = WsClient::connect(&format!("{}?token={token}", app.ws_url()))
            .await
            .unwrap();
        let e = ws.recv().await.expect("an error frame");
        assert_eq!(
            (e["type"].as_str(), e["code"].as_str()),
            (Some("error"), Some("unauthorized")),
            "{what}"
        );
        assert_eq!(ws.close_code().await, Some(4401), "{what}");
    }
    // Other schemes and shapes of Authorization are refused, and the first credential decides.
    for header in [
        "Basic YWxpY2U6cGFzcw==",
        "Bearer",
        "Bearer  ",
        "Token abc",
        "Bearer a b",
    ] {
        let r = app
            .http
            .get(app.url("/api/me"))
            .header("authorization", header)
            .header("cookie", format!("emergence_session={}", alice.token))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{header}");
    }
    let r = app
        .http
        .get(app.url("/api/me"))
        .bearer_auth(&alice.token)
        .header("cookie", "emergence_session=garbage")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        200,
        "a good Authorization decides over a bad cookie"
    );
    // No data was written by any forged token.
    let list: Value = app
        .get("/api/threads", Some(&bob.token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["threads"], json!([]));
}

#[tokio::test]
async fn expired_tokens_get_401_over_http_and_close_4401_over_websocket() {
    let app = spawn_app_with(|s| s.auth.token_ttl_secs = 1).await;
    let alice = app.register("alice").await;
    let issued = Instant::now();
    // A socket opened with the fresh token is closed when it expires (or at once if it already
    // has): an `unauthorized` error frame, then 4401.
    let mut ws = WsClient::connect(&format!("{}?token={}", app.ws_url(), alice.token))
        .await
        .unwrap();
    let mut saw_unauthorized = false;
    while let Some(f) = ws.recv().await {
        if f["type"] == "error" {
            assert_eq!(f["code"], "unauthorized");
            saw_unauthorized = true;
        }
    }
    let closed_at = issued.elapsed();
    assert!(saw_unauthorized);
    assert_eq!(
        ws.closed.clone().flatten().map(|c| u16::from(c.code)),
        Some(4401)
    );
    assert!(
        closed_at < Duration::from_secs(4),
        "closed {closed_at:?} after issue"
    );
    tokio::time::sleep(Duration::from_millis(1_100).saturating_sub(issued.elapsed())).await;
    // HTTP, bearer and cookie.
    let r = app.get("/api/me", Some(&alice.token)).await;
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "unauthorized"
    );
    let r = app
        .http
        .get(app.url("/api/threads"))
        .header("cookie", format!("emergence_session={}", alice.token))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = app
        .post("/api/threads", Some(&alice.token), json!({"title": "late"}))
        .await;
    assert_eq!(r.status(), 401);
    // A new socket: the upgrade completes, then error `unauthorized` and close 4401.
    let mut ws = WsClient::connect(&format!("{}?token={}", app.ws_url(), alice.token))
        .await
        .unwrap();
    let e = ws.recv().await.unwrap();
    assert_eq!(
        (e["type"].as_str(), e["code"].as_str()),
        (Some("error"), Some("unauthorized"))
    );
    assert_eq!(ws.close_code().await, Some(4401));
}

#[tokio::test]
async fn revoked_tokens_get_401_and_their_sockets_close_4401_within_5_seconds() {
    let app = spawn_app().await;
    let alice = app.register("alice").await;
    let r = app
        .post(
            "/api/auth/login",
            None,
            json!({"username": "alice", "password": "correct horse battery"}),
        )
        .await;
    let second: String = r.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .into();
    let mut ws = app.ws(&alice).await;
    let mut other = WsClient::connect(&format!("{}?token={second}", app.ws_url()))
        .await
        .unwrap();
    assert_eq!(other.recv().await.unwrap()["type"], "welcome");
    let started = Instant::now();
    let out = app
        .post("/api/auth/logout", Some(&alice.token), json!({}))
        .await;
    assert_eq!(out.status(), 204);
    let e = ws.recv_type("error").await;
    assert_eq!(e["code"], "unauthorized");
    assert_eq!(ws.close_code().await, Some(4401));
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(app.get("/api/me", Some(&alice.token)).await.status(), 401);
    // Other sessions of the same user are untouched.
    assert_eq!(app.get("/api/me", Some(&second)).await.status(), 200);
    assert_pong(&mut other, "other session").await;
    let mut again = WsClient::connect(&format!("{}?token={}", app.ws_url(), alice.token))
        .await
        .unwrap();
    assert_eq!(again.recv().await.unwrap()["code"], "unauthorized");
    assert_eq!(again.close_code().await, Some(4401));
}
