//! Hardening: hostile input and hostile clients get exactly the contract's answers, and the users
//! who are not attacking anything keep chatting while it happens.
//!
//! Each test names the attack it plays. Raw `TcpStream`s are used wherever an HTTP or WebSocket
//! client library would normalise the request (paths with `..`, dribbled headers, silent
//! sockets), so the server sees the bytes an attacker would send. `docs/security.md` maps every
//! threat to the test here that proves it is met.

mod assets;
mod bystanders;
mod csrf;
mod guessing;
mod injection;
mod raw;
mod secrets;
mod sizes;
mod slow_clients;
mod tokens;
mod validation;
mod ws_abuse;

/// The largest accepted HTTP request body (contract: over 1 MiB is 413).
pub(super) const MAX_BODY: usize = 1 << 20;
/// The largest accepted WebSocket text frame (contract: 256 KiB).
pub(super) const MAX_FRAME: usize = 256 * 1024;
