//! End to end against a real server: random frame sequences on one WebSocket, random request
//! bodies on the HTTP routes, attacker-chosen IDs reaching PostgreSQL's queries.

use std::{cell::RefCell, time::Duration};

use proptest::{
    collection::vec,
    prelude::*,
    test_runner::{Config, TestCaseError, TestRunner},
};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::support::{TestApp, TestUser, WsClient, spawn_app_with};

use super::{FRAME_CODES, config, fail, generators::*};

// ---------------------------------------------------------------------------------------------
// (c) End to end: one real WebSocket, random frame sequences
// ---------------------------------------------------------------------------------------------

/// One client frame of a random sequence: valid and invalid mixed, never one that the contract
/// answers by closing (invalid UTF-8, over 256 KiB).
pub(super) fn wire_frame(thread: String) -> impl Strategy<Value = Message> {
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
        // Up to eight of its fields may be 64 KiB edge values: keep it under the frame limit.
        4 => near_valid_frame()
            .prop_map(|v| v.to_string())
            .prop_filter("over 256 KiB", |t| t.len() <= crate::hardening::MAX_FRAME)
            .prop_map(|t| Message::Text(t.into())),
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
pub(super) async fn play(
    ws: &mut WsClient,
    frames: Vec<Message>,
    case: u64,
) -> Result<(), TestCaseError> {
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

pub(super) async fn post_and_check(
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
pub(super) fn path_segment(s: &str) -> String {
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
/// `hardening::injection::ids_with_nul_and_other_odd_bytes_get_404_not_a_database_error_on_postgresql`.
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
