//! The security audit of 2026-11 (issue #22), HTTP side: each finding is played as the attacker
//! played it, and the test fails on the code the audit found. `docs/security.md` maps every
//! finding to its test here or in `security_limits.rs`.

use std::{net::IpAddr, time::Duration};

use serde_json::{Value, json};

use crate::support::{
    TestApp, TestUser, process::spawn_ready_on_sqlite, spawn_app, spawn_app_with,
};

/// A client whose connections come from `source` (any 127.0.0.0/8 address is this machine).
fn client_from(source: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(source.parse::<IpAddr>().unwrap())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

async fn login_from(
    http: &reqwest::Client,
    app: &TestApp,
    username: &str,
    password: &str,
) -> reqwest::Response {
    http.post(app.url("/api/auth/login"))
        .json(&json!({"username": username, "password": password}))
        .send()
        .await
        .unwrap()
}

/// Resident memory of a process, in KiB (`VmRSS`, or another field of /proc/PID/status).
pub fn proc_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap()
}

// ---------------------------------------------------------------------------------------------
// 1. Memory exhaustion by failed logins with huge usernames
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn two_hundred_failed_logins_with_1_mb_usernames_leave_rss_within_5_mib() {
    let _machine = crate::support::heavy().await;
    let server = spawn_ready_on_sqlite().await;
    let (port, pid) = (server.port, server.pid());
    // The server's allocator options were read (`malloc_conf` in src/lib.rs): its purging
    // background thread runs.
    let threads: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .collect();
    assert!(
        threads.iter().any(|c| c.trim() == "jemalloc_bg_thd"),
        "no jemalloc background thread: {threads:?}"
    );
    let http = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/api/auth/login");
    let huge = "a".repeat(1_000_000);
    let login = |username: String| {
        let (http, url) = (http.clone(), url.clone());
        async move {
            http.post(url)
                .json(&json!({"username": username, "password": "wrong password"}))
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    // Warm up: the allocator has seen 1 MB bodies and ordinary failed logins before the baseline.
    for i in 0..10 {
        assert_eq!(login(format!("warm{i}")).await, 401);
    }
    for i in 0..5 {
        assert_eq!(login(format!("{huge}{i}")).await, 401);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = proc_kib(pid, "VmRSS:");
    for i in 0..200 {
        let status = login(format!("{i}{huge}")).await;
        assert!(matches!(status.as_u16(), 401 | 429), "login {i}: {status}");
    }
    // Freed request buffers go back to the system within jemalloc's decay time.
    let mut after = u64::MAX;
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        after = after.min(proc_kib(pid, "VmRSS:"));
        if after <= before + 5 * 1024 {
            break;
        }
    }
    println!("RSS before {before} KiB, after 200 x 1 MB failed logins {after} KiB");
    assert!(
        after <= before + 5 * 1024,
        "RSS grew from {before} KiB to {after} KiB after 200 failed logins with 1 MB usernames"
    );
}

// ---------------------------------------------------------------------------------------------
// 3. Anyone could lock anyone out
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn the_owner_logs_in_while_a_stranger_is_locked_out_of_that_username() {
    let app = spawn_app().await;
    let alice = app.register("alice").await;
    let stranger = client_from("127.0.0.2");
    let mut locked = false;
    for _ in 0..12 {
        let r = login_from(&stranger, &app, "alice", "guessing wrong").await;
        match r.status().as_u16() {
            401 => {}
            429 => {
                assert!(r.headers().contains_key("retry-after"));
                locked = true;
            }
            other => panic!("stranger's guess got {other}"),
        }
    }
    assert!(locked, "10 wrong passwords lock the stranger out");
    // The stranger stays locked out even with the right password...
    let r = login_from(&stranger, &app, "alice", "correct horse battery").await;
    assert_eq!(r.status(), 429);
    // ...while the owner, from their own address, logs in at once.
    let owner = client_from("127.0.0.1");
    let r = login_from(&owner, &app, &alice.username, "correct horse battery").await;
    assert_eq!(r.status(), 200, "the owner is not locked out by a stranger");
    // The lockout is per username too: the stranger's other guesses are not blocked by it.
    let r = login_from(&stranger, &app, "bob", "guessing wrong").await;
    assert_eq!(r.status(), 401);
}

// ---------------------------------------------------------------------------------------------
// 4. Login CSRF: text/plain bodies and cross-site login forms
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn json_routes_answer_415_to_any_body_that_is_not_application_json() {
    let app = spawn_app().await;
    let alice = app.register("alice").await;
    let thread = app.create_thread(&alice, "t").await;
    let login = json!({"username": "alice", "password": "correct horse battery"}).to_string();
    let routes = [
        ("/api/auth/login", None, login.clone()),
        (
            "/api/auth/register",
            None,
            json!({"username": "mallory", "password": "correct horse battery"}).to_string(),
        ),
        (
            "/api/threads",
            Some(&alice.token),
            json!({"title": "x"}).to_string(),
        ),
        (
            &format!("/api/threads/{thread}/messages") as &str,
            Some(&alice.token),
            json!({"client_id": "c1", "body": "hi"}).to_string(),
        ),
        (
            &format!("/api/threads/{thread}/members"),
            Some(&alice.token),
            json!({"username": "nobody"}).to_string(),
        ),
    ];
    for (path, token, body) in &routes {
        for content_type in [
            Some("text/plain"),
            Some("application/x-www-form-urlencoded"),
            Some("multipart/form-data; boundary=x"),
            Some("application/jsonx"),
            None,
        ] {
            let mut req = app.http.post(app.url(path)).body(body.clone());
            if let Some(ct) = content_type {
                req = req.header("content-type", ct);
            }
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            let r = req.send().await.unwrap();
            assert_eq!(r.status(), 415, "{path} with {content_type:?}");
            let v: Value = r.json().await.unwrap();
            assert_eq!(v["error"]["code"], "unsupported_type", "{path}: {v}");
            assert!(
                v["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("application/json")
            );
        }
    }
    // application/json with parameters is JSON.
    let r = app
        .http
        .post(app.url("/api/auth/login"))
        .header("content-type", "Application/JSON; charset=utf-8")
        .body(login)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn login_and_register_from_a_foreign_origin_get_403_and_set_no_cookie() {
    let app = spawn_app().await;
    app.register("alice").await;
    let own = format!("http://127.0.0.1:{}", app.port);
    for (path, body) in [
        (
            "/api/auth/login",
            json!({"username": "alice", "password": "correct horse battery"}),
        ),
        (
            "/api/auth/register",
            json!({"username": "planted", "password": "correct horse battery"}),
        ),
    ] {
        for origin in [
            "https://evil.example",
            "null",
            &own.replace("http:", "https:"),
        ] {
            let r = app
                .http
                .post(app.url(path))
                .header("origin", origin)
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 403, "{path} from {origin}");
            assert!(r.headers().get("set-cookie").is_none());
            let v: Value = r.json().await.unwrap();
            assert_eq!(v["error"]["code"], "forbidden");
        }
    }
    // The page's own origin, and scripts that send no Origin, log in as before.
    let r = app
        .http
        .post(app.url("/api/auth/login"))
        .header("origin", &own)
        .json(&json!({"username": "alice", "password": "correct horse battery"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("set-cookie").is_some());
    let r = app
        .post(
            "/api/auth/login",
            None,
            json!({"username": "alice", "password": "correct horse battery"}),
        )
        .await;
    assert_eq!(r.status(), 200);
}

/// The session cookie of a fresh login.
async fn cookie_of(app: &TestApp, user: &TestUser) -> String {
    let r = app
        .post(
            "/api/auth/login",
            None,
            json!({"username": user.username, "password": "correct horse battery"}),
        )
        .await;
    let set = r.headers()["set-cookie"].to_str().unwrap().to_string();
    set.split(';').next().unwrap().to_string()
}

#[tokio::test]
async fn the_origin_check_compares_the_scheme_and_reads_the_http2_authority() {
    let app = spawn_app().await;
    let alice = app.register("alice").await;
    let cookie = cookie_of(&app, &alice).await;
    let own = format!("http://127.0.0.1:{}", app.port);
    let post = |http: reqwest::Client, origin: String| {
        let (url, cookie) = (app.url("/api/threads"), cookie.clone());
        async move {
            http.post(url)
                .header("cookie", cookie)
                .header("origin", origin)
                .json(&json!({"title": "via cookie"}))
                .send()
                .await
                .unwrap()
        }
    };
    // Same host and port, other scheme: not our origin.
    let r = post(app.http.clone(), own.replace("http:", "https:")).await;
    assert_eq!(r.status(), 403);
    let r = post(app.http.clone(), own.clone()).await;
    assert_eq!(r.status(), 201);
    // HTTP/2 has no Host header: the request's :authority is the server's name.
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let r = post(h2.clone(), own.clone()).await;
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(r.status(), 201, "a same-origin cookie POST over HTTP/2");
    let r = post(h2, "http://evil.example".into()).await;
    assert_eq!(r.status(), 403);
}

// ---------------------------------------------------------------------------------------------
// 5. Username oracle and unthrottled thread creation
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn member_probes_and_thread_creation_are_rate_limited_per_user() {
    let app = spawn_app().await;
    let alice = app.register("alice").await;
    app.register("bob").await;
    let thread = app.create_thread(&alice, "t").await;
    let path = format!("/api/threads/{thread}/members");
    let mut answers = Vec::new();
    for i in 0..60 {
        let name = if i == 30 {
            "bob".to_string()
        } else {
            format!("probe{i}")
        };
        let r = app
            .post(&path, Some(&alice.token), json!({"username": name}))
            .await;
        if r.status() == 429 {
            assert!(r.headers().contains_key("retry-after"));
        }
        answers.push(r.status().as_u16());
    }
    let limited = answers.iter().filter(|s| **s == 429).count();
    println!("member probes: {limited} of 60 refused with 429");
    assert!(limited >= 30, "60 probes in a burst: {answers:?}");
    assert_eq!(answers[0], 404, "an unknown name is a 404 (contract)");
    // Another user is not affected by alice's probing.
    let bob = app
        .post(
            "/api/auth/login",
            None,
            json!({"username": "bob", "password": "correct horse battery"}),
        )
        .await;
    let bob: Value = bob.json().await.unwrap();
    let bob_token = bob["token"].as_str().unwrap();
    let r = app
        .post("/api/threads", Some(bob_token), json!({"title": "bob's"}))
        .await;
    assert_eq!(r.status(), 201);
    // 40 thread creations in one burst: the burst is cut.
    let mut created = 0;
    let mut refused = 0;
    for i in 0..40 {
        let r = app
            .post(
                "/api/threads",
                Some(&alice.token),
                json!({"title": format!("t{i}")}),
            )
            .await;
        match r.status().as_u16() {
            201 => created += 1,
            429 => {
                assert!(r.headers().contains_key("retry-after"));
                let v: Value = r.json().await.unwrap();
                assert_eq!(v["error"]["code"], "rate_limited");
                refused += 1;
            }
            other => panic!("thread creation got {other}"),
        }
    }
    println!("thread creation burst: {created} created, {refused} refused");
    assert!(
        refused > 0 && created > 0,
        "{created} created, {refused} refused"
    );
}

// ---------------------------------------------------------------------------------------------
// 6. Security headers on every answer
// ---------------------------------------------------------------------------------------------

fn assert_common_headers(r: &reqwest::Response, what: &str) {
    let h = r.headers();
    assert_eq!(h["x-content-type-options"], "nosniff", "{what}");
    let pp = h
        .get("permissions-policy")
        .unwrap_or_else(|| panic!("{what}: no Permissions-Policy"));
    assert!(pp.to_str().unwrap().contains("camera=()"), "{what}: {pp:?}");
}

#[tokio::test]
async fn html_api_asset_and_error_answers_carry_the_security_headers() {
    let app = spawn_app().await;
    let alice = app.register("alice").await;
    let html = app.get("/", None).await;
    assert_common_headers(&html, "the page");
    let page = html.text().await.unwrap();
    let asset = page
        .split('"')
        .find(|s| s.starts_with("/assets/") && s.ends_with(".js"))
        .expect("the page names its script")
        .to_string();
    let r = app.get(&asset, None).await;
    assert_eq!(r.status(), 200);
    assert_common_headers(&r, "a hashed asset");
    for (path, token, status) in [
        ("/api/me", Some(alice.token.as_str()), 200),
        ("/api/threads", Some(&alice.token), 200),
        ("/api/me", None, 401),
        ("/api/nothing-here", Some(&alice.token), 404),
    ] {
        let r = app.get(path, token).await;
        assert_eq!(r.status(), status, "{path}");
        assert_common_headers(&r, path);
        assert_eq!(r.headers()["cache-control"], "no-store", "{path}");
        assert!(r.headers().get("strict-transport-security").is_none());
    }
    let r = app.get("/healthz", None).await;
    assert_common_headers(&r, "/healthz");
    assert!(
        html_hsts(&app, None).await.is_none(),
        "no HSTS over plain HTTP"
    );
    // A forged X-Forwarded-Proto from a client that is not a trusted proxy changes nothing.
    assert!(html_hsts(&app, Some("https")).await.is_none());
}

async fn html_hsts(app: &TestApp, proto: Option<&str>) -> Option<String> {
    let mut req = app.http.get(app.url("/"));
    if let Some(p) = proto {
        req = req.header("x-forwarded-proto", p);
    }
    let r = req.send().await.unwrap();
    r.headers()
        .get("strict-transport-security")
        .map(|v| v.to_str().unwrap().to_string())
}

#[tokio::test]
async fn hsts_is_sent_when_served_over_https_behind_a_trusted_proxy_or_with_secure_cookies() {
    let proxied = spawn_app_with(|s| s.limits.trusted_proxies = 1).await;
    let hsts = html_hsts(&proxied, Some("https"))
        .await
        .expect("HSTS over https");
    assert!(hsts.contains("max-age="), "{hsts}");
    assert!(html_hsts(&proxied, Some("http")).await.is_none());
    let r = proxied
        .http
        .get(proxied.url("/api/me"))
        .header("x-forwarded-proto", "https")
        .send()
        .await
        .unwrap();
    assert!(
        r.headers().contains_key("strict-transport-security"),
        "API answers too"
    );
    let secure = spawn_app_with(|s| s.auth.cookie_secure = true).await;
    assert!(html_hsts(&secure, None).await.is_some());
}

// ---------------------------------------------------------------------------------------------
// 7. Client addresses: IPv6 per /64, `ip:port` hops
// ---------------------------------------------------------------------------------------------

async fn login_via(app: &TestApp, forwarded_for: &str) -> u16 {
    app.http
        .post(app.url("/api/auth/login"))
        .header("x-forwarded-for", forwarded_for)
        .json(&json!({"username": "nobody", "password": "wrong password"}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn ipv6_clients_share_one_rate_limit_per_64_and_ip_port_hops_are_parsed() {
    let app = spawn_app_with(|s| {
        s.limits.trusted_proxies = 1;
        s.limits.failed_logins_per_user = 0;
        // A burst of 20 that refills one per minute: each argon2 check can take a second on a
        // loaded machine, and a faster refill would hand out new tokens while the burst is spent.
        s.limits.auth_burst = 20;
        s.limits.auth_rate_per_min = 1;
    })
    .await;
    // The burst (20) from one address of a /64...
    for i in 0..20 {
        assert_eq!(
            login_via(&app, &format!("2001:db8:1:2::{:x}", i + 1)).await,
            401
        );
    }
    // ...leaves nothing for another address of the same /64, but another /64 is untouched.
    assert_eq!(
        login_via(&app, "2001:db8:1:2:ffff:ffff:ffff:ffff").await,
        429
    );
    assert_eq!(login_via(&app, "2001:db8:1:3::1").await, 401);
    // `ip:port` hops (as some proxies write them) are the client's address, not skipped.
    for _ in 0..20 {
        assert_eq!(login_via(&app, "203.0.113.9:4711").await, 401);
    }
    assert_eq!(login_via(&app, "203.0.113.9:5000").await, 429);
    assert_eq!(login_via(&app, "[2001:db8:9::1]:443").await, 401);
    assert_eq!(login_via(&app, "203.0.113.10:4711").await, 401);
}
