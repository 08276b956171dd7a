//! How each WebSocket connection attempt ended, counted exactly once by its final outcome.
//!
//! This is the one place that increments `ws_connections_total{outcome}`, and it writes one
//! `websocket outcome` log event each time, with the same outcome: the metric and the logs count
//! the same things, so `emergence guard` (which reads the logs) and Prometheus (which reads the
//! metric) agree on the WebSocket SLI. The event is written before the counter moves, so every
//! count a scrape shows already has its log line.
//!
//! Outcomes:
//! - `rejected`: refused before or at the upgrade: draining, rate limit, capacity, per-user or
//!   per-address cap, cross-origin cookie, not an upgrade request (HTTP status in `http_status`),
//!   or a missing / bad / expired / revoked token after the upgrade (close 4401, or 1013 while
//!   the signing key is not loaded yet).
//! - `error`: an authenticated connection ended by an error: a protocol violation by the client
//!   (1002, 1007 invalid UTF-8, 1008 flooding, 1009 frame too large), a peer that stopped
//!   answering pings (1001), a client too slow to take its frames, a reset without a closing
//!   handshake, an I/O error, or an upgrade that never completed.
//! - `closed`: an authenticated connection that ended normally: the client closed it, or the
//!   server did on purpose (1012 while draining, 4408 idle, 4401 when the session expired or was
//!   revoked).

use std::time::Duration;

use crate::metrics::Metrics;

/// The `outcome` label of `ws_connections_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Rejected,
    Error,
    Closed,
}

impl Outcome {
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Rejected => "rejected",
            Outcome::Error => "error",
            Outcome::Closed => "closed",
        }
    }
}

/// How one connection attempt ended: its outcome and why, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ending {
    pub outcome: Outcome,
    /// A short, fixed description ("rate limited", "invalid UTF-8", "client closed").
    pub reason: &'static str,
    /// The WebSocket close code sent or received, when there was one.
    pub close_code: Option<u16>,
    /// The HTTP status of a refusal before the upgrade.
    pub http_status: Option<u16>,
}

impl Ending {
    /// Refused before the upgrade with this HTTP status.
    pub fn refused(http_status: u16, reason: &'static str) -> Ending {
        Ending {
            outcome: Outcome::Rejected,
            reason,
            close_code: None,
            http_status: Some(http_status),
        }
    }

    /// Upgraded, then refused (authentication) with this close code.
    pub fn rejected(close_code: u16, reason: &'static str) -> Ending {
        Ending {
            outcome: Outcome::Rejected,
            reason,
            close_code: Some(close_code),
            http_status: None,
        }
    }

    /// An authenticated connection ended by an error.
    pub fn error(close_code: Option<u16>, reason: &'static str) -> Ending {
        Ending {
            outcome: Outcome::Error,
            reason,
            close_code,
            http_status: None,
        }
    }

    /// An authenticated connection that ended normally.
    pub fn closed(close_code: Option<u16>, reason: &'static str) -> Ending {
        Ending {
            outcome: Outcome::Closed,
            reason,
            close_code,
            http_status: None,
        }
    }

    /// The server closed an authenticated connection with `code`: the protocol-failure codes
    /// (1001 no answer to pings, 1002, 1007, 1008, 1009, 1011) are errors, the others (1012
    /// draining, 4401 session over, 4408 idle) end it normally.
    pub fn server_close(code: u16, reason: &'static str) -> Ending {
        match code {
            1001 | 1002 | 1007 | 1008 | 1009 | 1011 => Ending::error(Some(code), reason),
            _ => Ending::closed(Some(code), reason),
        }
    }
}

/// The connection an ending belongs to, once it was authenticated.
#[derive(Debug, Clone, Copy)]
pub struct Connection<'a> {
    pub id: u64,
    pub user_id: &'a str,
    pub lasted: Duration,
}

/// Log the ending, then count it: the only writer of `ws_connections_total`.
pub fn record(metrics: &Metrics, ending: Ending, connection: Option<Connection<'_>>) {
    let outcome = ending.outcome.label();
    let (connection_id, user_id, duration_ms) = match connection {
        Some(c) => (
            Some(c.id),
            Some(c.user_id),
            Some(c.lasted.as_millis() as u64),
        ),
        None => (None, None, None),
    };
    // Field names stay clear of `status` and `code`, which log readers take for an HTTP answer
    // or an error code of the API.
    match ending.outcome {
        Outcome::Error => tracing::warn!(
            outcome,
            reason = ending.reason,
            close_code = ending.close_code,
            http_status = ending.http_status,
            connection_id,
            user_id,
            duration_ms,
            "websocket outcome"
        ),
        Outcome::Rejected | Outcome::Closed => tracing::info!(
            outcome,
            reason = ending.reason,
            close_code = ending.close_code,
            http_status = ending.http_status,
            connection_id,
            user_id,
            duration_ms,
            "websocket outcome"
        ),
    }
    metrics.ws_connections.with(&[outcome]).inc();
}
