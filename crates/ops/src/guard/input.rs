//! Reading logs: Emergence's own JSON lines, or a Cloud Logging export (a JSON array, or JSON
//! lines, of LogEntry objects whose `jsonPayload` holds the same fields, or whose `textPayload`
//! holds a line), normalised into one [`Entry`] shape. Lines that are not JSON are kept as
//! unparsed entries, only searched for panics.

use serde_json::{Map, Value};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

/// One log entry, normalised from either format.
#[derive(Debug, Default)]
pub(super) struct Entry {
    pub(super) time: Option<f64>,
    pub(super) instance: String,
    pub(super) severity: String,
    pub(super) message: String,
    pub(super) payload: Map<String, Value>,
    pub(super) status: Option<u16>,
    /// The status of a tower-http `response failed` line: the server's own record of a 5xx
    /// answer, one per `http_requests_total{status=~"5.."}` increment.
    pub(super) failed_status: Option<u16>,
    pub(super) path: Option<String>,
    pub(super) parsed: bool,
}

impl Entry {
    pub(super) fn field_str(&self, key: &str) -> Option<&str> {
        self.payload.get(key).and_then(Value::as_str)
    }

    pub(super) fn field_u64(&self, key: &str) -> Option<u64> {
        self.payload.get(key).and_then(as_u64)
    }
}

pub(super) fn as_u64(v: &Value) -> Option<u64> {
    v.as_u64().or_else(|| v.as_str()?.trim().parse().ok())
}

pub(super) fn parse_time(v: Option<&Value>) -> Option<f64> {
    let t = OffsetDateTime::parse(v?.as_str()?, &Rfc3339).ok()?;
    Some(t.unix_timestamp_nanos() as f64 / 1e9)
}

pub(super) fn format_time(t: Option<f64>) -> String {
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
    let failed_status = payload
        .get("classification")
        .and_then(Value::as_str)
        .and_then(classified_status)
        .and_then(|s| u16::try_from(s).ok());
    let status = payload
        .get("status")
        .and_then(as_u64)
        .or_else(|| http.and_then(|h| h.get("status")).and_then(as_u64))
        .and_then(|s| u16::try_from(s).ok())
        .or(failed_status);
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
        failed_status,
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
pub(super) fn url_path(s: &str) -> String {
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
pub(super) fn entries(input: &str) -> (Vec<Entry>, u64) {
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
