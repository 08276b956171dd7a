//! The accounts fixture shared by the accounts, sessions, SSO, usage and budget tests: a server
//! on either database with a registration mode, register and login answers, calls with a bearer
//! token, and the macro that runs one scenario on SQLite and on PostgreSQL.

use emergence::{Settings, db::accounts::Registration};
use reqwest::Method;
use serde_json::{Value, json};

use super::{TestApp, TestUser, WsClient, spawn_app_with, spawn_pg_app_with};

/// The password of every account [`TestApp::register`] creates.
pub const PASSWORD: &str = "correct horse battery";

/// Run `$scenario(pg)` as one test on SQLite and one on PostgreSQL.
#[macro_export]
macro_rules! on_both {
    ($scenario:ident, $sqlite:ident, $pg:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $sqlite() {
            $scenario(false).await
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $pg() {
            $scenario(true).await
        }
    };
}

/// A server on SQLite (`pg` false) or on a fresh PostgreSQL database, configured by `configure`.
pub async fn app(pg: bool, configure: impl FnOnce(&mut Settings)) -> TestApp {
    if pg {
        spawn_pg_app_with(configure).await
    } else {
        spawn_app_with(configure).await
    }
}

/// [`app`] with this registration mode.
pub async fn app_in(pg: bool, mode: Registration) -> TestApp {
    app(pg, |s| s.auth.registration = mode).await
}

/// `POST /api/auth/register` with any body; status and JSON.
pub async fn try_register(app: &TestApp, body: Value) -> (u16, Value) {
    let r = app.post("/api/auth/register", None, body).await;
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// The user and token of a register or login answer.
pub fn user_of(v: &Value, username: &str) -> TestUser {
    TestUser {
        id: v["user"]["id"].as_str().unwrap().into(),
        username: username.into(),
        token: v["token"].as_str().unwrap().into(),
    }
}

/// `POST /api/auth/login`; status and JSON.
pub async fn login(app: &TestApp, username: &str, password: &str) -> (u16, Value) {
    let r = app
        .post(
            "/api/auth/login",
            None,
            json!({"username": username, "password": password}),
        )
        .await;
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// `method path` with `Authorization: Bearer token` and an optional JSON body: the status and
/// the JSON answer (`null` when there is none).
pub async fn call(
    app: &TestApp,
    method: Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = app.http.request(method, app.url(path)).bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// [`call`] a `GET`.
pub async fn get_as(app: &TestApp, token: &str, path: &str) -> (u16, Value) {
    call(app, Method::GET, path, token, None).await
}

/// [`call`] a `DELETE` without a body.
pub async fn delete_as(app: &TestApp, token: &str, path: &str) -> (u16, Value) {
    call(app, Method::DELETE, path, token, None).await
}

/// The `error.code` of an error body (empty when there is none).
pub fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

/// A WebSocket with this token: the first frame and, if it closed, the close code.
pub async fn ws_first(app: &TestApp, token: &str) -> (Value, Option<u16>, WsClient) {
    let mut ws = WsClient::connect(&format!("{}?token={token}", app.ws_url()))
        .await
        .unwrap();
    let first = ws.recv().await.unwrap_or(Value::Null);
    let close = if first["type"] == "welcome" {
        None
    } else {
        ws.close_code().await
    };
    (first, close, ws)
}

/// A new invite link (`POST /api/admin/invites` as `admin`).
pub async fn invite(app: &TestApp, admin: &TestUser) -> Value {
    let (status, v) = call(app, Method::POST, "/api/admin/invites", &admin.token, None).await;
    assert_eq!(status, 201, "{v}");
    v
}
