//! Property-based fuzzing of everything that reads untrusted bytes: the WebSocket frame parser
//! (`realtime::protocol::parse`), the HTTP body parser (`http::json::parse_object`), and, end to
//! end, the WebSocket session and the HTTP routes of a real server.
//!
//! Each property states the contract's answer (a frame or one of the contract's error codes;
//! `Ok`, 400 `invalid_json` or 413 `too_large`), not just "no panic". Inputs that once broke a
//! property are kept beside it as plain regression tests.

mod end_to_end;
mod generators;
mod parsers;

use proptest::test_runner::{Config, TestError};

/// Error codes the contract lists for error frames.
pub(super) const FRAME_CODES: &[&str] = &[
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
pub(super) const CLIENT_TYPES: &[&str] = &[
    "subscribe",
    "unsubscribe",
    "send",
    "debate",
    "cancel",
    "ping",
    "regenerate",
];

/// `cases` per property; `FUZZ_CASES` overrides it for a longer hunt.
pub(super) fn config(cases: u32) -> Config {
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

/// Report a failed property with the reason on the last line (a CI log's tail shows it), after
/// the minimal input on one line.
pub(super) fn fail<T: std::fmt::Debug>(e: TestError<T>) -> ! {
    match e {
        TestError::Abort(why) => panic!("property aborted: {why}"),
        TestError::Fail(why, input) => {
            panic!("minimal failing input: {input:?}\nproperty failed: {why}")
        }
    }
}
