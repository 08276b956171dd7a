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

use proptest::test_runner::Config;

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

pub(super) fn config(cases: u32) -> Config {
    Config {
        cases,
        failure_persistence: None,
        max_shrink_iters: 256,
        ..Config::default()
    }
}
