//! Why a provider call failed, classified once: the [`AgentErrorClass`] users see, the HTTP
//! status and the upstream detail operators see in the log, and when the provider says to try
//! again (`retry-after-ms`, `Retry-After` in seconds or as an HTTP date, `x-ratelimit-reset-*`).

use std::time::{Duration, SystemTime};

use reqwest::header::HeaderMap;
use serde_json::Value;

use crate::contract::AgentErrorClass;

/// Longest upstream detail kept for the log.
const DETAIL_CHARS: usize = 300;

/// A failed provider call.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{} (status {status:?}): {detail}", crate::agents::errors::class_str(*.class))]
pub struct ProviderError {
    pub class: AgentErrorClass,
    /// The HTTP status, when the provider answered one.
    pub status: Option<u16>,
    /// When the provider said to come back.
    pub retry_after: Option<Duration>,
    /// Upstream detail, for the log only (never shown to users).
    pub detail: String,
}

impl ProviderError {
    pub fn new(class: AgentErrorClass, detail: impl Into<String>) -> Self {
        let detail: String = detail.into();
        Self {
            class,
            status: None,
            retry_after: None,
            detail: detail.chars().take(DETAIL_CHARS).collect(),
        }
    }

    pub fn timeout() -> Self {
        Self::new(
            AgentErrorClass::TimedOut,
            "no answer within the time allowed",
        )
    }

    /// Worth trying again before the first token: 408, 409, 429, 5xx, and failures without a
    /// status that are not the request's fault (unreachable, overloaded, rate limited, a stream
    /// that broke before any text). Never
    /// any other 4xx.
    pub fn retryable(&self) -> bool {
        match self.status {
            Some(s) => matches!(s, 408 | 409 | 429) || s >= 500,
            None => matches!(
                self.class,
                AgentErrorClass::RateLimited
                    | AgentErrorClass::Unavailable
                    | AgentErrorClass::ConnectionLost
            ),
        }
    }

    /// A non-2xx answer: its status, the error object in its body (any of the three formats),
    /// and its retry headers.
    pub fn from_response(status: u16, headers: &HeaderMap, body: &str) -> Self {
        let parsed = serde_json::from_str::<Value>(body).ok();
        let mut e = match &parsed {
            Some(v) => from_error_value(v, Some(status)),
            None => classify(Some(status), &[], &body.to_lowercase(), body),
        };
        e.retry_after = retry_after(headers, SystemTime::now());
        e
    }
}

/// An error object (`{"error": {...}}` of OpenAI, Gemini and gateways, Anthropic's
/// `{"type":"error","error":{"type","message"}}`), met in a body or in a stream's event.
pub fn from_error_value(v: &Value, status: Option<u16>) -> ProviderError {
    let err = v.get("error").unwrap_or(v);
    let text = |k: &str| err.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let message = match err {
        Value::String(s) => s.clone(),
        _ => text("message"),
    };
    let status = status.or_else(|| {
        err.get("code")
            .and_then(Value::as_u64)
            .and_then(|c| u16::try_from(c).ok())
            .filter(|c| (400..600).contains(c))
    });
    let tokens: Vec<String> = ["type", "code", "status"]
        .iter()
        .map(|k| text(k).to_lowercase())
        .filter(|t| !t.is_empty())
        .collect();
    let detail = if message.is_empty() {
        v.to_string()
    } else {
        message.clone()
    };
    classify(status, &tokens, &message.to_lowercase(), &detail)
}

/// The class of a failure from its status, its error type/code tokens and its message.
fn classify(status: Option<u16>, tokens: &[String], message: &str, detail: &str) -> ProviderError {
    use AgentErrorClass::*;
    let has = |names: &[&str]| tokens.iter().any(|t| names.contains(&t.as_str()));
    let says = |phrases: &[&str]| phrases.iter().any(|p| message.contains(p));
    let server = status.is_some_and(|s| s >= 500);
    let class = if status == Some(429)
        || has(&[
            "rate_limit_exceeded",
            "rate_limit_error",
            "resource_exhausted",
            "too_many_requests",
            "insufficient_quota",
        ]) {
        RateLimited
    } else if !server
        && (has(&[
            "content_filter",
            "content_policy_violation",
            "safety",
            "prohibited_content",
            "refusal",
        ]) || says(&[
            "content filter",
            "content management policy",
            "safety system",
        ]))
    {
        ContentFilter
    } else if !server
        && (status == Some(413)
            || has(&["context_length_exceeded", "string_above_max_length"])
            || says(&[
                "context length",
                "context window",
                "maximum context",
                "prompt is too long",
                "too many tokens",
                "input is too long",
                "reduce the length",
            ]))
    {
        ContextTooLong
    } else if status == Some(404)
        || has(&["model_not_found", "not_found_error", "not_found"])
        || (says(&["model"]) && says(&["not found", "does not exist", "not a valid model"]))
    {
        ModelNotFound
    } else if matches!(status, Some(401 | 403))
        || has(&[
            "authentication_error",
            "permission_error",
            "invalid_api_key",
            "unauthenticated",
            "permission_denied",
        ])
    {
        Misconfigured
    } else if matches!(status, Some(408 | 504)) || has(&["timeout", "deadline_exceeded"]) {
        TimedOut
    } else if server
        || has(&[
            "overloaded_error",
            "server_error",
            "api_error",
            "internal",
            "unavailable",
            "internal_server_error",
            "service_unavailable",
        ])
    {
        Unavailable
    } else if status.is_some() {
        BadRequest
    } else {
        Unavailable
    };
    ProviderError {
        status,
        ..ProviderError::new(class, detail)
    }
}

/// When to try again, from the headers providers and gateways send: `retry-after-ms`
/// (OpenAI, Azure), `Retry-After` (seconds or an HTTP date), else the longest of the
/// `x-ratelimit-reset-*` headers (`1s`, `6m0s`, `20ms`, seconds, or a Unix time in s or ms).
pub fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let get = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    if let Some(ms) = get("retry-after-ms").and_then(|v| v.parse::<f64>().ok()) {
        return Some(Duration::from_secs_f64(ms.max(0.0) / 1000.0));
    }
    if let Some(v) = get("retry-after") {
        if let Ok(s) = v.parse::<f64>() {
            return Some(Duration::from_secs_f64(s.max(0.0)));
        }
        if let Ok(at) = httpdate::parse_http_date(v) {
            return Some(at.duration_since(now).unwrap_or_default());
        }
    }
    headers
        .iter()
        .filter(|(k, _)| k.as_str().starts_with("x-ratelimit-reset"))
        .filter_map(|(_, v)| v.to_str().ok())
        .filter_map(|v| reset_value(v.trim(), now))
        .max()
}

/// One `x-ratelimit-reset-*` value.
fn reset_value(v: &str, now: SystemTime) -> Option<Duration> {
    if let Ok(n) = v.parse::<f64>() {
        let since_epoch = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .ok()?
            .as_secs_f64();
        let secs = if n > 1e12 {
            n / 1000.0 - since_epoch // a Unix time in ms
        } else if n > 1e9 {
            n - since_epoch // a Unix time in s
        } else {
            n
        };
        return Some(Duration::from_secs_f64(secs.max(0.0)));
    }
    go_duration(v)
}

/// A Go-style duration such as `6m0s`, `1.5s`, `20ms` or `1h2m`.
fn go_duration(v: &str) -> Option<Duration> {
    let mut total = 0.0;
    let mut rest = v;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let n: f64 = rest[..num_end].parse().ok()?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_end] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 0.001,
            "us" | "µs" => 0.000_001,
            "ns" => 0.000_000_001,
            _ => return None,
        };
        total += n * scale;
        rest = &rest[unit_end..];
    }
    Some(Duration::from_secs_f64(total))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderName, HeaderValue};

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn retry_headers_in_every_form_are_understood() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let at = |p: &[(&str, &str)]| retry_after(&headers(p), now);
        assert_eq!(
            at(&[("retry-after-ms", "1500"), ("retry-after", "9")]),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(at(&[("retry-after", "2")]), Some(Duration::from_secs(2)));
        assert_eq!(
            at(&[("retry-after", "Tue, 14 Nov 2023 22:13:30 GMT")]),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            at(&[
                ("x-ratelimit-reset-requests", "1s"),
                ("x-ratelimit-reset-tokens", "6m0s")
            ]),
            Some(Duration::from_secs(360))
        );
        assert_eq!(
            at(&[("x-ratelimit-reset-tokens", "20ms")]),
            Some(Duration::from_millis(20))
        );
        assert_eq!(
            at(&[("x-ratelimit-reset", "1700000003000")]),
            Some(Duration::from_secs(3))
        );
        assert_eq!(at(&[]), None);
    }

    #[test]
    fn statuses_and_error_objects_get_their_class() {
        use AgentErrorClass::*;
        let h = HeaderMap::new();
        let class = |s: u16, body: &str| ProviderError::from_response(s, &h, body).class;
        assert_eq!(class(429, ""), RateLimited);
        assert_eq!(
            class(500, "<html>Internal Server Error</html>"),
            Unavailable
        );
        assert_eq!(
            class(
                529,
                r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#
            ),
            Unavailable
        );
        assert_eq!(
            class(
                404,
                r#"{"error":{"message":"The model `x` does not exist"}}"#
            ),
            ModelNotFound
        );
        assert_eq!(
            class(
                400,
                r#"{"error":{"message":"This model's maximum context length is 8192 tokens","code":"context_length_exceeded"}}"#
            ),
            ContextTooLong
        );
        assert_eq!(
            class(
                400,
                r#"{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 210000 tokens > 200000 maximum"}}"#
            ),
            ContextTooLong
        );
        assert_eq!(
            class(
                400,
                r#"{"error":{"code":"content_filter","message":"The response was filtered"}}"#
            ),
            ContentFilter
        );
        assert_eq!(
            class(401, r#"{"error":{"message":"Incorrect API key provided"}}"#),
            Misconfigured
        );
        assert_eq!(
            class(
                400,
                r#"{"error":{"message":"temperature must be at most 2"}}"#
            ),
            BadRequest
        );
        let gemini = serde_json::json!({"error":{"code":429,"message":"Quota","status":"RESOURCE_EXHAUSTED"}});
        assert_eq!(from_error_value(&gemini, None).class, RateLimited);
        let retry = |s: u16| ProviderError::from_response(s, &h, "").retryable();
        assert!(retry(408) && retry(409) && retry(429) && retry(500) && retry(503));
        assert!(!retry(400) && !retry(401) && !retry(404) && !retry(422));
    }
}
