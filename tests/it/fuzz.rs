//! Property-based fuzzing of everything that reads untrusted bytes: the WebSocket frame parser
//! (`realtime::protocol::parse`), the HTTP body parser (`http::json::parse_object`), and, end to
//! end, the WebSocket session and the HTTP routes of a real server.
//!
//! Each property states the contract's answer (a frame or one of the contract's error codes;
//! `Ok`, 400 `invalid_json` or 413 `too_large`), not just "no panic". Inputs that once broke a
//! property are kept below as plain regression tests.

use std::{cell::RefCell, time::Duration};

use emergence::{
    error::ApiError,
    http::json::{MAX_BODY_BYTES, MAX_DEPTH, parse_object},
    realtime::protocol::{ClientFrame, parse},
};
use proptest::{
    collection::{btree_map, vec},
    prelude::*,
    test_runner::{Config, TestCaseError, TestError, TestRunner},
};
use serde_json::{Map, Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::support::{TestApp, TestUser, WsClient, spawn_app_with};

/// Error codes the contract lists for error frames.
const FRAME_CODES: &[&str] = &[
    "invalid_json",
    "unknown_type",
    "not_found",
    "validation",
    "conflict",
    "rate_limited",
    "too_large",
    "unavailable",
    "unauthorized",
    "forbidden",
    "internal",
];
/// Frame types a client may send.
const CLIENT_TYPES: &[&str] = &[
    "subscribe",
    "unsubscribe",
    "send",
    "debate",
    "cancel",
    "ping",
    "regenerate",
];

/// Report a failed property with the reason on the last line (a CI log's tail shows it), after
/// the minimal input on one line.
fn fail<T: std::fmt::Debug>(e: TestError<T>) -> ! {
    match e {
        TestError::Abort(why) => panic!("property aborted: {why}"),
        TestError::Fail(why, input) => {
            panic!("minimal failing input: {input:?}\nproperty failed: {why}")
        }
    }
}

/// `cases` per property; `FUZZ_CASES` overrides it for a longer hunt.
fn config(cases: u32) -> Config {
    let cases = std::env::var("FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(cases);
    Config {
        cases,
        failure_persistence: None,
        max_shrink_iters: 256,
        ..Config::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Generators
// ---------------------------------------------------------------------------------------------

/// Any JSON value, a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        "\\PC{0,16}".prop_map(Value::from),
        any::<String>().prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(Value::Array),
            btree_map("\\PC{0,8}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Values that sit near the edges of the frame rules.
fn edge_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!("")),
        Just(json!("   ")),
        Just(json!("\u{3000}\u{a0}\n")),
        Just(json!("a\u{0}b")),
        Just(json!("caf\u{e9}")),
        Just(json!("x".repeat(128))),
        Just(json!("x".repeat(129))),
        Just(json!("😀".repeat(16_384))),
        Just(json!(format!(" {} ", "😀".repeat(16_384)))),
        Just(json!("😀".repeat(16_385))),
        Just(json!("'; DROP TABLE messages; --")),
        Just(json!("<script>alert(1)</script>")),
        Just(json!(0)),
        Just(json!(-1)),
        Just(json!(1)),
        Just(json!(10)),
        Just(json!(11)),
        Just(json!(1.5)),
        Just(json!(i64::MAX)),
        Just(json!(u64::MAX)),
        Just(json!(1e20)),
        Just(json!(["anima", "neo"])),
        Just(json!(["anima"])),
        Just(json!(["a", "b", "c", "d", "e", "f", "g", "h", "i"])),
        Just(json!(["anima", 1])),
        Just(Value::Null),
        "[ -~]{0,40}".prop_map(Value::from),
        json_value(),
    ]
}

/// A frame object that is valid, or a small step away from valid.
fn near_valid_frame() -> impl Strategy<Value = Value> {
    let kind = prop_oneof![
        4 => proptest::sample::select(CLIENT_TYPES).prop_map(Value::from),
        1 => proptest::sample::select(vec!["SEND", "", " ping", "sned", "__proto__"]).prop_map(Value::from),
        1 => json_value(),
    ];
    let field = proptest::sample::select(vec![
        "thread",
        "after_seq",
        "client_id",
        "body",
        "agent",
        "topic",
        "agents",
        "rounds",
        "stream_id",
        "message_id",
        "nonce",
        "type",
    ]);
    (
        prop::option::weighted(0.95, kind),
        btree_map(field, edge_value(), 0..8),
    )
        .prop_map(|(kind, fields)| {
            let mut obj: Map<String, Value> = fields
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect();
            if let Some(k) = kind {
                obj.insert("type".into(), k);
            }
            Value::Object(obj)
        })
}

/// Text built from JSON-ish tokens, so brackets, quotes and escapes collide in odd ways.
fn jsonish_text() -> impl Strategy<Value = String> {
    let token = proptest::sample::select(vec![
        "{",
        "}",
        "[",
        "]",
        "\"",
        "\\",
        "\\\"",
        ":",
        ",",
        " ",
        "\"type\"",
        "\"send\"",
        "\"ping\"",
        "\"thread\"",
        "\"body\"",
        "\"client_id\"",
        "\"after_seq\"",
        "\"nonce\"",
        "1",
        "-1",
        "1e400",
        "99999999999999999999",
        "-0",
        "1.0",
        "null",
        "true",
        "\\u0000",
        "\\ud800",
        "\u{0}",
        "é",
        "😀",
        "\n",
    ]);
    vec(token, 0..80).prop_map(|t| t.concat())
}

/// Nesting of `depth` arrays/objects around a scalar.
fn nested(depth: usize, objects: bool) -> String {
    if objects {
        format!("{}1{}", r#"{"a":"#.repeat(depth), "}".repeat(depth))
    } else {
        format!("{}1{}", "[".repeat(depth), "]".repeat(depth))
    }
}

fn depth_of(v: &Value) -> usize {
    match v {
        Value::Array(a) => 1 + a.iter().map(depth_of).max().unwrap_or(0),
        Value::Object(o) => 1 + o.values().map(depth_of).max().unwrap_or(0),
        _ => 0,
    }
}

// ---------------------------------------------------------------------------------------------
// (a) The frame parser
// ---------------------------------------------------------------------------------------------

/// The contract's answer to one text frame, checked against what `parse` returned.
fn check_frame(text: &str) -> Result<(), TestCaseError> {
    let parsed: Option<Value> = serde_json::from_str(text).ok();
    match parse(text) {
        Ok(frame) => {
            let v =
                parsed.ok_or_else(|| TestCaseError::fail("accepted a frame that is not JSON"))?;
            prop_assert!(v.is_object(), "accepted a non-object");
            prop_assert!(
                depth_of(&v) <= MAX_DEPTH,
                "accepted nesting {}",
                depth_of(&v)
            );
            check_accepted(&v, &frame)?;
        }
        Err(e) => {
            prop_assert!(
                FRAME_CODES.contains(&e.code.as_str()),
                "code {} is not the contract's",
                e.code.as_str()
            );
            prop_assert!(!e.message.is_empty());
            prop_assert!(
                e.message.chars().count() <= 512,
                "error message of {} chars echoes the input",
                e.message.chars().count()
            );
            let expected = match &parsed {
                None => "invalid_json",
                Some(v) if !v.is_object() || depth_of(v) > MAX_DEPTH => "invalid_json",
                Some(v) => match v.get("type") {
                    Some(Value::String(t)) if CLIENT_TYPES.contains(&t.as_str()) => "validation",
                    _ => "unknown_type",
                },
            };
            prop_assert_eq!(e.code.as_str(), expected, "{}", e.message);
            if let Some(cid) = &e.client_id {
                let sent = parsed
                    .as_ref()
                    .and_then(|v| v.get("client_id")?.as_str().map(str::to_string));
                prop_assert_eq!(
                    Some(cid.clone()),
                    sent,
                    "echoed a client_id that was not sent"
                );
            }
        }
    }
    Ok(())
}

/// An accepted frame carries exactly what the client sent, within the rules.
fn check_accepted(v: &Value, frame: &ClientFrame) -> Result<(), TestCaseError> {
    let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    let trimmed = |k: &str| s(k).map(|t| t.trim_matches(char::is_whitespace).to_string());
    let body_ok = |b: &str| {
        let n = b.chars().count();
        (1..=16_384).contains(&n) && !b.contains('\0')
    };
    let cid_ok =
        |c: &str| (1..=128).contains(&c.len()) && c.bytes().all(|b| (0x20..=0x7e).contains(&b));
    match frame {
        ClientFrame::Subscribe { thread, after_seq } => {
            prop_assert_eq!(v["type"].as_str(), Some("subscribe"));
            prop_assert_eq!(Some(thread.clone()), s("thread"));
            prop_assert!(after_seq.is_none_or(|n| n >= 0));
            prop_assert_eq!(*after_seq, v.get("after_seq").and_then(Value::as_i64));
        }
        ClientFrame::Unsubscribe { thread } => {
            prop_assert_eq!(v["type"].as_str(), Some("unsubscribe"));
            prop_assert_eq!(Some(thread.clone()), s("thread"));
        }
        ClientFrame::Send {
            thread,
            client_id,
            body,
            agent,
            agents,
        } => {
            prop_assert_eq!(v["type"].as_str(), Some("send"));
            prop_assert_eq!(Some(thread.clone()), s("thread"));
            prop_assert!(cid_ok(client_id.as_str()));
            prop_assert_eq!(Some(client_id.as_str().to_string()), s("client_id"));
            prop_assert!(body_ok(body.as_str()));
            prop_assert_eq!(Some(body.as_str().to_string()), trimmed("body"));
            prop_assert_eq!(agent.clone(), s("agent"));
            if agents.is_empty() {
                prop_assert!(v.get("agents").is_none_or(Value::is_null));
            } else {
                prop_assert!(agent.is_none());
                prop_assert!((1..=4).contains(&agents.len()));
            }
        }
        ClientFrame::Debate {
            thread,
            client_id,
            topic,
            agents,
            rounds,
            mediator,
        } => {
            prop_assert_eq!(v["type"].as_str(), Some("debate"));
            prop_assert_eq!(mediator.clone(), s("mediator"));
            prop_assert_eq!(Some(thread.clone()), s("thread"));
            prop_assert!(cid_ok(client_id.as_str()));
            prop_assert!(body_ok(topic.as_str()));
            prop_assert_eq!(Some(topic.as_str().to_string()), trimmed("topic"));
            prop_assert!((2..=8).contains(&agents.len()));
            prop_assert!((1..=10).contains(rounds));
        }
        ClientFrame::Cancel { stream_id } => {
            prop_assert_eq!(v["type"].as_str(), Some("cancel"));
            prop_assert_eq!(Some(stream_id.clone()), s("stream_id"));
        }
        ClientFrame::CancelDebate { debate_id } => {
            prop_assert_eq!(v["type"].as_str(), Some("cancel"));
            prop_assert!(v.get("stream_id").is_none_or(Value::is_null));
            prop_assert_eq!(Some(debate_id.clone()), s("debate_id"));
        }
        ClientFrame::Ping { nonce } => {
            prop_assert_eq!(v["type"].as_str(), Some("ping"));
            prop_assert_eq!(nonce.clone(), v.get("nonce").cloned());
        }
        ClientFrame::Regenerate(r) => {
            prop_assert_eq!(v["type"].as_str(), Some("regenerate"));
            prop_assert_eq!(Some(r.thread.clone()), s("thread"));
            prop_assert!(cid_ok(r.client_id.as_str()));
            prop_assert_eq!(Some(r.client_id.as_str().to_string()), s("client_id"));
            prop_assert_eq!(Some(r.message_id.clone()), s("message_id"));
            prop_assert_eq!(r.agent.clone(), s("agent"));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(2_000))]

    #[test]
    fn the_frame_parser_answers_any_string_with_a_frame_or_a_contract_code(text in any::<String>()) {
        check_frame(&text)?;
    }

    #[test]
    fn the_frame_parser_answers_jsonish_token_soup_per_the_contract(text in jsonish_text()) {
        check_frame(&text)?;
    }

    #[test]
    fn the_frame_parser_answers_near_valid_frames_per_the_contract(frame in near_valid_frame()) {
        check_frame(&frame.to_string())?;
    }

    #[test]
    fn the_frame_parser_survives_cut_and_spliced_frames(
        frame in near_valid_frame(),
        cut in any::<prop::sample::Index>(),
        insert in prop::option::of("[\\[\\]{}\"\\\\:,]"),
    ) {
        let text = frame.to_string();
        let chars: Vec<char> = text.chars().collect();
        let at = cut.index(chars.len() + 1);
        let mut mutated: String = chars[..at].iter().collect();
        if let Some(extra) = insert {
            mutated.push_str(&extra);
            mutated.extend(&chars[at..]);
        }
        check_frame(&mutated)?;
    }
}

proptest! {
    #![proptest_config(config(300))]

    #[test]
    fn frames_nested_up_to_64_levels_parse_and_deeper_ones_are_invalid_json(
        depth in 0usize..300,
        objects in any::<bool>(),
    ) {
        // The frame object itself is one level.
        let text = format!(r#"{{"type":"ping","nonce":{}}}"#, nested(depth, objects));
        let result = parse(&text);
        if depth < MAX_DEPTH {
            prop_assert!(matches!(result, Ok(ClientFrame::Ping { .. })), "depth {}: {:?}", depth + 1, result.err());
        } else {
            prop_assert_eq!(result.err().map(|e| e.code.as_str()), Some("invalid_json"), "depth {}", depth + 1);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// (b) The HTTP body parser
// ---------------------------------------------------------------------------------------------

/// The contract's answer to one request body, checked against what `parse_object` returned.
fn check_body(bytes: &[u8]) -> Result<(), TestCaseError> {
    let reference: Option<Value> = serde_json::from_slice(bytes).ok();
    match parse_object(bytes) {
        Ok(map) => {
            prop_assert!(bytes.len() <= MAX_BODY_BYTES);
            let v =
                reference.ok_or_else(|| TestCaseError::fail("accepted a body that is not JSON"))?;
            prop_assert!(depth_of(&v) <= MAX_DEPTH);
            prop_assert_eq!(Value::Object(map), v);
        }
        Err(ApiError::TooLarge) => prop_assert!(bytes.len() > MAX_BODY_BYTES),
        Err(ApiError::InvalidJson(why)) => {
            prop_assert!(
                bytes.len() <= MAX_BODY_BYTES,
                "over 1 MiB must be too_large"
            );
            prop_assert!(why.chars().count() <= 512);
            if let Some(v) = reference {
                prop_assert!(
                    !v.is_object() || depth_of(&v) > MAX_DEPTH,
                    "refused a valid object"
                );
            }
        }
        Err(other) => prop_assert!(false, "unexpected error {other:?}"),
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(2_000))]

    #[test]
    fn the_body_parser_answers_any_bytes_with_ok_invalid_json_or_too_large(bytes in vec(any::<u8>(), 0..512)) {
        check_body(&bytes)?;
    }

    #[test]
    fn the_body_parser_answers_jsonish_token_soup_per_the_contract(text in jsonish_text()) {
        check_body(text.as_bytes())?;
    }

    #[test]
    fn the_body_parser_answers_any_json_value_per_the_contract(v in json_value()) {
        check_body(v.to_string().as_bytes())?;
    }
}

proptest! {
    #![proptest_config(config(48))]

    #[test]
    fn bodies_up_to_1_mib_are_parsed_and_larger_ones_are_too_large(extra in 0usize..64) {
        let size = MAX_BODY_BYTES - 32 + extra;
        let mut body = br#"{"title":"t""#.to_vec();
        body.resize(size - 1, b' ');
        body.push(b'}');
        let result = parse_object(&body);
        if size <= MAX_BODY_BYTES {
            prop_assert!(result.is_ok(), "{size} bytes");
        } else {
            prop_assert!(matches!(result, Err(ApiError::TooLarge)), "{size} bytes");
        }
    }

    #[test]
    fn bodies_nested_up_to_64_levels_parse_and_deeper_ones_are_invalid_json(depth in 0usize..300, objects in any::<bool>()) {
        let body = format!(r#"{{"title":"t","x":{}}}"#, nested(depth, objects));
        let result = parse_object(body.as_bytes());
        if depth < MAX_DEPTH {
            prop_assert!(result.is_ok(), "depth {}", depth + 1);
        } else {
            prop_assert!(matches!(result, Err(ApiError::InvalidJson(_))), "depth {}", depth + 1);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// (c) End to end: one real WebSocket, random frame sequences
// ---------------------------------------------------------------------------------------------

/// One client frame of a random sequence: valid and invalid mixed, never one that the contract
/// answers by closing (invalid UTF-8, over 256 KiB).
fn wire_frame(thread: String) -> impl Strategy<Value = Message> {
    let real = thread.clone();
    let threads = prop_oneof![
        3 => Just(real),
        1 => "[ -~]{0,40}",
        1 => Just(uuid::Uuid::nil().to_string()),
    ];
    let valid =
        (threads, "[ -~]{1,40}", "\\PC{1,60}", 0u8..8).prop_map(|(thread, cid, body, pick)| {
            let v = match pick {
                0 => json!({"type": "subscribe", "thread": thread, "after_seq": 0}),
                1 => json!({"type": "subscribe", "thread": thread}),
                2 => json!({"type": "unsubscribe", "thread": thread}),
                3 | 4 => json!({"type": "send", "thread": thread, "client_id": cid, "body": body}),
                5 => json!({"type": "cancel", "stream_id": cid}),
                6 => json!({"type": "debate", "thread": thread, "client_id": cid, "topic": body,
                        "agents": ["anima", "neo"], "rounds": 1, "note": "only rarely valid"}),
                _ => json!({"type": "ping", "nonce": body}),
            };
            Message::Text(v.to_string().into())
        });
    prop_oneof![
        4 => valid,
        4 => near_valid_frame().prop_map(|v| Message::Text(v.to_string().into())),
        2 => jsonish_text().prop_map(|t| Message::Text(t.into())),
        1 => any::<String>().prop_map(|t| Message::Text(t.into())),
        1 => vec(any::<u8>(), 0..64).prop_map(|b| Message::Binary(b.into())),
        1 => (60usize..200).prop_map(|d| Message::Text(format!(r#"{{"type":"ping","nonce":{}}}"#, nested(d, false)).into())),
        1 => Just(Message::Ping(b"app-level ping frame".to_vec().into())),
    ]
}

#[test]
fn random_frame_sequences_never_break_a_websocket_and_a_ping_still_gets_its_pong() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (app, user, thread) = rt.block_on(async {
        // The send limit is off so that a long run is not (rightly) closed as a flood.
        let app = spawn_app_with(|s| s.limits.send_rate_per_sec = 0).await;
        let user = app.register("fuzzer").await;
        let thread = app.create_thread(&user, "fuzz").await;
        (app, user, thread)
    });
    let ws: RefCell<Option<WsClient>> = RefCell::new(None);
    let case = RefCell::new(0u64);
    let mut runner = TestRunner::new(Config {
        max_shrink_iters: 32,
        ..config(64)
    });
    let result = runner.run(&vec(wire_frame(thread.clone()), 1..12), |frames| {
        let n = {
            let mut c = case.borrow_mut();
            *c += 1;
            *c
        };
        rt.block_on(async {
            let open = ws.borrow_mut().take();
            let mut client = match open {
                Some(c) => c,
                None => app.ws(&user).await,
            };
            let outcome = play(&mut client, frames, n).await;
            if outcome.is_ok() {
                // After a failure the next (shrunk) case starts on a fresh socket.
                *ws.borrow_mut() = Some(client);
            }
            outcome
        })
    });
    rt.block_on(async {
        drop(ws.take());
        let mut app = app;
        app.stop().await;
    });
    if let Err(e) = result {
        fail(e);
    }
}

/// Send the frames, then a ping; every answer must be a contract frame, and the pong must come.
async fn play(ws: &mut WsClient, frames: Vec<Message>, case: u64) -> Result<(), TestCaseError> {
    for f in frames {
        ws.send_raw(f)
            .await
            .map_err(|e| TestCaseError::fail(format!("send failed: {e}")))?;
    }
    let nonce = json!({"case": case});
    ws.send_raw(Message::Text(
        json!({"type": "ping", "nonce": nonce}).to_string().into(),
    ))
    .await
    .map_err(|e| TestCaseError::fail(format!("ping send failed: {e}")))?;
    loop {
        let Some(f) = ws.recv_within(Duration::from_secs(10)).await else {
            return Err(TestCaseError::fail(format!(
                "no pong for case {case}; close: {:?}",
                ws.closed
            )));
        };
        let kind = f["type"].as_str().unwrap_or_default().to_string();
        prop_assert!(!kind.is_empty(), "a server frame without a type: {}", f);
        if kind == "error" {
            let code = f["code"].as_str().unwrap_or_default();
            prop_assert!(
                FRAME_CODES.contains(&code),
                "error code {} is not the contract's",
                code
            );
            prop_assert!(code != "internal", "internal error: {}", f);
        }
        if kind == "pong" && f["nonce"] == nonce {
            return Ok(());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// (d) End to end: random request bodies on the HTTP routes
// ---------------------------------------------------------------------------------------------

#[test]
fn random_request_bodies_get_only_the_contract_s_statuses_and_error_bodies() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (app, user, thread) = rt.block_on(async {
        let app = spawn_app_with(|s| {
            s.limits.send_rate_per_sec = 0;
            s.limits.auth_rate_per_min = 0;
            s.limits.failed_logins_per_user = 0;
        })
        .await;
        let user = app.register("fuzzer").await;
        let thread = app.create_thread(&user, "fuzz").await;
        (app, user, thread)
    });
    let routes = vec![
        "/api/threads".to_string(),
        format!("/api/threads/{thread}/messages"),
        format!("/api/threads/{thread}/members"),
        format!("/api/threads/{thread}/debate"),
        "/api/auth/login".to_string(),
    ];
    let body = prop_oneof![
        3 => near_valid_frame().prop_map(|v| v.to_string().into_bytes()),
        1 => json_value().prop_map(|v| v.to_string().into_bytes()),
        1 => jsonish_text().prop_map(String::into_bytes),
        1 => vec(any::<u8>(), 0..128),
    ];
    let mut runner = TestRunner::new(Config {
        max_shrink_iters: 32,
        ..config(64)
    });
    let result = runner.run(
        &(proptest::sample::select(routes), body),
        |(route, body)| rt.block_on(post_and_check(&app, &user, &route, body)),
    );
    rt.block_on(async {
        let mut app = app;
        app.stop().await;
    });
    if let Err(e) = result {
        fail(e);
    }
}

async fn post_and_check(
    app: &TestApp,
    user: &TestUser,
    route: &str,
    body: Vec<u8>,
) -> Result<(), TestCaseError> {
    let r = app
        .http
        .post(app.url(route))
        .bearer_auth(&user.token)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .map_err(|e| TestCaseError::fail(format!("request failed: {e}")))?;
    let status = r.status().as_u16();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    let expected_code = match status {
        200..=299 => return Ok(()),
        400 => "invalid_json",
        401 => "unauthorized",
        404 => "not_found",
        409 => "conflict",
        413 => "too_large",
        422 => "validation",
        // Too many agent streams of this user at once (random debates start real ones).
        429 => "rate_limited",
        other => return Err(TestCaseError::fail(format!("{route}: status {other}: {v}"))),
    };
    prop_assert_eq!(
        v["error"]["code"].as_str(),
        Some(expected_code),
        "{}: {}",
        route,
        v
    );
    prop_assert!(v["error"]["message"].is_string());
    if status == 422 {
        let fields = v["error"]["fields"].as_object();
        prop_assert!(
            fields.is_some_and(|f| !f.is_empty()),
            "422 without fields: {}",
            v
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// (e) End to end on PostgreSQL: attacker-chosen IDs reach queries
// ---------------------------------------------------------------------------------------------

/// Percent-encode every byte outside the unreserved set, so any string fits in one path segment.
fn path_segment(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// This property shrinks to `"\0"`: PostgreSQL refuses NUL in a text parameter (SQLSTATE 22021),
/// and that code was read as an SQLite "busy" code, so one request marked the database down for
/// everybody. The plain regression test is
/// `hardening::ids_with_nul_and_other_odd_bytes_get_404_not_a_database_error_on_postgresql`.
#[test]
fn random_thread_ids_get_404_and_never_disturb_postgresql() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (app, user) = rt.block_on(async {
        let app = crate::support::spawn_pg_app_with(|s| s.limits.send_rate_per_sec = 0).await;
        let user = app.register("fuzzer").await;
        app.create_thread(&user, "mine").await;
        (app, user)
    });
    let mut runner = TestRunner::new(Config {
        max_shrink_iters: 64,
        ..config(256)
    });
    let ids = prop_oneof![
        1 => any::<String>(),
        2 => "[\\x00-\\x1f'\"%;\\\\]{1,4}",
    ];
    let result = runner.run(&ids, |id| {
        // "." and ".." cannot travel as a path segment: a WHATWG URL client (reqwest) removes
        // them, `%2E` included, so the request would be for another route altogether.
        if id == "." || id == ".." {
            return Ok(());
        }
        rt.block_on(async {
            // Each case starts from a healthy database, so a failure is this case's own.
            app.state.db.wait_up(Duration::from_secs(10)).await;
            let seg = path_segment(&id);
            for r in [
                app.get(&format!("/api/threads/{seg}"), Some(&user.token))
                    .await,
                app.post(
                    &format!("/api/threads/{seg}/messages"),
                    Some(&user.token),
                    json!({"client_id": "c", "body": "hi"}),
                )
                .await,
            ] {
                let status = r.status().as_u16();
                let v: Value = r.json().await.unwrap_or(Value::Null);
                prop_assert_eq!(status, 404, "{:?}: {}", id, v);
                prop_assert_eq!(v["error"]["code"].as_str(), Some("not_found"));
            }
            prop_assert!(app.state.db.is_up(), "{:?} took the database down", id);
            Ok(())
        })
    });
    rt.block_on(async {
        let mut app = app;
        app.stop().await;
    });
    if let Err(e) = result {
        fail(e);
    }
}
