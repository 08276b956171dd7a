//! The frame parser and the HTTP body parser, fuzzed in process: every input gets a frame or
//! one of the contract's codes; `Ok`, 400 `invalid_json` or 413 `too_large`.

use emergence::{
    error::ApiError,
    http::json::{MAX_BODY_BYTES, MAX_DEPTH, parse_object},
    realtime::protocol::{ClientFrame, parse},
};
use proptest::{collection::vec, prelude::*, test_runner::TestCaseError};
use serde_json::Value;

use super::{CLIENT_TYPES, FRAME_CODES, config, generators::*};

// ---------------------------------------------------------------------------------------------
// (a) The frame parser
// ---------------------------------------------------------------------------------------------

/// The contract's answer to one text frame, checked against what `parse` returned.
pub(super) fn check_frame(text: &str) -> Result<(), TestCaseError> {
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
pub(super) fn check_accepted(v: &Value, frame: &ClientFrame) -> Result<(), TestCaseError> {
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
pub(super) fn check_body(bytes: &[u8]) -> Result<(), TestCaseError> {
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
