//! The bad-input battery for accounts and single sign-on (issue #15), beside the one in
//! `accounts_cluster.rs` (a user on every admin route, invite guessing, API tokens in URLs):
//! forged roles and statuses never escalate (on both backends), a forged user in the hand-over
//! exchange is ignored, the SSO routes answer garbage with contract errors or the error page
//! (never a 500), starting sign-ins is rate limited, an unreachable provider is a clear page,
//! and no `state`, code, hand-over code or session token of a sign-in reaches the log.

use std::{io::Read, process::Stdio, time::Duration};

use emergence::db::accounts::Registration;
use reqwest::Method;
use serde_json::{Value, json};

use crate::{
    on_both,
    support::accounts::{PASSWORD, app, call, code, get_as, try_register, user_of},
    support::{
        TestDb,
        oidc::{Browser, TestOp, exchange_at, providers},
        process::{BUILT, free_port, wait_ready},
    },
};

async fn forged_roles_and_statuses_never_escalate(pg: bool) {
    let app = app(pg, |s| s.auth.registration = Registration::Approval).await;
    let admin = app.register("admin").await;
    // Every field a client could forge at registration.
    let forged = json!({
        "username": "mallory", "password": PASSWORD,
        "role": "admin", "status": "active", "admin": true, "pending": false,
        "user": {"role": "admin"}, "scope": "chat",
    });
    let (status, v) = try_register(&app, forged).await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(
        (v["user"]["role"].as_str(), v["user"]["status"].as_str()),
        (Some("user"), Some("pending"))
    );
    let mallory = user_of(&v, "mallory");
    // Pending, she cannot reach an admin route to approve or promote herself.
    for (method, path, body) in [
        (
            Method::POST,
            format!("/api/admin/users/{}/approve", mallory.id),
            None,
        ),
        (
            Method::PATCH,
            format!("/api/admin/users/{}", mallory.id),
            Some(json!({"role": "admin", "status": "active"})),
        ),
    ] {
        let (status, v) = call(&app, method, &path, &mallory.token, body).await;
        assert_eq!(status, 403, "{path}: {v}");
        assert!(["pending_approval", "forbidden"].contains(&code(&v)), "{v}");
    }
    // Approved, she is still a plain user: the same requests stay refused.
    let (status, _) = call(
        &app,
        Method::POST,
        &format!("/api/admin/users/{}/approve", mallory.id),
        &admin.token,
        None,
    )
    .await;
    assert_eq!(status, 200);
    let (status, v) = call(
        &app,
        Method::PATCH,
        &format!("/api/admin/users/{}", mallory.id),
        &mallory.token,
        Some(json!({"role": "admin"})),
    )
    .await;
    assert_eq!((status, code(&v)), (403, "forbidden"), "{v}");
    // A login with forged fields gives the stored role, not the asked one.
    let r = app
        .post(
            "/api/auth/login",
            None,
            json!({"username": "mallory", "password": PASSWORD, "role": "admin"}),
        )
        .await;
    let status = r.status().as_u16();
    let v: Value = r.json().await.unwrap();
    assert!(status == 200 || status == 422, "{v}");
    if status == 200 {
        assert_eq!(v["user"]["role"], "user");
    }
    let (_, users) = get_as(&app, &admin.token, "/api/admin/users").await;
    let row = users["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["username"] == "mallory")
        .cloned()
        .unwrap();
    assert_eq!(
        (row["role"].as_str(), row["status"].as_str()),
        (Some("user"), Some("active"))
    );
}
on_both!(
    forged_roles_and_statuses_never_escalate,
    forged_roles_never_escalate_on_sqlite,
    forged_roles_never_escalate_on_postgres
);

async fn sso_routes_answer_garbage_with_contract_errors(pg: bool) {
    let op_port = free_port();
    let app = app(pg, |s| {
        let mut all = providers(&format!("http://127.0.0.1:{op_port}"));
        // A provider that is not running at all.
        let mut down = all[0].clone();
        down.name = "down".into();
        down.issuer = format!("http://127.0.0.1:{}", free_port());
        all.push(down);
        s.auth.oidc = all;
    })
    .await;
    let _op = TestOp::start(op_port, &[&app.address]).await;
    let admin = app.register("admin").await;
    // The hand-over exchange: bad bodies are contract errors, unknown codes 401.
    for (body, want) in [
        (json!({}), (422, "validation")),
        (json!({"code": 5}), (422, "validation")),
        (json!({"code": ["x"]}), (422, "validation")),
        (json!({"code": ""}), (401, "unauthorized")),
        (json!({"code": "x".repeat(100_000)}), (401, "unauthorized")),
        (json!({"code": "' OR 1=1 --"}), (401, "unauthorized")),
    ] {
        let r = app
            .post("/api/auth/oidc/exchange", None, body.clone())
            .await;
        let status = r.status().as_u16();
        let v: Value = r.json().await.unwrap();
        let shown: String = body.to_string().chars().take(80).collect();
        assert_eq!((status, code(&v)), want, "{shown}: {v}");
    }
    let r = app
        .http
        .post(app.url("/api/auth/oidc/exchange"))
        .header("content-type", "application/json")
        .body("[1,2")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // A forged user beside a real hand-over code is ignored: the session is the code's user.
    let flow = Browser::new()
        .sign_in(&app.address, "test", "nora", None)
        .await;
    let r = app
        .post(
            "/api/auth/oidc/exchange",
            None,
            json!({"code": flow.outcome.unwrap(), "user_id": admin.id, "role": "admin"}),
        )
        .await;
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        (v["user"]["username"].as_str(), v["user"]["role"].as_str()),
        (Some("nora"), Some("user")),
        "{v}"
    );
    // The browser routes: garbage ends on the error page, never a 500.
    let mut browser = Browser::new();
    for (path, reason) in [
        ("/auth/oidc/test/callback", "sso_state_invalid"),
        ("/auth/oidc/test/callback?state=&code=", "sso_state_invalid"),
        (
            "/auth/oidc/test/callback?state=%00%ff&code=%00",
            "sso_state_invalid",
        ),
        (
            "/auth/oidc/..%2F..%2Fetc/callback?state=x",
            "sso_state_invalid",
        ),
        (
            "/auth/oidc/test/callback?error=%3Cscript%3E&state=x",
            "sso_state_invalid",
        ),
        ("/auth/oidc/%3Cb%3E/start", "sso_unknown_provider"),
        ("/auth/oidc/down/start", "sso_unavailable"),
    ] {
        let (status, location) = browser.get(&format!("{}{path}", app.address)).await;
        assert_eq!(status, 303, "{path}");
        assert!(
            location
                .as_deref()
                .unwrap_or("")
                .ends_with(&format!("/#/sso-error/{reason}")),
            "{path}: {location:?}"
        );
    }
    let long = format!(
        "{}/auth/oidc/test/callback?state={}",
        app.address,
        "s".repeat(6000)
    );
    let (status, _) = browser.get(&long).await;
    assert!(status == 303 || status == 414 || status == 431, "{status}");
}
on_both!(
    sso_routes_answer_garbage_with_contract_errors,
    sso_routes_answer_garbage_on_sqlite,
    sso_routes_answer_garbage_on_postgres
);

/// Each start stores a row: starting is limited per client address like logins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starting_sign_ins_is_rate_limited_per_address() {
    let op_port = free_port();
    let app = app(false, |s| {
        s.auth.oidc = providers(&format!("http://127.0.0.1:{op_port}"));
        s.limits.auth_rate_per_min = 1;
        s.limits.auth_burst = 3;
    })
    .await;
    let _op = TestOp::start(op_port, &[&app.address]).await;
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(
            Browser::new()
                .get(&format!("{}/auth/oidc/test/start", app.address))
                .await
                .0,
        );
    }
    assert_eq!(statuses, [303, 303, 303, 429, 429]);
}

/// A sign-in through the real binary with debug logs: none of its secrets is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_secrets_never_reach_the_log() {
    let db = TestDb::sqlite();
    let (port, op_port) = (free_port(), free_port());
    let dir = std::env::temp_dir().join(format!("emergence-sso-log-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("emergence.toml");
    std::fs::write(
        &config,
        format!(
            "[[auth.oidc]]\nname = \"test\"\nissuer = \"http://127.0.0.1:{op_port}\"\n\
             client_id = \"emergence\"\nclient_secret_env = \"TEST_OIDC_SECRET\"\n"
        ),
    )
    .unwrap();
    let log = dir.join("log.txt");
    let mut child = std::process::Command::new(BUILT)
        .arg("serve")
        .env("PORT", port.to_string())
        .env("EMERGENCE_HOST", "127.0.0.1")
        .env("DATABASE_URL", db.url())
        .env("EMERGENCE_CONFIG", &config)
        .env("TEST_OIDC_SECRET", "emergence-secret")
        .env("EMERGENCE_REGISTRATION", "open")
        .env("EMERGENCE_LOG", "debug")
        .env("EMERGENCE_LOG_FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    wait_ready(port).await;
    let base = format!("http://127.0.0.1:{port}");
    let _op = TestOp::start(op_port, &[&base]).await;
    let flow = Browser::new().sign_in(&base, "test", "olga", None).await;
    let handover = flow.outcome.expect("signed in");
    let callback = reqwest::Url::parse(&flow.callback_url.unwrap()).unwrap();
    let param = |k: &str| {
        callback
            .query_pairs()
            .find(|(n, _)| n == k)
            .unwrap()
            .1
            .to_string()
    };
    let (state, code) = (param("state"), param("code"));
    let r = exchange_at(&base, &handover).await;
    let token = r.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();
    // The refused replays too.
    let _ = exchange_at(&base, &handover).await;
    let _ = Browser::new().get(callback.as_str()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = child.kill();
    let _ = child.wait();
    let mut text = String::new();
    std::fs::File::open(&log)
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        text.contains("/auth/oidc/test/callback"),
        "the requests were logged: {text}"
    );
    let signature = token.rsplit('.').next().unwrap().to_string();
    for (what, secret) in [
        ("state", &state),
        ("code", &code),
        ("hand-over code", &handover),
        ("session token", &signature),
        ("client secret", &"emergence-secret".to_string()),
    ] {
        assert!(
            !text.contains(secret.as_str()),
            "the {what} reached the log"
        );
    }
}
