//! JSON request bodies per the contract: declared `application/json` (else 415
//! `unsupported_type`), at most 1 MiB (413), valid JSON that is an object nested at most 64
//! levels deep (400 `invalid_json`), then typed fields (422 `validation`).

use axum::{
    body::Bytes,
    extract::{FromRequest, Request},
    http::StatusCode,
};
use serde_json::{Map, Value};

use crate::error::{ApiError, FieldErrors};

/// Largest accepted request body.
pub const MAX_BODY_BYTES: usize = 1 << 20;
/// A body must arrive within this time once its headers did.
pub const BODY_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// Deepest accepted JSON nesting.
pub const MAX_DEPTH: usize = 64;

/// A request body that is a JSON object.
pub struct JsonObject(pub Map<String, Value>);

impl<S: Send + Sync> FromRequest<S> for JsonObject {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        // Only JSON is JSON: a `text/plain` or form body is what a cross-site form can send
        // without a preflight, so it is refused before it is read.
        if !is_json(req.headers()) {
            return Err(ApiError::UnsupportedType(
                "the request body must be application/json".into(),
            ));
        }
        // Refuse an announced oversize body at once, without waiting for it.
        let announced = req
            .headers()
            .get(axum::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        if announced.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
            return Err(ApiError::TooLarge);
        }
        let read = tokio::time::timeout(BODY_READ_TIMEOUT, Bytes::from_request(req, state)).await;
        let bytes = match read {
            Err(_) => {
                return Err(ApiError::BadRequest(
                    "the request body did not arrive in time".into(),
                ));
            }
            Ok(r) => r.map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::TooLarge
                } else {
                    ApiError::BadRequest("could not read the request body".into())
                }
            })?,
        };
        parse_object(&bytes).map(JsonObject)
    }
}

/// Whether the request says its body is `application/json` (parameters such as `charset` allowed).
pub fn is_json(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"))
}

/// Parse bytes as a JSON object, enforcing the size and depth limits.
pub fn parse_object(bytes: &[u8]) -> Result<Map<String, Value>, ApiError> {
    if bytes.len() > MAX_BODY_BYTES {
        return Err(ApiError::TooLarge);
    }
    if nesting_depth(bytes) > MAX_DEPTH {
        return Err(ApiError::InvalidJson(format!(
            "JSON is nested deeper than {MAX_DEPTH} levels"
        )));
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::InvalidJson(
            "the body must be a JSON object".into(),
        )),
        Err(e) => Err(ApiError::InvalidJson(format!("invalid JSON: {e}"))),
    }
}

/// Maximum bracket depth outside strings; a cheap pre-check that keeps the parser's recursion bounded.
pub fn nesting_depth(bytes: &[u8]) -> usize {
    let (mut depth, mut max, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for &b in bytes {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                max = max.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

/// Typed access to an object's fields, collecting every problem into one 422.
pub struct Fields<'a> {
    map: &'a Map<String, Value>,
    errors: FieldErrors,
}

impl<'a> Fields<'a> {
    pub fn new(map: &'a Map<String, Value>) -> Self {
        Self {
            map,
            errors: FieldErrors::new(),
        }
    }

    /// A required string field.
    pub fn string(&mut self, name: &str) -> Option<&'a str> {
        match self.map.get(name) {
            Some(Value::String(s)) => Some(s),
            Some(Value::Null) | None => {
                self.errors.insert(name.into(), "is required".into());
                None
            }
            Some(_) => {
                self.errors.insert(name.into(), "must be a string".into());
                None
            }
        }
    }

    /// An optional string field (absent or null is `None`).
    pub fn opt_string(&mut self, name: &str) -> Option<&'a str> {
        match self.map.get(name) {
            Some(Value::String(s)) => Some(s),
            Some(Value::Null) | None => None,
            Some(_) => {
                self.errors.insert(name.into(), "must be a string".into());
                None
            }
        }
    }

    /// An optional array of strings.
    pub fn opt_strings(&mut self, name: &str) -> Option<Vec<&'a str>> {
        match self.map.get(name) {
            Some(Value::Null) | None => None,
            Some(Value::Array(items)) => {
                let strings: Option<Vec<&str>> = items.iter().map(Value::as_str).collect();
                if strings.is_none() {
                    self.errors
                        .insert(name.into(), "must be an array of strings".into());
                }
                strings
            }
            Some(_) => {
                self.errors
                    .insert(name.into(), "must be an array of strings".into());
                None
            }
        }
    }

    /// Parse a value with a newtype's parser, recording why it failed.
    pub fn parse<T>(
        &mut self,
        name: &str,
        value: Option<&str>,
        parser: fn(&str) -> Result<T, String>,
    ) -> Option<T> {
        let value = value?;
        match parser(value) {
            Ok(v) => Some(v),
            Err(why) => {
                self.errors.insert(name.into(), why);
                None
            }
        }
    }

    /// Record a problem found by the caller.
    pub fn reject(&mut self, name: &str, why: impl Into<String>) {
        self.errors.insert(name.into(), why.into());
    }

    /// `Ok` when no field had a problem.
    pub fn finish(self) -> Result<(), ApiError> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(ApiError::Validation(self.errors))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_ignores_brackets_in_strings() {
        assert_eq!(nesting_depth(br#"{"a":"[[[[{{{"}"#), 1);
        assert_eq!(nesting_depth(br#"{"a":"\"[["}"#), 1);
        assert_eq!(nesting_depth(b"[[[]]]"), 3);
    }

    #[test]
    fn deep_and_non_object_json_is_invalid() {
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert!(matches!(
            parse_object(deep.as_bytes()),
            Err(ApiError::InvalidJson(_))
        ));
        assert!(matches!(
            parse_object(b"[1]"),
            Err(ApiError::InvalidJson(_))
        ));
        assert!(matches!(parse_object(b"{"), Err(ApiError::InvalidJson(_))));
        let ok64 = format!(
            "{}{}",
            "{\"a\":".repeat(64),
            "1".to_string() + &"}".repeat(64)
        );
        assert!(parse_object(ok64.as_bytes()).is_ok());
        let bad65 = format!(
            "{}{}",
            "{\"a\":".repeat(65),
            "1".to_string() + &"}".repeat(65)
        );
        assert!(parse_object(bad65.as_bytes()).is_err());
    }
}
