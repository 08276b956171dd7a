//! What the log says about the traffic: WebSocket outcomes, rate-limited answers and 5xx
//! answers.
//!
//! Each is counted from the server's own events when the log has any, because those are written
//! at exactly the places where the metrics are counted: one `websocket outcome` event per
//! `ws_connections_total{outcome}` increment, one `rate limited` event (with its `scope`) per
//! `rate_limited_total{scope}` increment, one tower-http `response failed` line per 5xx counted
//! in `http_requests_total`. Counted that way, `guard` and `/metrics` agree. Logs without those
//! events (older servers, a log level above `info`, a request-log-only export) fall back to what
//! they have: request logs (`httpRequest.status`, `/ws` requests), `status` fields, and the older
//! messages ("closing dead peer", "internal error"...). Never both, so nothing is counted twice
//! (a Cloud Run request log and the server's own line for the same answer).

use std::collections::{BTreeMap, HashSet};

use super::{Series, WS_MIN_CONNECTIONS, input::Entry};

/// The window of the WebSocket alert (`emergence:ws_error_ratio:rate5m`).
pub const WS_WINDOW_SECS: f64 = 300.0;

/// Where a count comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Source {
    /// Nothing in the log.
    #[default]
    None,
    /// The server's own events, one per metric increment: the count `/metrics` shows.
    Events,
    /// Request logs, `status` fields and older messages.
    Fallback,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::None => "none",
            Source::Events => "server events",
            Source::Fallback => "request logs and older messages",
        }
    }
}

/// A count with a breakdown (rate-limited answers by scope, 5xx by status).
#[derive(Debug, Clone, Default)]
pub struct Tally {
    pub source: Source,
    pub series: Series,
    pub by: BTreeMap<String, u64>,
}

impl Tally {
    fn add(&mut self, t: Option<f64>, key: Option<String>) {
        self.series.add(t);
        if let Some(k) = key {
            *self.by.entry(k).or_default() += 1;
        }
    }

    pub fn count(&self) -> u64 {
        self.series.count
    }
}

/// The WebSocket SLI as the log tells it.
#[derive(Debug, Clone, Default)]
pub struct WsSummary {
    pub source: Source,
    /// Connection attempts: with outcome events, every attempt whose outcome is known (as
    /// `sum(ws_connections_total)`); otherwise the `/ws` requests seen.
    pub connections: Series,
    /// Rejected or ended in error: the numerator of `emergence:ws_error_ratio:rate5m`.
    pub errors: Series,
    /// Per outcome (`rejected`, `error`, `closed`); outcome events only.
    pub outcomes: BTreeMap<String, u64>,
    /// Per "outcome: reason"; outcome events only.
    pub reasons: BTreeMap<String, u64>,
}

/// The worst stretch of the WebSocket SLI, as the alert would have seen it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Window {
    pub start: f64,
    pub connections: u64,
    pub errors: u64,
    pub ratio: f64,
}

impl WsSummary {
    /// Errors over connections, when connections were seen.
    pub fn error_rate(&self) -> Option<f64> {
        (self.connections.count > 0)
            .then(|| self.errors.count as f64 / self.connections.count as f64)
    }

    /// The 5-minute window (starting at a connection) with the highest error ratio among those
    /// with at least [`WS_MIN_CONNECTIONS`] connections; `None` when no window has that many,
    /// or when some events had no time.
    pub fn worst_window(&self) -> Option<Window> {
        let (conns, errs) = (self.connections.sorted_times(), self.errors.sorted_times());
        if conns.len() as u64 != self.connections.count || errs.len() as u64 != self.errors.count {
            return None;
        }
        // Events in [start, start + 5 min): connections and errors sharing a millisecond are
        // all in or all out.
        let within = |times: &[f64], start: f64| {
            let from = times.partition_point(|t| *t < start);
            let to = times.partition_point(|t| *t < start + WS_WINDOW_SECS);
            (to - from) as u64
        };
        let mut worst: Option<Window> = None;
        for &start in &conns {
            let connections = within(&conns, start);
            if connections < WS_MIN_CONNECTIONS {
                continue;
            }
            let errors = within(&errs, start);
            let ratio = errors as f64 / connections as f64;
            if worst.is_none_or(|w| ratio > w.ratio) {
                worst = Some(Window {
                    start,
                    connections,
                    errors,
                    ratio,
                });
            }
        }
        worst
    }
}

/// Counts both ways while the log is replayed; [`TrafficTracker::finish`] keeps one.
#[derive(Debug, Default)]
pub(super) struct TrafficTracker {
    ws_events: WsSummary,
    ws_fallback: WsSummary,
    /// Connections that logged something, for logs with neither outcome events nor requests.
    ws_connection_ids: HashSet<String>,
    rate_limited_events: Tally,
    rate_limited_fallback: Tally,
    http_5xx_events: Tally,
    http_5xx_fallback: Tally,
}

/// Older messages that meant a WebSocket failed, before outcome events existed.
const OLD_WS_ERRORS: [&str; 4] = [
    "slow consumer disconnected",
    "closing dead peer",
    "websocket protocol error",
    "websocket error",
];

impl TrafficTracker {
    pub(super) fn observe(&mut self, e: &Entry) {
        self.observe_websocket(e);
        self.observe_rate_limited(e);
        self.observe_5xx(e);
    }

    fn observe_websocket(&mut self, e: &Entry) {
        if e.message == "websocket outcome"
            && let Some(outcome) = e.field_str("outcome")
        {
            let ws = &mut self.ws_events;
            ws.connections.add(e.time);
            if outcome != "closed" {
                ws.errors.add(e.time);
            }
            *ws.outcomes.entry(outcome.to_string()).or_default() += 1;
            let reason = e.field_str("reason").unwrap_or("unknown");
            *ws.reasons
                .entry(format!("{outcome}: {reason}"))
                .or_default() += 1;
            return;
        }
        let message = e.message.to_ascii_lowercase();
        let ws = &mut self.ws_fallback;
        if e.path.as_deref() == Some("/ws") {
            ws.connections.add(e.time);
            if e.status.is_some_and(|s| s >= 400) {
                ws.errors.add(e.time);
            }
        } else if OLD_WS_ERRORS.iter().any(|m| message.starts_with(m)) {
            ws.errors.add(e.time);
        }
        if let Some(id) = e
            .payload
            .get("connection_id")
            .or_else(|| e.payload.get("conn"))
        {
            self.ws_connection_ids.insert(id.to_string());
        }
    }

    fn observe_rate_limited(&mut self, e: &Entry) {
        if e.message == "rate limited"
            && let Some(scope) = e.field_str("scope")
        {
            self.rate_limited_events
                .add(e.time, Some(scope.to_string()));
            return;
        }
        let message = e.message.to_ascii_lowercase();
        let code = e
            .field_str("code")
            .or_else(|| e.payload.get("error")?.get("code")?.as_str());
        if e.status == Some(429) || message.contains("rate limited") || code == Some("rate_limited")
        {
            self.rate_limited_fallback.add(e.time, None);
        }
    }

    fn observe_5xx(&mut self, e: &Entry) {
        if let Some(status) = e.failed_status.filter(|s| *s >= 500) {
            self.http_5xx_events.add(e.time, Some(status.to_string()));
        }
        let internal = e.severity == "ERROR" && e.message.eq_ignore_ascii_case("internal error");
        if e.status.is_some_and(|s| s >= 500) || internal {
            self.http_5xx_fallback
                .add(e.time, e.status.map(|s| s.to_string()));
        }
    }

    /// The WebSocket summary, rate-limited answers and 5xx answers, each from one source.
    pub(super) fn finish(self) -> (WsSummary, Tally, Tally) {
        let websocket = if self.ws_events.connections.count > 0 {
            WsSummary {
                source: Source::Events,
                ..self.ws_events
            }
        } else {
            let mut ws = self.ws_fallback;
            // Logs without request lines for /ws: connections are those that logged something.
            if ws.connections.count == 0 {
                ws.connections.count = self.ws_connection_ids.len() as u64;
            }
            ws.source = if ws.connections.count + ws.errors.count > 0 {
                Source::Fallback
            } else {
                Source::None
            };
            ws
        };
        (
            websocket,
            pick(self.rate_limited_events, self.rate_limited_fallback),
            pick(self.http_5xx_events, self.http_5xx_fallback),
        )
    }
}

/// The server's events when there are any, else the fallback.
fn pick(events: Tally, fallback: Tally) -> Tally {
    if events.count() > 0 {
        Tally {
            source: Source::Events,
            ..events
        }
    } else if fallback.count() > 0 {
        Tally {
            source: Source::Fallback,
            ..fallback
        }
    } else {
        Tally::default()
    }
}
