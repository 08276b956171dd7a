//! Accounts across instances (PostgreSQL + Redis): a password change or a disable made on one
//! instance ends the sessions on every other within 5 s; the `emergence admin` CLI; the
//! accounts part of the bad-input battery (a user on admin routes, invite guessing, tokens in
//! URLs never logged).

use std::{
    io::{Read, Write},
    process::Stdio,
    time::{Duration, Instant},
};

use emergence::db::accounts::Registration;
use reqwest::Method;
use serde_json::json;

use crate::{
    scale::cluster,
    support::accounts::{PASSWORD, app_in, call, code, get_as, login, try_register, user_of},
    support::{
        TestApp, TestDb, WsClient,
        process::{BUILT, free_port, spawn_server, wait_ready},
    },
};

const REDIS: &str = "redis://127.0.0.1:6379";

/// Poll until `path` answers 401 for `token` on `app`; how long it took.
async fn refused_within(app: &TestApp, token: &str, limit: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let (status, _) = get_as(app, token, "/api/threads").await;
        if status == 401 {
            return started.elapsed();
        }
        assert!(started.elapsed() < limit, "still accepted after {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_change_ends_the_other_sessions_on_every_instance_within_5_s() {
    let (apps, _db) = cluster(2, REDIS, |_| {}).await;
    let bob = apps[0].register("bob").await;
    let (_, other) = login(&apps[1], "bob", PASSWORD).await;
    let other = user_of(&other, "bob");
    let mut ws = apps[1].ws(&other).await;
    let body = json!({"current": PASSWORD, "new": "a brand new password"});
    let (status, _) = call(
        &apps[0],
        Method::POST,
        "/api/me/password",
        &bob.token,
        Some(body),
    )
    .await;
    assert_eq!(status, 204);
    let started = Instant::now();
    assert_eq!(ws.close_code().await, Some(4401));
    assert!(started.elapsed() < Duration::from_secs(5));
    refused_within(&apps[1], &other.token, Duration::from_secs(5)).await;
    let (status, _) = get_as(&apps[1], &bob.token, "/api/threads").await;
    assert_eq!(status, 200, "the session that changed it stays, everywhere");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabling_a_user_closes_their_sockets_with_4401_on_every_instance_within_5_s() {
    let (apps, _db) = cluster(3, REDIS, |_| {}).await;
    let admin = apps[0].register("admin").await;
    let bob = apps[0].register("bob").await;
    let thread = apps[0].create_thread(&bob, "kept").await;
    let mut sockets = Vec::new();
    for app in &apps {
        sockets.push(app.ws(&bob).await);
    }
    sockets[0].subscribe(&thread, None).await;
    sockets[0]
        .send_message(&thread, "m1", "this message stays")
        .await;
    sockets[0].recv_type("ack").await;
    let path = format!("/api/admin/users/{}", bob.id);
    let (status, _) = call(
        &apps[2],
        Method::PATCH,
        &path,
        &admin.token,
        Some(json!({"status": "disabled"})),
    )
    .await;
    assert_eq!(status, 200);
    let started = Instant::now();
    for ws in &mut sockets {
        assert_eq!(ws.close_code().await, Some(4401));
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    for app in &apps {
        refused_within(app, &bob.token, Duration::from_secs(5)).await;
    }
    let (_, v) = get_as(
        &apps[1],
        &admin.token,
        &format!("/api/threads/{thread}/messages"),
    )
    .await;
    // The admin is not a member: the thread stays private (404), and bob's message is in the
    // database (checked through the store, not through an HTTP shortcut).
    assert_eq!(code(&v), "not_found");
    let stored = apps[1]
        .state
        .db
        .run(|s| {
            let t = thread.clone();
            async move { s.messages(&t, emergence::db::Page::Latest, 10).await }
        })
        .await
        .unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].body, "this message stays");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_registrations_make_exactly_one_admin_on_postgres() {
    let (apps, _db) = cluster(2, REDIS, |s| s.auth.registration = Registration::Approval).await;
    let mut tasks = Vec::new();
    for i in 0..8 {
        let (http, url) = (
            apps[i % 2].http.clone(),
            apps[i % 2].url("/api/auth/register"),
        );
        tasks.push(tokio::spawn(async move {
            let r = http
                .post(url)
                .json(&json!({"username": format!("user{i}"), "password": PASSWORD}))
                .send()
                .await
                .unwrap();
            let v: serde_json::Value = r.json().await.unwrap();
            v["user"]["role"].as_str().unwrap().to_string()
        }));
    }
    let mut roles = Vec::new();
    for t in tasks {
        roles.push(t.await.unwrap());
    }
    assert_eq!(
        roles.iter().filter(|r| *r == "admin").count(),
        1,
        "{roles:?}"
    );
}

/// Every admin route, with a body where it takes one.
const ADMIN_ROUTES: &[(&str, &str)] = &[
    ("GET", "/api/admin/users"),
    ("PATCH", "/api/admin/users/ID"),
    ("POST", "/api/admin/users/ID/approve"),
    ("POST", "/api/admin/users/ID/reset"),
    ("GET", "/api/admin/users/ID/sessions"),
    ("DELETE", "/api/admin/users/ID/sessions"),
    ("GET", "/api/admin/invites"),
    ("POST", "/api/admin/invites"),
    ("DELETE", "/api/admin/invites/ID"),
    ("GET", "/api/admin/usage"),
    ("GET", "/api/admin/usage?group=user&format=csv"),
    ("GET", "/api/admin/budgets"),
    ("PUT", "/api/admin/budgets"),
    ("PUT", "/api/admin/budgets/ID"),
    ("DELETE", "/api/admin/budgets/ID"),
];

async fn users_never_reach_admin_routes(pg: bool) {
    let app = app_in(pg, Registration::Open).await;
    let admin = app.register("admin").await;
    let bob = app.register("bob").await;
    let (_, token) = call(
        &app,
        Method::POST,
        "/api/me/tokens",
        &admin.token,
        Some(json!({"name": "admin bot", "scope": "chat"})),
    )
    .await;
    let admin_api_token = token["token"].as_str().unwrap().to_string();
    for (method, path) in ADMIN_ROUTES {
        let path = path.replace("ID", &admin.id);
        let method: Method = method.parse().unwrap();
        let body = Some(json!({"role": "user", "status": "disabled"}));
        for (who, token) in [
            ("a user", &bob.token),
            ("an admin's API token", &admin_api_token),
        ] {
            let (status, v) = call(&app, method.clone(), &path, token, body.clone()).await;
            assert_eq!(
                (status, code(&v)),
                (403, "forbidden"),
                "{who}: {method} {path}: {v}"
            );
        }
        let (status, _) = call(&app, method.clone(), &path, "not-a-token", None).await;
        assert_eq!(status, 401, "{method} {path}");
    }
    // Nothing changed.
    let (_, me) = get_as(&app, &admin.token, "/api/me").await;
    assert_eq!(
        (me["role"].as_str(), me["status"].as_str()),
        (Some("admin"), Some("active"))
    );
    let (_, budgets) = get_as(&app, &admin.token, "/api/admin/budgets").await;
    assert_eq!(
        budgets,
        json!({"default": {"daily_tokens": null, "monthly_tokens": null}, "overrides": []})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_never_reach_admin_routes_on_sqlite() {
    users_never_reach_admin_routes(false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_never_reach_admin_routes_on_postgres() {
    users_never_reach_admin_routes(true).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guessing_invites_is_rate_limited_per_address() {
    let app = crate::support::accounts::app(false, |s| {
        s.auth.registration = Registration::Invite;
        s.limits.failed_logins_per_user = 3;
        s.limits.auth_rate_per_min = 0;
    })
    .await;
    app.register("admin").await;
    for i in 0..3 {
        let body = json!({"username": format!("guess{i}"), "password": PASSWORD, "invite": format!("guess-{i}")});
        let (status, v) = try_register(&app, body).await;
        assert_eq!((status, code(&v)), (403, "invite_invalid"));
    }
    let body = json!({"username": "guess9", "password": PASSWORD, "invite": "guess-9"});
    let r = app.post("/api/auth/register", None, body).await;
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(code(&v), "rate_limited");
    // Guessing reset links too.
    let resets = crate::support::accounts::app(false, |s| {
        s.limits.failed_logins_per_user = 2;
        s.limits.auth_rate_per_min = 0;
    })
    .await;
    for _ in 0..2 {
        let r = resets
            .post(
                "/api/auth/reset",
                None,
                json!({"token": "guess", "password": PASSWORD}),
            )
            .await;
        assert_eq!(r.status(), 403);
    }
    let r = resets
        .post(
            "/api/auth/reset",
            None,
            json!({"token": "guess", "password": PASSWORD}),
        )
        .await;
    assert_eq!(r.status(), 429);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_account_bodies_get_contract_errors_never_a_500() {
    let app = app_in(false, Registration::Open).await;
    let admin = app.register("admin").await;
    let bodies = [
        json!({"role": 5}),
        json!({"status": ["disabled"]}),
        json!({"status": "deleted"}),
        json!({"role": null, "status": "ACTIVE"}),
    ];
    let path = format!("/api/admin/users/{}", admin.id);
    for b in bodies {
        let (status, v) = call(&app, Method::PATCH, &path, &admin.token, Some(b.clone())).await;
        assert_eq!((status, code(&v)), (422, "validation"), "{b}: {v}");
    }
    for b in [
        json!({}),
        json!({"name": "x"}),
        json!({"name": "x".repeat(65), "scope": "read"}),
        json!({"name": "a\u{0}b", "scope": "chat"}),
    ] {
        let (status, v) = call(
            &app,
            Method::POST,
            "/api/me/tokens",
            &admin.token,
            Some(b.clone()),
        )
        .await;
        assert_eq!((status, code(&v)), (422, "validation"), "{b}: {v}");
    }
    for b in [
        json!({}),
        json!({"current": 1, "new": "a brand new password"}),
    ] {
        let (status, v) = call(
            &app,
            Method::POST,
            "/api/me/password",
            &admin.token,
            Some(b.clone()),
        )
        .await;
        assert_eq!((status, code(&v)), (422, "validation"), "{b}: {v}");
    }
    let r = app
        .http
        .post(app.url("/api/me/tokens"))
        .bearer_auth(&admin.token)
        .header("content-type", "application/json")
        .body("[1,2]")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let (status, v) = try_register(
        &app,
        json!({"username": "x1x", "password": PASSWORD, "invite": 7}),
    )
    .await;
    assert_eq!((status, code(&v)), (422, "validation"), "{v}");
    for (method, path) in [
        (Method::DELETE, "/api/me/sessions/%00"),
        (Method::DELETE, "/api/me/tokens/nope"),
    ] {
        let (status, _) = call(&app, method, path, &admin.token, None).await;
        assert_eq!(status, 404, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_in_urls_never_reach_the_request_log() {
    let db = TestDb::sqlite();
    let port = free_port();
    let log = std::env::temp_dir().join(format!("emergence-log-{}.txt", uuid::Uuid::new_v4()));
    let file = std::fs::File::create(&log).unwrap();
    let mut child = std::process::Command::new(BUILT)
        .arg("serve")
        .env("PORT", port.to_string())
        .env("EMERGENCE_HOST", "127.0.0.1")
        .env("DATABASE_URL", db.url())
        .env("EMERGENCE_REGISTRATION", "open")
        .env("EMERGENCE_LOG", "debug")
        .env("EMERGENCE_LOG_FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(file)
        .spawn()
        .unwrap();
    wait_ready(port).await;
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let token = crate::support::process::register(&http, &base, "logged").await;
    let api = http
        .post(format!("{base}/api/me/tokens"))
        .bearer_auth(&token)
        .json(&json!({"name": "bot", "scope": "read"}))
        .send()
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();
    for t in [&token, &api] {
        let mut ws = WsClient::connect(&format!("ws://127.0.0.1:{port}/ws?token={t}"))
            .await
            .unwrap();
        assert_eq!(ws.recv().await.unwrap()["type"], "welcome");
        let _ = http
            .get(format!("{base}/api/threads?token={t}"))
            .bearer_auth(t)
            .send()
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = child.kill();
    let _ = child.wait();
    let mut text = String::new();
    std::fs::File::open(&log)
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    let _ = std::fs::remove_file(&log);
    assert!(text.contains("/ws"), "the requests were logged: {text}");
    for t in [&token, &api] {
        let signature = t.rsplit('.').next().unwrap();
        assert!(!text.contains(signature), "a token reached the log");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_cli_creates_admins_and_promotes_users() {
    let db = TestDb::sqlite();
    let run = |args: &[&str], stdin: &str| {
        let mut child = std::process::Command::new(BUILT)
            .args(args)
            .env("DATABASE_URL", db.url())
            .env("EMERGENCE_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    // The first account is the admin even without --admin; a second one needs --admin.
    let out = run(&["admin", "create-user", "root"], &format!("{PASSWORD}\n"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("admin"));
    let out = run(
        &["admin", "create-user", "ops", "--admin"],
        &format!("{PASSWORD}\n"),
    );
    assert!(out.status.success());
    let out = run(&["admin", "create-user", "carol"], &format!("{PASSWORD}\n"));
    assert!(String::from_utf8_lossy(&out.stdout).contains("(user,"));
    let out = run(&["admin", "create-user", "carol"], &format!("{PASSWORD}\n"));
    assert!(!out.status.success(), "taken");
    let out = run(&["admin", "create-user", "dave"], "short\n");
    assert!(!out.status.success(), "password rules apply");
    let out = run(&["admin", "promote", "carol"], "");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(&["admin", "promote", "nobody"], "");
    assert!(!out.status.success());
    // The server agrees.
    let port = free_port();
    let mut server = spawn_server(BUILT, port, &[("DATABASE_URL", &db.url())], false);
    wait_ready(port).await;
    let http = reqwest::Client::new();
    for (name, role) in [("root", "admin"), ("ops", "admin"), ("carol", "admin")] {
        let v: serde_json::Value = http
            .post(format!("http://127.0.0.1:{port}/api/auth/login"))
            .json(&json!({"username": name, "password": PASSWORD}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(v["user"]["role"], role, "{name}: {v}");
    }
    let _ = server.kill();
    let _ = server.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_says_why_when_registration_keeps_probe_users_pending() {
    let app = app_in(false, Registration::Approval).await;
    app.register("admin").await;
    let out = tokio::process::Command::new(BUILT)
        .args(["verify", "--url", &app.address, "--json"])
        .args(["--duration", "1", "--ws-clients", "2"])
        .output()
        .await
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("pending approval"), "{text}");
}

/// The accounts statements behind PgBouncer in transaction mode (one server connection for the
/// instance's whole pool): registration with its first-admin claim, approval, the admin lock,
/// API tokens, revocations.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_work_behind_pgbouncer_in_transaction_mode() {
    let db = TestDb::postgres().await;
    let pgb = crate::support::pgbouncer::PgBouncer::start(1).await;
    let url = pgb.url(db.pg_name().unwrap());
    let mut s = crate::pooler::pooled_settings(&url, &db);
    s.auth.registration = Registration::Approval;
    let app = crate::support::start(s, TestDb::Shared(url.clone()), true).await;
    let admin = app.register("admin").await;
    let (status, v) = try_register(&app, json!({"username": "bob", "password": PASSWORD})).await;
    assert_eq!(
        (status, v["user"]["status"].as_str()),
        (201, Some("pending"))
    );
    let bob = user_of(&v, "bob");
    let (status, v) = get_as(&app, &bob.token, "/api/threads").await;
    assert_eq!((status, code(&v)), (403, "pending_approval"));
    let approve = format!("/api/admin/users/{}/approve", bob.id);
    assert_eq!(
        call(&app, Method::POST, &approve, &admin.token, None)
            .await
            .0,
        200
    );
    assert_eq!(get_as(&app, &bob.token, "/api/threads").await.0, 200);
    let me = format!("/api/admin/users/{}", admin.id);
    let body = Some(json!({"role": "user"}));
    assert_eq!(
        call(&app, Method::PATCH, &me, &admin.token, body).await.0,
        409
    );
    let body = Some(json!({"name": "bot", "scope": "read"}));
    let (status, token) = call(&app, Method::POST, "/api/me/tokens", &bob.token, body).await;
    assert_eq!(status, 201);
    let (_, list) = get_as(&app, &bob.token, "/api/me/sessions").await;
    assert_eq!(list["sessions"].as_array().unwrap().len(), 1);
    let bob_path = format!("/api/admin/users/{}", bob.id);
    let body = Some(json!({"status": "disabled"}));
    assert_eq!(
        call(&app, Method::PATCH, &bob_path, &admin.token, body)
            .await
            .0,
        200
    );
    let api = token["token"].as_str().unwrap();
    assert_eq!(get_as(&app, api, "/api/threads").await.0, 401);
    let invite = call(&app, Method::POST, "/api/admin/invites", &admin.token, None).await;
    assert_eq!(invite.0, 201);
    let (_, invites) = get_as(&app, &admin.token, "/api/admin/invites").await;
    assert_eq!(invites["invites"].as_array().unwrap().len(), 1);
}
