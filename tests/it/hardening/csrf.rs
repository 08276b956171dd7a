//! CSRF: cookie-authenticated requests from a foreign origin cannot change state but can read.

use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest};

use crate::support::{TestUser, WsClient, spawn_app};

#[tokio::test]
async fn cookie_requests_from_a_foreign_origin_cannot_change_state_but_can_still_read() {
    let app = spawn_app().await;
    let r = app
        .post(
            "/api/auth/register",
            None,
            json!({"username": "carol", "password": "correct horse battery"}),
        )
        .await;
    let set_cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Lax"));
    let cookie = set_cookie.split(';').next().unwrap().to_string();
    let token = cookie.trim_start_matches("emergence_session=").to_string();
    let thread = {
        let r = app
            .post("/api/threads", Some(&token), json!({"title": "mine"}))
            .await;
        r.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    app.register("dave").await;
    let foreign = [
        "https://evil.example".to_string(),
        "null".into(),
        format!("http://127.0.0.1:{}.evil.example", app.port),
        format!("http://evil.example/127.0.0.1:{}", app.port),
        format!("http://localhost:{}", app.port),
        "http://127.0.0.1:1".into(),
        format!("ftp://127.0.0.1:{}", app.port),
    ];
    let writes: Vec<(String, Value)> = vec![
        ("/api/threads".into(), json!({"title": "csrf"})),
        (
            format!("/api/threads/{thread}/messages"),
            json!({"client_id": "csrf", "body": "csrf"}),
        ),
        (
            format!("/api/threads/{thread}/members"),
            json!({"username": "dave"}),
        ),
        (
            format!("/api/threads/{thread}/debate"),
            json!({"client_id": "csrf-d", "topic": "t", "agents": ["anima", "neo"], "rounds": 1}),
        ),
        ("/api/auth/logout".into(), json!({})),
    ];
    for origin in &foreign {
        for (path, body) in &writes {
            let r = app
                .http
                .post(app.url(path))
                .header("cookie", &cookie)
                .header("origin", origin)
                .json(body)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let v: Value = r.json().await.unwrap();
            assert_eq!(
                (status, v["error"]["code"].as_str()),
                (403, Some("forbidden")),
                "{origin} {path}: {v}"
            );
        }
    }
    // A spoofed X-Forwarded-Host does not make a foreign origin "own" (no trusted proxy).
    let r = app
        .http
        .post(app.url("/api/threads"))
        .header("cookie", &cookie)
        .header("origin", "https://evil.example")
        .header("x-forwarded-host", "evil.example")
        .json(&json!({"title": "csrf"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // Nothing changed, and the session is still alive.
    let list: Value = app
        .http
        .get(app.url("/api/threads"))
        .header("cookie", &cookie)
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["threads"].as_array().unwrap().len(), 1, "GET is fine");
    assert!(
        app.messages(
            &TestUser {
                id: String::new(),
                username: "carol".into(),
                token: token.clone()
            },
            &thread,
            ""
        )
        .await
        .is_empty()
    );
    for path in [
        "/api/me".to_string(),
        format!("/api/threads/{thread}"),
        format!("/api/threads/{thread}/messages"),
    ] {
        let r = app
            .http
            .get(app.url(&path))
            .header("cookie", &cookie)
            .header("origin", "https://evil.example")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
    }
    // Bearer is never affected; the server's own origin and no Origin are fine with the cookie.
    let r = app
        .http
        .post(app.url("/api/threads"))
        .bearer_auth(&token)
        .header("origin", "https://evil.example")
        .json(&json!({"title": "bearer"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    for origin in [Some(app.address.clone()), None] {
        let mut req = app
            .http
            .post(app.url("/api/threads"))
            .header("cookie", &cookie)
            .json(&json!({"title": "own"}));
        if let Some(o) = &origin {
            req = req.header("origin", o);
        }
        assert_eq!(req.send().await.unwrap().status(), 201, "{origin:?}");
    }
    // WebSocket: a cookie upgrade from a foreign origin is refused before the upgrade; a token
    // in the query or a bearer header is not a cookie.
    for origin in &foreign {
        let mut req = app.ws_url().into_client_request().unwrap();
        req.headers_mut().insert("cookie", cookie.parse().unwrap());
        req.headers_mut().insert("origin", origin.parse().unwrap());
        match WsClient::connect_request(req).await {
            Err(tungstenite::Error::Http(resp)) => {
                assert_eq!(resp.status(), 403, "{origin}");
                let body: Value =
                    serde_json::from_slice(resp.body().as_deref().unwrap_or_default()).unwrap();
                assert_eq!(body["error"]["code"], "forbidden");
            }
            other => panic!("{origin}: expected 403, got {:?}", other.map(|_| "upgrade")),
        }
    }
    let mut req = format!("{}?token={token}", app.ws_url())
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("origin", "https://evil.example".parse().unwrap());
    let mut ws = WsClient::connect_request(req).await.unwrap();
    assert_eq!(ws.recv().await.unwrap()["type"], "welcome");
    let mut req = app.ws_url().into_client_request().unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    req.headers_mut()
        .insert("origin", "https://evil.example".parse().unwrap());
    let mut ws = WsClient::connect_request(req).await.unwrap();
    assert_eq!(ws.recv().await.unwrap()["type"], "welcome");
    assert_eq!(
        app.get("/api/me", Some(&token)).await.status(),
        200,
        "logout was refused"
    );
}
