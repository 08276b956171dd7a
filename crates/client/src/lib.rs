//! A typed client for Emergence's public interface (`docs/protocol.md`): the HTTP API
//! ([`Client`]: accounts, threads, messages, agents, health, the metrics text) and the WebSocket
//! ([`Socket`]: typed frames in and out), built on the wire types of `emergence-contract`.
//!
//! The operator tools (`emergence verify|load`, crate `emergence-ops`) and the integration tests
//! use this one client, so nobody hand-writes a second HTTP or WebSocket client for the same API.
//! It never panics on what a server answers: every refusal is an [`Error`] that carries the
//! status and the contract's error body.

mod http;
pub mod metrics;
pub mod ws;

pub use emergence_contract as contract;
pub use http::{Client, Posted};
pub use reqwest::{self, StatusCode, Url};
pub use ws::{Incoming, Socket};

use emergence_contract::ErrorBody;

/// Why a call did not give the answer the contract promises.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request could not be sent or its answer not read (connection refused, timeout, TLS).
    #[error("{}", error_chain(.0))]
    Transport(#[from] reqwest::Error),
    /// The server answered with another status than the call expects.
    #[error("HTTP {} {}", status.as_u16(), describe(body.as_ref(), raw))]
    Status {
        status: StatusCode,
        /// The contract's error body, when the answer had one.
        body: Option<ErrorBody>,
        /// The answer's text (for bodies that are not the contract's).
        raw: String,
    },
    /// A success whose body is not what the contract says.
    #[error("unexpected answer: {0}")]
    Decode(String),
    /// The WebSocket upgrade or connection failed.
    #[error("WebSocket: {0}")]
    WebSocket(String),
}

impl Error {
    /// The HTTP status of a refusal.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Error::Status { status, .. } => Some(*status),
            Error::Transport(e) => e.status(),
            _ => None,
        }
    }

    /// `code: message` of the contract's error body, or the raw answer.
    pub fn api_error(&self) -> String {
        match self {
            Error::Status { body, raw, .. } => describe(body.as_ref(), raw),
            other => other.to_string(),
        }
    }
}

fn describe(body: Option<&ErrorBody>, raw: &str) -> String {
    match body {
        Some(b) => format!("{}: {}", b.error.code.as_str(), b.error.message),
        None => raw.chars().take(200).collect(),
    }
}

/// An error with its causes ("error sending request: connection refused").
pub fn error_chain(e: &dyn std::error::Error) -> String {
    use std::fmt::Write as _;
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let _ = write!(s, ": {cause}");
        source = cause.source();
    }
    s
}
