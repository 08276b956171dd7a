//! Accounts: my sessions, password changes and personal API tokens, on SQLite and PostgreSQL
//! (the rest of the accounts scenarios are in `accounts.rs`).

use emergence::db::accounts::Registration;
use serde_json::json;

use crate::{
    on_both,
    support::WsClient,
    support::accounts::{
        PASSWORD, app_in, call, code, delete_as, get_as, login, user_of, ws_first,
    },
};

async fn sessions_are_listed_and_revocable(pg: bool) {
    let app = app_in(pg, Registration::Open).await;
    let bob = app.register("bob").await;
    let (_, second) = login(&app, "bob", PASSWORD).await;
    let second = user_of(&second, "bob");
    let (status, v) = get_as(&app, &bob.token, "/api/me/sessions").await;
    assert_eq!(status, 200);
    let sessions = v["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 2);
    assert_eq!(sessions.iter().filter(|s| s["current"] == true).count(), 1);
    let other = sessions.iter().find(|s| s["current"] == false).unwrap();
    let path = format!("/api/me/sessions/{}", other["id"].as_str().unwrap());
    // Someone else cannot end it.
    let eve = app.register("eve").await;
    assert_eq!(delete_as(&app, &eve.token, &path).await.0, 404);
    assert_eq!(delete_as(&app, &bob.token, &path).await.0, 204);
    let (status, _) = get_as(&app, &second.token, "/api/threads").await;
    assert_eq!(status, 401);
    let (_, v) = get_as(&app, &bob.token, "/api/me/sessions").await;
    assert_eq!(v["sessions"].as_array().unwrap().len(), 1);
}
on_both!(
    sessions_are_listed_and_revocable,
    sessions_are_listed_and_revocable_on_sqlite,
    sessions_are_listed_and_revocable_on_postgres
);

async fn changing_the_password_ends_every_other_session(pg: bool) {
    let app = app_in(pg, Registration::Open).await;
    let bob = app.register("bob").await;
    let (_, other) = login(&app, "bob", PASSWORD).await;
    let other = user_of(&other, "bob");
    let mut ws = app.ws(&other).await;
    let body = json!({"current": "not my password", "new": "a brand new password"});
    let (status, v) = call(
        &app,
        reqwest::Method::POST,
        "/api/me/password",
        &bob.token,
        Some(body),
    )
    .await;
    assert_eq!((status, code(&v)), (403, "forbidden"));
    let body = json!({"current": PASSWORD, "new": "short"});
    let (status, v) = call(
        &app,
        reqwest::Method::POST,
        "/api/me/password",
        &bob.token,
        Some(body),
    )
    .await;
    assert_eq!(status, 422);
    assert!(v["error"]["fields"]["new"].is_string(), "{v}");
    let body = json!({"current": PASSWORD, "new": "a brand new password"});
    let (status, _) = call(
        &app,
        reqwest::Method::POST,
        "/api/me/password",
        &bob.token,
        Some(body),
    )
    .await;
    assert_eq!(status, 204);
    assert_eq!(ws.close_code().await, Some(4401));
    let (status, _) = get_as(&app, &other.token, "/api/threads").await;
    assert_eq!(status, 401);
    let (status, _) = get_as(&app, &bob.token, "/api/threads").await;
    assert_eq!(status, 200, "this session stays");
    assert_eq!(login(&app, "bob", "a brand new password").await.0, 200);
}
on_both!(
    changing_the_password_ends_every_other_session,
    password_change_on_sqlite,
    password_change_on_postgres
);

async fn api_tokens_are_scoped_shown_once_and_revocable(pg: bool) {
    let app = app_in(pg, Registration::Open).await;
    let bob = app.register("bob").await;
    let thread = app.create_thread(&bob, "bots").await;
    let new = |scope: &str| json!({"name": format!("{scope} bot"), "scope": scope});
    let (status, read) = call(
        &app,
        reqwest::Method::POST,
        "/api/me/tokens",
        &bob.token,
        Some(new("read")),
    )
    .await;
    assert_eq!(status, 201, "{read}");
    let (_, chat) = call(
        &app,
        reqwest::Method::POST,
        "/api/me/tokens",
        &bob.token,
        Some(new("chat")),
    )
    .await;
    let (r, c) = (
        read["token"].as_str().unwrap(),
        chat["token"].as_str().unwrap(),
    );
    let (status, v) = call(
        &app,
        reqwest::Method::POST,
        "/api/me/tokens",
        &bob.token,
        Some(json!({"name": "", "scope": "admin"})),
    )
    .await;
    assert_eq!(status, 422);
    assert!(v["error"]["fields"]["name"].is_string() && v["error"]["fields"]["scope"].is_string());
    // Listed without secrets.
    let (_, list) = get_as(&app, &bob.token, "/api/me/tokens").await;
    assert_eq!(list["tokens"].as_array().unwrap().len(), 2);
    assert!(!list.to_string().contains(r) && !list.to_string().contains(c));
    // read: reads, never changes.
    let msgs = format!("/api/threads/{thread}/messages");
    assert_eq!(get_as(&app, r, &msgs).await.0, 200);
    let (status, v) = call(
        &app,
        reqwest::Method::POST,
        &msgs,
        r,
        Some(json!({"client_id": "r1", "body": "hi"})),
    )
    .await;
    assert_eq!((status, code(&v)), (403, "forbidden"));
    let (status, v) = call(
        &app,
        reqwest::Method::POST,
        "/api/threads",
        r,
        Some(json!({"title": "x"})),
    )
    .await;
    assert_eq!((status, code(&v)), (403, "forbidden"));
    let (status, _) = call(
        &app,
        reqwest::Method::POST,
        &msgs,
        c,
        Some(json!({"client_id": "c1", "body": "from a bot"})),
    )
    .await;
    assert_eq!(status, 201);
    // Tokens cannot manage the account.
    for t in [r, c] {
        assert_eq!(get_as(&app, t, "/api/me/tokens").await.0, 403);
        let body = json!({"current": PASSWORD, "new": "a brand new password"});
        assert_eq!(
            call(
                &app,
                reqwest::Method::POST,
                "/api/me/password",
                t,
                Some(body)
            )
            .await
            .0,
            403
        );
    }
    // On the WebSocket, by query or header.
    let (first, _, mut ws) = ws_first(&app, r).await;
    assert_eq!(first["type"], "welcome");
    ws.subscribe(&thread, None).await;
    ws.send_message(&thread, "r2", "not allowed").await;
    let e = ws.recv_type("error").await;
    assert_eq!(
        (e["code"].as_str(), e["client_id"].as_str()),
        (Some("forbidden"), Some("r2"))
    );
    let mut req = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
        app.ws_url(),
    )
    .unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {c}").parse().unwrap());
    let mut ws = WsClient::connect_request(req).await.unwrap();
    assert_eq!(ws.recv().await.unwrap()["type"], "welcome");
    ws.subscribe(&thread, None).await;
    ws.send_message(&thread, "c2", "bots may chat").await;
    assert_eq!(ws.recv_type("ack").await["status"], "persisted");
    // Revoked: refused at once, and its socket closes 4401.
    let path = format!("/api/me/tokens/{}", chat["id"].as_str().unwrap());
    assert_eq!(delete_as(&app, &bob.token, &path).await.0, 204);
    assert_eq!(ws.close_code().await, Some(4401));
    assert_eq!(get_as(&app, c, &msgs).await.0, 401);
    assert_eq!(delete_as(&app, &bob.token, &path).await.0, 404);
}
on_both!(
    api_tokens_are_scoped_shown_once_and_revocable,
    api_tokens_on_sqlite,
    api_tokens_on_postgres
);
