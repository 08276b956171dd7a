//! Register, login, logout and revocation, over HTTP and WebSocket.

use serde_json::{Value, json};

use crate::support::{WsClient, spawn_app};

#[tokio::test]
async fn register_login_me_and_logout_revokes_the_token_everywhere() {
    let app = spawn_app().await;
    let r = app
        .post(
            "/api/auth/register",
            None,
            json!({"username": "Alice", "password": "correct horse battery"}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let cookie = r
        .headers()
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["user"]["username"], "Alice");

    // Usernames are unique case-insensitively, case preserved.
    let dup = app
        .post(
            "/api/auth/register",
            None,
            json!({"username": "alice", "password": "another password"}),
        )
        .await;
    assert_eq!(dup.status(), 409);
    let body: Value = dup.json().await.unwrap();
    assert_eq!(body["error"]["code"], "conflict");

    let bad = app
        .post(
            "/api/auth/login",
            None,
            json!({"username": "alice", "password": "wrong password"}),
        )
        .await;
    assert_eq!(bad.status(), 401);
    assert_eq!(
        bad.json::<Value>().await.unwrap()["error"]["code"],
        "unauthorized"
    );
    let short = app
        .post(
            "/api/auth/login",
            None,
            json!({"username": "alice", "password": "short"}),
        )
        .await;
    assert_eq!(
        short.status(),
        401,
        "a password outside the length rules is just wrong credentials"
    );

    let ok = app
        .post(
            "/api/auth/login",
            None,
            json!({"username": "ALICE", "password": "correct horse battery"}),
        )
        .await;
    assert_eq!(ok.status(), 200);
    let token = ok.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();
    let me = app.get("/api/me", Some(&token)).await;
    assert_eq!(me.status(), 200);
    assert_eq!(me.json::<Value>().await.unwrap()["username"], "Alice");

    // An open WebSocket of this session is closed with 4401 on logout.
    let user = crate::support::TestUser {
        id: String::new(),
        username: "Alice".into(),
        token: token.clone(),
    };
    let mut ws = app.ws(&user).await;
    let out = app.post("/api/auth/logout", Some(&token), json!({})).await;
    assert_eq!(out.status(), 204);
    assert_eq!(ws.close_code().await, Some(4401));
    assert_eq!(app.get("/api/me", Some(&token)).await.status(), 401);

    // A new WebSocket with the revoked token: upgrade completes, error frame, close 4401.
    let mut ws = WsClient::connect(&format!("{}?token={token}", app.ws_url()))
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
async fn missing_tampered_and_garbage_tokens_are_refused() {
    let app = spawn_app().await;
    let u = app.register("bob").await;
    assert_eq!(app.get("/api/me", None).await.status(), 401);
    let mut tampered = u.token.clone();
    tampered.pop();
    tampered.push(if u.token.ends_with('A') { 'B' } else { 'A' });
    assert_eq!(app.get("/api/me", Some(&tampered)).await.status(), 401);
    assert_eq!(app.get("/api/me", Some("v1.e30.AAAA")).await.status(), 401);
    for token in [tampered.as_str(), "garbage"] {
        let mut ws = WsClient::connect(&format!("{}?token={token}", app.ws_url()))
            .await
            .unwrap();
        assert_eq!(ws.recv().await.unwrap()["code"], "unauthorized");
        assert_eq!(ws.close_code().await, Some(4401));
    }
    let mut ws = WsClient::connect(&app.ws_url()).await.unwrap();
    assert_eq!(ws.recv().await.unwrap()["code"], "unauthorized");
    assert_eq!(ws.close_code().await, Some(4401));
}

#[tokio::test]
async fn registration_input_is_validated_per_field() {
    let app = spawn_app().await;
    let r = app
        .post(
            "/api/auth/register",
            None,
            json!({"username": "a b", "password": "short"}),
        )
        .await;
    assert_eq!(r.status(), 422);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "validation");
    assert!(v["error"]["fields"]["username"].is_string());
    assert!(v["error"]["fields"]["password"].is_string());
    let r = app
        .post("/api/auth/register", None, json!({"username": 42}))
        .await;
    assert_eq!(r.status(), 422);
}

#[tokio::test]
async fn cookie_auth_works_and_foreign_origins_cannot_change_state() {
    let app = spawn_app().await;
    let r = app
        .post(
            "/api/auth/register",
            None,
            json!({"username": "carol", "password": "correct horse battery"}),
        )
        .await;
    let cookie = r
        .headers()
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let me = app
        .http
        .get(app.url("/api/me"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 200);
    let same = app
        .http
        .post(app.url("/api/threads"))
        .header("cookie", &cookie)
        .header("origin", app.address.clone())
        .json(&json!({"title": "mine"}))
        .send()
        .await
        .unwrap();
    assert_eq!(same.status(), 201);
    let foreign = app
        .http
        .post(app.url("/api/threads"))
        .header("cookie", &cookie)
        .header("origin", "https://evil.example")
        .json(&json!({"title": "theirs"}))
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status(), 403);
    assert_eq!(
        foreign.json::<Value>().await.unwrap()["error"]["code"],
        "forbidden"
    );

    // WebSocket upgrade authenticated by the cookie from a foreign origin: 403 before upgrade.
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = app.ws_url().into_client_request().unwrap();
    req.headers_mut().insert("cookie", cookie.parse().unwrap());
    req.headers_mut()
        .insert("origin", "https://evil.example".parse().unwrap());
    match WsClient::connect_request(req).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 403),
        other => panic!("expected 403, got {:?}", other.map(|_| "connected")),
    }
    let mut req = app.ws_url().into_client_request().unwrap();
    req.headers_mut().insert("cookie", cookie.parse().unwrap());
    req.headers_mut()
        .insert("origin", app.address.parse().unwrap());
    let mut ws = WsClient::connect_request(req).await.unwrap();
    assert_eq!(ws.recv().await.unwrap()["type"], "welcome");
}
