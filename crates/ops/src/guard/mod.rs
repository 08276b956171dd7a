//! `emergence guard`: read recorded logs and say whether production was healthy.
//!
//! Input is either Emergence's own JSON logs (one object per line: `severity`, `message`, `time`
//! and fields such as `status`, `cause`, `attempts`, `ms`, see `emergence::telemetry`) or a Cloud
//! Logging export ([`input`]). Lines that are not JSON are counted as unparsed and only searched
//! for panics ("panicked at": Rust prints panics as plain text).
//!
//! The log is replayed in time order (exports often come newest first), per instance, and turned
//! into per-minute rates and findings judged against the alert thresholds of
//! `deploy/prometheus/alerts.yml`: more than 10 database connection failures per minute, more
//! than 5 % WebSocket errors (rejected or ended in error, with at least 20 connections in 5
//! minutes), more than 50 rate-limited answers per minute. A per-minute threshold is compared
//! with the busiest one-minute window, and the WebSocket ratio with the worst 5-minute window,
//! the way an alert sees a burst. Each finding carries a recommendation that names its runbook in
//! docs/operations.md. WebSocket outcomes, rate-limited answers and 5xx are counted from the
//! server's own events, which match `/metrics` one for one ([`traffic`]).
//!
//! Verdicts: any panic, or a database still down when the log ends, is CRITICAL, as is a
//! WebSocket error rate over the threshold; a burst of database failures that ended in a
//! reconnection, reconnection success under 99 %, or 429s over the threshold are DEGRADED.

mod db;
mod findings;
mod input;
mod report;
mod traffic;

use serde_json::{Value, json};

pub use db::DbSummary;
pub use traffic::{Source, Tally, WS_WINDOW_SECS, Window, WsSummary};

/// Database connection failures per minute above which the database alert fires.
pub const DB_FAILURES_PER_MIN: f64 = 10.0;
/// Share of failed WebSocket connections above which the WebSocket alert fires.
pub const WS_ERROR_RATIO: f64 = 0.05;
/// The WebSocket alert needs at least this many connections (in its 5-minute window) to judge.
pub const WS_MIN_CONNECTIONS: u64 = 20;
/// Rate-limited answers per minute above which the 429 alert fires.
pub const RATE_LIMITED_PER_MIN: f64 = 50.0;
/// Reconnection success under this share is DEGRADED (seed target: > 99 %).
pub const RECONNECT_SUCCESS: f64 = 0.99;

const RUNBOOK: &str = "docs/operations.md";

/// The overall verdict, ordered from best to worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    Ok,
    Degraded,
    Critical,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::Degraded => "DEGRADED",
            Status::Critical => "CRITICAL",
        }
    }

    /// 0 OK, 1 DEGRADED, 2 CRITICAL.
    pub fn exit_code(self) -> u8 {
        self as u8
    }
}

/// One thing worth telling the operator.
#[derive(Debug, Clone)]
pub struct Finding {
    /// `Ok` for a note that does not change the verdict.
    pub level: Status,
    pub what: String,
    pub recommendation: String,
}

/// A count of events, with the time of each one that had a time.
#[derive(Debug, Clone, Default)]
pub struct Series {
    pub count: u64,
    times: Vec<f64>,
}

impl Series {
    fn add(&mut self, t: Option<f64>) {
        self.count += 1;
        if let Some(t) = t {
            self.times.push(t);
        }
    }

    /// Add every event of `other`.
    fn merge(&mut self, other: Series) {
        self.count += other.count;
        self.times.extend(other.times);
    }

    fn sorted_times(&self) -> Vec<f64> {
        let mut times = self.times.clone();
        times.sort_by(f64::total_cmp);
        times
    }

    /// The most events in any 60-second window.
    pub fn peak_per_minute(&self) -> u64 {
        let times = self.sorted_times();
        let mut best = 0;
        let mut start = 0;
        for end in 0..times.len() {
            while times[end] - times[start] >= 60.0 {
                start += 1;
            }
            best = best.max(end - start + 1);
        }
        best as u64
    }

    fn to_json(&self, minutes: f64) -> Value {
        json!({
            "count": self.count,
            "per_min": report::round2(self.count as f64 / minutes),
            "peak_per_min": self.peak_per_minute(),
        })
    }
}

/// The analysis of one log.
#[derive(Debug, Clone, Default)]
pub struct Analysis {
    pub lines: u64,
    pub parsed: u64,
    pub unparsed: u64,
    pub from: Option<f64>,
    pub to: Option<f64>,
    pub db: DbSummary,
    /// Rate-limited answers (`rate_limited_total`), by scope.
    pub rate_limited: Tally,
    /// 5xx answers (`http_requests_total{status=~"5.."}`), by status.
    pub http_5xx: Tally,
    /// WebSocket outcomes (`ws_connections_total`).
    pub websocket: WsSummary,
    pub panics: Series,
    pub first_panic: Option<String>,
    pub findings: Vec<Finding>,
}

/// The input held no log entry at all.
#[derive(Debug, thiserror::Error)]
#[error("no log entries found: {lines} lines, none of them a JSON log entry")]
pub struct Unreadable {
    pub lines: u64,
}

/// Read a log and judge it.
pub fn analyse(text: &str) -> Result<Analysis, Unreadable> {
    let (mut list, lines) = input::entries(text);
    let mut a = Analysis {
        lines,
        ..Analysis::default()
    };
    // Lines without a time (plain-text panics) stay where they were: they take the time of
    // the entry before them.
    let mut last = None;
    for e in &mut list {
        match e.time {
            Some(t) => last = Some(t),
            None => e.time = last,
        }
    }
    list.sort_by(|x, y| {
        x.time
            .unwrap_or(f64::NEG_INFINITY)
            .total_cmp(&y.time.unwrap_or(f64::NEG_INFINITY))
    });
    let mut db = db::DbTracker::default();
    let mut traffic = traffic::TrafficTracker::default();
    let mut panic_detail_next = false;
    for e in &list {
        if e.parsed {
            a.parsed += 1;
        } else {
            a.unparsed += 1;
        }
        if let Some(t) = e.time.filter(|_| e.parsed) {
            a.from = Some(a.from.map_or(t, |f: f64| f.min(t)));
            a.to = Some(a.to.map_or(t, |f: f64| f.max(t)));
        }
        if e.message.contains("panicked at") {
            a.panics.add(e.time);
            if a.first_panic.is_none() {
                a.first_panic = Some(e.message.chars().take(200).collect());
                // Rust prints "panicked at FILE:LINE:COL:" and the message on the next line.
                panic_detail_next = !e.parsed && e.message.ends_with(':');
            }
        } else if std::mem::take(&mut panic_detail_next)
            && !e.parsed
            && let Some(first) = a.first_panic.as_mut()
        {
            first.push(' ');
            first.extend(e.message.chars().take(200));
        }
        if !e.parsed {
            continue;
        }
        db.observe(e);
        traffic.observe(e);
    }
    if a.parsed == 0 && a.panics.count == 0 {
        return Err(Unreadable { lines });
    }
    a.db = db.finish(a.to);
    (a.websocket, a.rate_limited, a.http_5xx) = traffic.finish();
    a.findings = findings::findings(&a);
    Ok(a)
}

impl Analysis {
    /// The worst finding's level.
    pub fn status(&self) -> Status {
        self.findings
            .iter()
            .map(|f| f.level)
            .max()
            .unwrap_or(Status::Ok)
    }

    /// WebSocket errors over connections, when connections were seen.
    pub fn ws_error_rate(&self) -> Option<f64> {
        self.websocket.error_rate()
    }
}

#[cfg(test)]
mod tests;
