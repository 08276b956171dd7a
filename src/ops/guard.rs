//! `emergence guard`: read recorded logs and say whether production was healthy.
//!
//! Input is either Emergence's own JSON logs (one object per line: `severity`, `message`, `time`
//! and fields such as `status`, `cause`, `attempts`, `ms`, see [`crate::telemetry`]) or a Cloud
//! Logging export (a JSON array, or JSON lines, of LogEntry objects whose `jsonPayload` holds the
//! same fields, or whose `textPayload` holds a line). Lines that are not JSON are counted as
//! unparsed and only searched for panics ("panicked at": Rust prints panics as plain text).
//!
//! The log is replayed in time order (exports often come newest first), per instance, and turned
//! into per-minute rates and findings judged against the alert thresholds of
//! `deploy/prometheus/alerts.yml`: more than 10 database connection failures per minute, more
//! than 5 % WebSocket errors (with at least 20 connections), more than 50 rate-limited answers per
//! minute. A threshold is compared with the busiest one-minute window, the way an alert sees a
//! burst. Each finding carries a recommendation that names its runbook in docs/operations.md.
//!
//! Verdicts: any panic, or a database still down when the log ends, is CRITICAL, as is a
//! WebSocket error rate over the threshold; a burst of database failures that ended in a
//! reconnection, reconnection success under 99 %, or 429s over the threshold are DEGRADED.

use std::{
    collections::{BTreeMap, HashMap},
    fmt::Write as _,
};

use serde_json::{Map, Value, json};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

/// Database connection failures per minute above which the database alert fires.
pub const DB_FAILURES_PER_MIN: f64 = 10.0;
/// Share of failed WebSocket connections above which the WebSocket alert fires.
pub const WS_ERROR_RATIO: f64 = 0.05;
/// The WebSocket alert needs at least this many connections to judge.
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

    /// The most events in any 60-second window.
    pub fn peak_per_minute(&self) -> u64 {
        let mut times = self.times.clone();
        times.sort_by(f64::total_cmp);
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
            "per_min": round2(self.count as f64 / minutes),
            "peak_per_min": self.peak_per_minute(),
        })
    }
}

/// What the log says about the database.
#[derive(Debug, Clone, Default)]
pub struct DbSummary {
    /// "database connection lost".
    pub losses: Series,
    /// "database reconnected after N attempts in T ms".
    pub reconnects: Series,
    /// Failed operations and connection attempts, including attempts the server did not log
    /// (it logs attempts 1, 2, 4, 8...; the next success or the highest attempt tells how many).
    pub failures: Series,
    /// Still down at the end of the log: (instance, since, failed attempts, last cause).
    pub down_at_end: Vec<(String, Option<f64>, u64, String)>,
    /// Causes of losses and failed attempts, with counts.
    pub causes: BTreeMap<String, u64>,
}

impl DbSummary {
    /// Reconnections over losses (capped at 1); `None` without losses.
    pub fn reconnect_success(&self) -> Option<f64> {
        (self.losses.count > 0)
            .then(|| (self.reconnects.count as f64 / self.losses.count as f64).min(1.0))
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
    pub rate_limited: Series,
    pub http_5xx: Series,
    pub ws_connections: u64,
    pub ws_errors: Series,
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

/// One log entry, normalised from either format.
#[derive(Debug, Default)]
struct Entry {
    time: Option<f64>,
    instance: String,
    severity: String,
    message: String,
    payload: Map<String, Value>,
    status: Option<u16>,
    path: Option<String>,
    parsed: bool,
}

impl Entry {
    fn field_str(&self, key: &str) -> Option<&str> {
        self.payload.get(key).and_then(Value::as_str)
    }

    fn field_u64(&self, key: &str) -> Option<u64> {
        self.payload.get(key).and_then(as_u64)
    }
}

fn as_u64(v: &Value) -> Option<u64> {
    v.as_u64().or_else(|| v.as_str()?.trim().parse().ok())
}

fn parse_time(v: Option<&Value>) -> Option<f64> {
    let t = OffsetDateTime::parse(v?.as_str()?, &Rfc3339).ok()?;
    Some(t.unix_timestamp_nanos() as f64 / 1e9)
}

fn format_time(t: Option<f64>) -> String {
    // Milliseconds are all the precision an f64 of seconds keeps honestly.
    t.and_then(|t| {
        OffsetDateTime::from_unix_timestamp_nanos((t * 1e3).round() as i128 * 1_000_000).ok()
    })
    .and_then(|t| t.format(&Rfc3339).ok())
    .unwrap_or_else(|| "unknown time".into())
}

/// A LogEntry or an Emergence log line -> an entry.
fn normalise(v: &Value) -> Option<Entry> {
    let obj = v.as_object()?;
    let mut payload = match (obj.get("jsonPayload"), obj.get("textPayload")) {
        (Some(Value::Object(p)), _) => p.clone(),
        (_, Some(Value::String(text))) => match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(p)) => p,
            _ => {
                let mut p = Map::new();
                p.insert("message".into(), Value::String(text.clone()));
                p
            }
        },
        _ => obj.clone(),
    };
    let http = obj
        .get("httpRequest")
        .or_else(|| payload.get("httpRequest"));
    let status = payload
        .get("status")
        .and_then(as_u64)
        .or_else(|| http.and_then(|h| h.get("status")).and_then(as_u64))
        .or_else(|| classified_status(payload.get("classification")?.as_str()?))
        .and_then(|s| u16::try_from(s).ok());
    let path = payload
        .get("path")
        .or_else(|| payload.get("uri"))
        .or_else(|| http.and_then(|h| h.get("requestUrl")))
        .and_then(Value::as_str)
        .map(url_path);
    let time = parse_time(obj.get("timestamp"))
        .or_else(|| parse_time(payload.get("time")))
        .or_else(|| parse_time(payload.get("timestamp")))
        .or_else(|| parse_time(obj.get("receiveTimestamp")));
    let severity = obj
        .get("severity")
        .or_else(|| payload.get("severity"))
        .or_else(|| payload.get("level"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_ascii_uppercase();
    let message = payload
        .get("message")
        .or_else(|| payload.get("msg"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let instance = obj
        .get("labels")
        .and_then(|l| l.get("instanceId"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    payload.remove("message");
    Some(Entry {
        time,
        instance,
        severity,
        message,
        payload,
        status,
        path,
        parsed: true,
    })
}

/// tower-http's "response failed" lines: `classification: "Status code: 503 Service Unavailable"`.
fn classified_status(classification: &str) -> Option<u64> {
    let rest = classification.strip_prefix("Status code: ")?;
    rest.split_whitespace().next()?.parse().ok()
}

/// The path of a URL or of a path with a query.
fn url_path(s: &str) -> String {
    let without_scheme = match s.find("://") {
        Some(i) => {
            let rest = &s[i + 3..];
            rest.find('/').map_or("/", |p| &rest[p..])
        }
        None => s,
    };
    without_scheme
        .split(['?', '#'])
        .next()
        .unwrap_or("")
        .to_string()
}

/// Split the input into entries: a JSON array, or one JSON value per line.
fn entries(input: &str) -> (Vec<Entry>, u64) {
    let trimmed = input.trim_start();
    if trimmed.starts_with('[')
        && let Ok(Value::Array(items)) = serde_json::from_str::<Value>(trimmed)
    {
        let n = items.len() as u64;
        let list = items
            .iter()
            .map(|v| {
                normalise(v).unwrap_or_else(|| Entry {
                    message: v.to_string(),
                    ..Entry::default()
                })
            })
            .collect();
        return (list, n);
    }
    let mut list = Vec::new();
    let mut lines = 0;
    for line in input.lines() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        lines += 1;
        let parsed = serde_json::from_str::<Value>(line)
            .ok()
            .and_then(|v| normalise(&v));
        list.push(parsed.unwrap_or_else(|| Entry {
            message: line.to_string(),
            ..Entry::default()
        }));
    }
    (list, lines)
}

/// An outage in progress on one instance.
#[derive(Debug)]
struct Outage {
    since: Option<f64>,
    logged_failures: u64,
    max_attempt: u64,
    last_cause: String,
}

/// Read a log and judge it.
pub fn analyse(input: &str) -> Result<Analysis, Unreadable> {
    let (mut list, lines) = entries(input);
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
    let mut outages: HashMap<String, Outage> = HashMap::new();
    let mut ws_connection_ids = std::collections::HashSet::new();
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
        classify_db(&mut a, &mut outages, e);
        let message = e.message.to_ascii_lowercase();
        let code = e
            .field_str("code")
            .or_else(|| e.payload.get("error")?.get("code")?.as_str());
        if e.status == Some(429) || message.contains("rate limited") || code == Some("rate_limited")
        {
            a.rate_limited.add(e.time);
        }
        let internal = e.severity == "ERROR" && message == "internal error";
        if e.status.is_some_and(|s| s >= 500) || internal {
            a.http_5xx.add(e.time);
        }
        if e.path.as_deref() == Some("/ws") {
            a.ws_connections += 1;
            if e.status.is_some_and(|s| s >= 400) {
                a.ws_errors.add(e.time);
            }
        } else if [
            "slow consumer disconnected",
            "closing dead peer",
            "websocket protocol error",
            "websocket error",
        ]
        .iter()
        .any(|m| message.starts_with(m))
        {
            a.ws_errors.add(e.time);
        }
        if let Some(id) = e
            .payload
            .get("connection_id")
            .or_else(|| e.payload.get("conn"))
        {
            ws_connection_ids.insert(id.to_string());
        }
    }
    if a.parsed == 0 && a.panics.count == 0 {
        return Err(Unreadable { lines });
    }
    // Logs without request lines for /ws: connections are those that logged something.
    if a.ws_connections == 0 {
        a.ws_connections = ws_connection_ids.len() as u64;
    }
    let end = a.to;
    let mut down: Vec<_> = outages.into_iter().collect();
    down.sort_by(|x, y| x.0.cmp(&y.0));
    for (instance, o) in down {
        let unlogged = o.max_attempt.saturating_sub(o.logged_failures);
        spread(&mut a.db.failures, unlogged, o.since, end);
        let attempts = o.logged_failures.max(o.max_attempt);
        a.db.down_at_end
            .push((instance, o.since, attempts, o.last_cause));
    }
    a.findings = findings(&a);
    Ok(a)
}

/// Add `n` failures spread evenly over `(from, to)`: attempts the server did not log.
fn spread(series: &mut Series, n: u64, from: Option<f64>, to: Option<f64>) {
    for k in 1..=n {
        let t = match (from, to) {
            (Some(f), Some(t)) => Some(f + (t - f) * k as f64 / (n + 1) as f64),
            _ => to.or(from),
        };
        series.add(t);
    }
}

/// Follow the database's state on the entry's instance.
fn classify_db(a: &mut Analysis, outages: &mut HashMap<String, Outage>, e: &Entry) {
    let m = e.message.as_str();
    let cause = e
        .field_str("cause")
        .or_else(|| e.field_str("error"))
        .unwrap_or("")
        .to_string();
    let note_cause = |a: &mut Analysis| {
        if !cause.is_empty() {
            *a.db.causes.entry(cause.clone()).or_default() += 1;
        }
    };
    if m.starts_with("database connection lost") {
        a.db.losses.add(e.time);
        a.db.failures.add(e.time);
        note_cause(a);
        let o = outages.entry(e.instance.clone()).or_insert(Outage {
            since: e.time,
            logged_failures: 0,
            max_attempt: 0,
            last_cause: String::new(),
        });
        o.last_cause = cause;
    } else if m.starts_with("database connection attempt failed") {
        a.db.failures.add(e.time);
        note_cause(a);
        let o = outages.entry(e.instance.clone()).or_insert(Outage {
            since: e.time,
            logged_failures: 0,
            max_attempt: 0,
            last_cause: String::new(),
        });
        o.logged_failures += 1;
        o.max_attempt = o.max_attempt.max(e.field_u64("attempt").unwrap_or(0));
        o.last_cause = cause;
    } else if m.starts_with("database reconnected") || m.starts_with("database connected") {
        let attempts = e
            .field_u64("attempts")
            .or_else(|| number_after(m, "after "))
            .unwrap_or(1);
        if m.starts_with("database reconnected") {
            a.db.reconnects.add(e.time);
        }
        if let Some(o) = outages.remove(&e.instance) {
            let failed = attempts.saturating_sub(1).max(o.max_attempt);
            let unlogged = failed.saturating_sub(o.logged_failures);
            spread(&mut a.db.failures, unlogged, o.since, e.time);
        } else {
            spread(
                &mut a.db.failures,
                attempts.saturating_sub(1),
                e.time,
                e.time,
            );
        }
    }
}

/// The number right after `prefix` in `s` ("reconnected after 9 attempts" -> 9).
fn number_after(s: &str, prefix: &str) -> Option<u64> {
    let rest = &s[s.find(prefix)? + prefix.len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

fn minutes(a: &Analysis) -> f64 {
    match (a.from, a.to) {
        (Some(f), Some(t)) => ((t - f) / 60.0).max(1.0),
        _ => 1.0,
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn span_text(a: &Analysis) -> String {
    let m = match (a.from, a.to) {
        (Some(f), Some(t)) => (t - f) / 60.0,
        _ => 0.0,
    };
    if m < 1.0 {
        format!("{:.0} s", m * 60.0)
    } else {
        format!("{m:.0} min")
    }
}

fn top_causes(causes: &BTreeMap<String, u64>) -> String {
    let mut list: Vec<(&String, &u64)> = causes.iter().collect();
    list.sort_by(|x, y| y.1.cmp(x.1));
    list.iter()
        .take(3)
        .map(|(c, n)| format!("\"{c}\" x{n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Judge the numbers against the alert thresholds.
fn findings(a: &Analysis) -> Vec<Finding> {
    let mut out = Vec::new();
    let span = span_text(a);
    let db_runbook = format!("see {RUNBOOK}#emergencedbconnectionfailures");
    let causes = top_causes(&a.db.causes);
    let causes = if causes.is_empty() {
        String::new()
    } else {
        format!(" (causes: {causes})")
    };

    if a.panics.count > 0 {
        out.push(Finding {
            level: Status::Critical,
            what: format!(
                "{} panic(s); first: {}",
                a.panics.count,
                a.first_panic.as_deref().unwrap_or("?")
            ),
            recommendation: format!(
                "a bug crashed a task or the process: keep these logs, open an issue with the panic \
                 message, and roll back if it began with a deploy; see {RUNBOOK}#roll-back"
            ),
        });
    }
    for (instance, since, attempts, cause) in &a.db.down_at_end {
        let on = if instance.is_empty() {
            String::new()
        } else {
            format!(" on instance {instance}")
        };
        out.push(Finding {
            level: Status::Critical,
            what: format!(
                "database still down at the end of the log{on}: down since {}, {attempts} connection attempts failed{}",
                format_time(*since),
                if cause.is_empty() { String::new() } else { format!(", last cause \"{cause}\"") }
            ),
            recommendation: format!(
                "check the database now (Cloud SQL instance state, the DATABASE_URL secret, the Cloud SQL \
                 connector); messages are queued in memory meanwhile, so do not restart instances; {db_runbook}"
            ),
        });
    }
    let db_peak = a.db.failures.peak_per_minute();
    if db_peak as f64 > DB_FAILURES_PER_MIN {
        let level = if a.db.down_at_end.is_empty() {
            Status::Degraded
        } else {
            Status::Critical
        };
        let ended = if a.db.down_at_end.is_empty() {
            "; the database came back"
        } else {
            ""
        };
        out.push(Finding {
            level,
            what: format!(
                "database lost {} time(s) in {span}: {} connection failures, peaking at {db_peak}/min \
                 (threshold {DB_FAILURES_PER_MIN}/min){causes}{ended}",
                a.db.losses.count, a.db.failures.count
            ),
            recommendation: format!(
                "check Cloud SQL maintenance events and max_connections (instances x 8, x 2 during a \
                 deploy), and whether the DATABASE_URL secret changed; {db_runbook}"
            ),
        });
    } else if a.db.losses.count > 0 {
        out.push(Finding {
            level: Status::Ok,
            what: format!(
                "database lost {} time(s) in {span}: {} connection failures, peaking at {db_peak}/min{causes}",
                a.db.losses.count, a.db.failures.count
            ),
            recommendation: format!("check Cloud SQL maintenance / max_connections; {db_runbook}"),
        });
    }
    if let Some(ratio) = a.db.reconnect_success()
        && ratio < RECONNECT_SUCCESS
    {
        out.push(Finding {
            level: Status::Degraded,
            what: format!(
                "only {} of {} database losses ended in a reconnection ({:.0}%, target > 99%)",
                a.db.reconnects.count,
                a.db.losses.count,
                ratio * 100.0
            ),
            recommendation: format!(
                "an outage that never reconnected means an instance restarted or is still down: \
                 look for restarts around the losses and check the database; {db_runbook}"
            ),
        });
    }
    let ws_runbook = format!("see {RUNBOOK}#emergencewebsocketerrorrate");
    if a.ws_errors.count > 0 {
        let ratio = a.ws_errors.count as f64 / a.ws_connections.max(1) as f64;
        let judged = a.ws_connections >= WS_MIN_CONNECTIONS;
        let level = if judged && ratio > WS_ERROR_RATIO {
            Status::Critical
        } else {
            Status::Ok
        };
        let rate = if a.ws_connections > 0 {
            format!(
                " of {} connections ({:.1}%)",
                a.ws_connections,
                ratio * 100.0
            )
        } else {
            String::new()
        };
        out.push(Finding {
            level,
            what: format!(
                "{} WebSocket error(s){rate} (threshold 5% with at least {WS_MIN_CONNECTIONS} connections)",
                a.ws_errors.count
            ),
            recommendation: format!(
                "rejected connections point at rate limiting or expired tokens, errors at restarts, \
                 memory or Cloud Run request timeouts; {ws_runbook}"
            ),
        });
    }
    let rl_peak = a.rate_limited.peak_per_minute();
    if a.rate_limited.count > 0 {
        let level = if rl_peak as f64 > RATE_LIMITED_PER_MIN {
            Status::Degraded
        } else {
            Status::Ok
        };
        out.push(Finding {
            level,
            what: format!(
                "{} rate-limited answers (429 / rate_limited) in {span}, peak {rl_peak}/min \
                 (threshold {RATE_LIMITED_PER_MIN}/min, target 0)",
                a.rate_limited.count
            ),
            recommendation: format!(
                "see which scope (auth / send / ws_connect) in rate_limited_total; many users limited \
                 at once means a wrong client IP: EMERGENCE_TRUSTED_PROXIES must be 1 behind Cloud Run; \
                 see {RUNBOOK}#emergenceratelimited429"
            ),
        });
    }
    if a.http_5xx.count > 0 {
        let during = if a.db.losses.count > 0 || !a.db.down_at_end.is_empty() {
            format!("503s while the database is down are expected; {db_runbook}")
        } else {
            format!(
                "look at the ERROR \"internal error\" lines around them; see {RUNBOOK}#runbooks"
            )
        };
        out.push(Finding {
            level: Status::Ok,
            what: format!(
                "{} 5xx answers in {span}, peak {}/min",
                a.http_5xx.count,
                a.http_5xx.peak_per_minute()
            ),
            recommendation: during,
        });
    }
    if a.unparsed > 0 {
        out.push(Finding {
            level: Status::Ok,
            what: format!(
                "{} of {} lines were not JSON log entries",
                a.unparsed, a.lines
            ),
            recommendation: "they were only searched for panics; set EMERGENCE_LOG_FORMAT=json \
                             (or log.format) for complete logs"
                .into(),
        });
    }
    out
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
        (self.ws_connections > 0).then(|| self.ws_errors.count as f64 / self.ws_connections as f64)
    }

    /// The machine-readable form printed by `--json`.
    pub fn to_json(&self) -> Value {
        let minutes = minutes(self);
        let mut db_failures = self.db.failures.to_json(minutes);
        db_failures["threshold_per_min"] = DB_FAILURES_PER_MIN.into();
        let mut rate_limited = self.rate_limited.to_json(minutes);
        rate_limited["threshold_per_min"] = RATE_LIMITED_PER_MIN.into();
        let down: Vec<Value> = self
            .db
            .down_at_end
            .iter()
            .map(|(instance, since, attempts, cause)| {
                json!({"instance": instance, "since": format_time(*since), "failed_attempts": attempts, "cause": cause})
            })
            .collect();
        json!({
            "status": self.status().as_str(),
            "lines": {"total": self.lines, "parsed": self.parsed, "unparsed": self.unparsed},
            "span": {
                "from": self.from.map(|t| format_time(Some(t))),
                "to": self.to.map(|t| format_time(Some(t))),
                "minutes": round2(match (self.from, self.to) { (Some(f), Some(t)) => (t - f) / 60.0, _ => 0.0 }),
            },
            "db": {
                "losses": self.db.losses.to_json(minutes),
                "reconnects": self.db.reconnects.to_json(minutes),
                "reconnect_success": self.db.reconnect_success().map(round2_ratio),
                "connection_failures": db_failures,
                "down_at_end": !self.db.down_at_end.is_empty(),
                "still_down": down,
            },
            "rate_limited": rate_limited,
            "http_5xx": self.http_5xx.to_json(minutes),
            "websocket": {
                "connections": self.ws_connections,
                "errors": self.ws_errors.to_json(minutes),
                "error_rate": self.ws_error_rate().map(round2_ratio),
                "threshold": WS_ERROR_RATIO,
            },
            "panics": {
                "count": self.panics.count,
                "per_min": round2(self.panics.count as f64 / minutes),
                "first": self.first_panic,
            },
            "findings": self.findings.iter().map(|f| json!({
                "level": f.level.as_str(),
                "what": f.what,
                "recommendation": f.recommendation,
            })).collect::<Vec<_>>(),
        })
    }

    /// The human summary.
    pub fn render(&self) -> String {
        let minutes = minutes(self);
        let per_min = |s: &Series| {
            format!(
                "{:>6}  {:>7.2}/min  peak {}/min",
                s.count,
                s.count as f64 / minutes,
                s.peak_per_minute()
            )
        };
        let mut out = String::new();
        let _ = writeln!(out, "emergence guard: {}\n", self.status().as_str());
        let _ = writeln!(
            out,
            "{} lines ({} parsed, {} unparsed), {} to {} ({})\n",
            self.lines,
            self.parsed,
            self.unparsed,
            format_time(self.from),
            format_time(self.to),
            span_text(self)
        );
        let success = match self.db.reconnect_success() {
            Some(r) => format!("{:.0}%", r * 100.0),
            None => "n/a (no losses)".into(),
        };
        let ws_rate = match self.ws_error_rate() {
            Some(r) => format!("{:.1}% of {} connections", r * 100.0, self.ws_connections),
            None => "n/a (no connections in the log)".into(),
        };
        let rows = [
            ("DB connection losses", per_min(&self.db.losses)),
            (
                "DB reconnects",
                format!("{}  success {success}", per_min(&self.db.reconnects)),
            ),
            ("DB connection failures", per_min(&self.db.failures)),
            ("429 / rate limited", per_min(&self.rate_limited)),
            ("5xx", per_min(&self.http_5xx)),
            (
                "WebSocket errors",
                format!("{}  {ws_rate}", per_min(&self.ws_errors)),
            ),
            ("Panics", per_min(&self.panics)),
        ];
        for (name, value) in rows {
            let _ = writeln!(out, "  {name:<24}{value}");
        }
        if !self.db.down_at_end.is_empty() {
            let _ = writeln!(out, "  {:<24}DOWN at the end of the log", "Database");
        }
        out.push('\n');
        if self.findings.is_empty() {
            let _ = writeln!(out, "No findings: every rate is under its alert threshold.");
        }
        for f in &self.findings {
            let level = match f.level {
                Status::Ok => "note",
                other => other.as_str(),
            };
            let _ = writeln!(out, "[{level}] {}\n    -> {}", f.what, f.recommendation);
        }
        out
    }
}

fn round2_ratio(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unlogged_attempts_are_inferred_from_the_reconnection() {
        let log = r#"{"severity":"WARNING","time":"2024-05-01T10:00:00Z","message":"database connection lost","cause":"x"}
{"severity":"WARNING","time":"2024-05-01T10:00:01Z","message":"database connection attempt failed","attempt":1}
{"severity":"WARNING","time":"2024-05-01T10:00:02Z","message":"database connection attempt failed","attempt":2}
{"severity":"WARNING","time":"2024-05-01T10:00:05Z","message":"database connection attempt failed","attempt":4}
{"severity":"INFO","time":"2024-05-01T10:00:09Z","message":"database reconnected after 5 attempts in 9000 ms","attempts":5}"#;
        let a = analyse(log).unwrap();
        assert_eq!(a.db.losses.count, 1);
        assert_eq!(a.db.reconnects.count, 1);
        // The loss plus four failed attempts, one of which was not logged.
        assert_eq!(a.db.failures.count, 5);
        assert_eq!(a.status(), Status::Ok);
    }

    #[test]
    fn newest_first_exports_are_replayed_in_time_order() {
        let log = r#"[
 {"severity":"INFO","timestamp":"2024-05-01T10:00:09Z","jsonPayload":{"message":"database reconnected after 2 attempts in 9000 ms","attempts":2}},
 {"severity":"WARNING","timestamp":"2024-05-01T10:00:00Z","jsonPayload":{"message":"database connection lost"}}
]"#;
        let a = analyse(log).unwrap();
        assert!(a.db.down_at_end.is_empty());
        assert_eq!(a.db.reconnect_success(), Some(1.0));
    }

    #[test]
    fn failed_responses_logged_by_tower_http_count_as_5xx() {
        let log = r#"{"severity":"ERROR","time":"2024-05-01T10:00:00Z","message":"response failed","classification":"Status code: 503 Service Unavailable","path":"/api/auth/register"}"#;
        let a = analyse(log).unwrap();
        assert_eq!(a.http_5xx.count, 1);
    }

    #[test]
    fn paths_come_from_urls_and_paths() {
        assert_eq!(url_path("https://x.run.app/ws?token=a"), "/ws");
        assert_eq!(url_path("/ws?token=a"), "/ws");
        assert_eq!(url_path("https://x.run.app"), "/");
    }

    #[test]
    fn text_without_entries_is_unreadable() {
        assert!(analyse("hello\nworld\n").is_err());
    }
}
