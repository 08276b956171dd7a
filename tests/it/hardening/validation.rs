//! Malformed input gets the contract's answers: invalid, deep and non-object JSON 400, wrong
//! types, missing fields, huge numbers, control characters and empty text 422 naming every bad field.

use serde_json::{Value, json};

use crate::support::spawn_app;

use super::raw::*;

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
