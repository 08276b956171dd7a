//! The public wire contract as types (`../shared/contract.md`, `docs/protocol.md`): every frame
//! the server sends is a [`ServerFrame`], every frame a client may send has its shape in
//! [`ClientFrameShape`], every error code is an [`ErrorCode`], and a message is serialised by
//! [`MessageView`] alone. The web client's TypeScript types (`web/src/contract.ts`) are generated
//! from these types by the unit test `contract_ts_is_current` (`UPDATE_CONTRACT=1 cargo test
//! --lib contract` rewrites the file), so the browser and the server cannot drift apart.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::db::{AuthorKind, Message, rfc3339};

/// Every error code of the contract, for HTTP bodies and WebSocket error frames alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    BadRequest,
    InvalidJson,
    Unauthorized,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    Conflict,
    TooLarge,
    UnsupportedType,
    Validation,
    RateLimited,
    Internal,
    Unavailable,
    UnknownType,
    // Stream ends (`stream_error`).
    Cancelled,
    ProviderError,
    Timeout,
    Interrupted,
}

impl ErrorCode {
    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::InvalidJson => "invalid_json",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::Conflict => "conflict",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::UnsupportedType => "unsupported_type",
            ErrorCode::Validation => "validation",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Internal => "internal",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::UnknownType => "unknown_type",
            ErrorCode::Cancelled => "cancelled",
            ErrorCode::ProviderError => "provider_error",
            ErrorCode::Timeout => "timeout",
            ErrorCode::Interrupted => "interrupted",
        }
    }
}

/// The body of every non-2xx HTTP answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// What went wrong: a stable code, human text, and for `validation` why each field failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct ErrorDetail {
    pub code: ErrorCode,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(test, ts(optional))]
    pub fields: Option<std::collections::BTreeMap<String, String>>,
}

/// Who wrote a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct AuthorView {
    pub kind: AuthorKind,
    pub id: String,
    pub name: String,
}

/// A message as the contract shows it, over HTTP and inside frames.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct MessageView {
    pub id: String,
    pub thread_id: String,
    pub seq: i64,
    pub client_id: String,
    pub author: AuthorView,
    pub body: String,
    /// RFC 3339, UTC.
    pub created_at: String,
    /// `"incomplete"` for an agent answer that was cut short.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(test, ts(optional))]
    pub status: Option<String>,
}

impl From<&Message> for MessageView {
    fn from(m: &Message) -> Self {
        MessageView {
            id: m.id.clone(),
            thread_id: m.thread_id.clone(),
            seq: m.seq,
            client_id: m.client_id.clone(),
            author: AuthorView {
                kind: m.author.kind,
                id: m.author.id.clone(),
                name: m.author.name.clone(),
            },
            body: m.body.clone(),
            created_at: rfc3339(m.created_at),
            status: m.status.clone(),
        }
    }
}

/// The user a connection is authenticated as.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct UserView {
    pub id: String,
    pub username: String,
}

/// An agent as stream frames name it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct AgentRef {
    pub id: String,
    pub name: String,
}

/// Whether a send is durable yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum AckStatus {
    Queued,
    Persisted,
}

/// Every frame the server sends (`docs/protocol.md` §7.4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    Welcome {
        connection_id: String,
        user: UserView,
        db: String,
    },
    Subscribed {
        thread: String,
        head_seq: i64,
    },
    Unsubscribed {
        thread: String,
    },
    Resync {
        thread: String,
    },
    Message {
        #[serde(flatten)]
        message: MessageView,
        thread: String,
    },
    Ack {
        client_id: String,
        status: AckStatus,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[cfg_attr(test, ts(optional))]
        seq: Option<i64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[cfg_attr(test, ts(optional))]
        message_id: Option<String>,
        thread: String,
    },
    Status {
        db: String,
        broker: String,
    },
    Pong {
        #[cfg_attr(test, ts(type = "unknown"))]
        nonce: Value,
    },
    Error {
        code: ErrorCode,
        message: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[cfg_attr(test, ts(optional))]
        client_id: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[cfg_attr(test, ts(optional))]
        retry_after_ms: Option<u64>,
    },
    StreamStart {
        thread: String,
        stream_id: String,
        agent: AgentRef,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[cfg_attr(test, ts(optional))]
        debate_id: Option<String>,
    },
    StreamSnapshot {
        thread: String,
        stream_id: String,
        text: String,
        offset: usize,
    },
    StreamChunk {
        thread: String,
        stream_id: String,
        offset: usize,
        delta: String,
    },
    StreamEnd {
        thread: String,
        stream_id: String,
        message: MessageView,
    },
    StreamError {
        thread: String,
        stream_id: String,
        code: ErrorCode,
        message: String,
    },
}

impl ServerFrame {
    /// The frame's JSON text.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("server frames always serialise")
    }
}

/// The shape of every frame a client may send (`docs/protocol.md` §7.5). The server parses
/// frames itself (`realtime::protocol::parse`), to answer each mistake with the contract's code;
/// this type gives clients the shapes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientFrameShape {
    Subscribe {
        thread: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[cfg_attr(test, ts(optional))]
        after_seq: Option<i64>,
    },
    Unsubscribe {
        thread: String,
    },
    Send {
        thread: String,
        client_id: String,
        body: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[cfg_attr(test, ts(optional))]
        agent: Option<String>,
    },
    Debate {
        thread: String,
        client_id: String,
        topic: String,
        agents: Vec<String>,
        rounds: u32,
    },
    Cancel {
        stream_id: String,
    },
    Ping {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[cfg_attr(test, ts(optional, type = "unknown"))]
        nonce: Option<Value>,
    },
}

#[cfg(test)]
mod tests {
    use ts_rs::{Config, TS};

    use super::*;

    const TS_FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/web/src/contract.ts");

    /// The TypeScript of every contract type, in one file.
    fn typescript() -> String {
        let cfg = Config::new().with_large_int("number");
        let decls = [
            ErrorCode::decl(&cfg),
            ErrorBody::decl(&cfg),
            ErrorDetail::decl(&cfg),
            AuthorKind::decl(&cfg),
            AuthorView::decl(&cfg),
            MessageView::decl(&cfg),
            UserView::decl(&cfg),
            AgentRef::decl(&cfg),
            AckStatus::decl(&cfg),
            ServerFrame::decl(&cfg),
            ClientFrameShape::decl(&cfg),
        ];
        let mut out = String::from(
            "// Generated from src/contract.rs by `UPDATE_CONTRACT=1 cargo test --lib contract`.\n\
             // Do not edit: CI fails when this file differs from what the Rust types generate.\n\n",
        );
        for d in decls {
            out.push_str("export ");
            out.push_str(&d);
            out.push_str("\n\n");
        }
        out.trim_end().to_string() + "\n"
    }

    #[test]
    fn contract_ts_is_current() {
        let generated = typescript();
        if std::env::var("UPDATE_CONTRACT").is_ok_and(|v| v == "1") {
            std::fs::write(TS_FILE, &generated).unwrap();
        }
        let checked_in = std::fs::read_to_string(TS_FILE).unwrap_or_default();
        assert!(
            checked_in == generated,
            "web/src/contract.ts differs from the Rust contract types: run \
             `UPDATE_CONTRACT=1 cargo test --lib contract` and commit the result"
        );
    }

    #[test]
    fn frames_serialise_as_the_contract_writes_them() {
        let f = ServerFrame::Ack {
            client_id: "c".into(),
            status: AckStatus::Queued,
            seq: None,
            message_id: None,
            thread: "t".into(),
        };
        assert_eq!(
            f.to_json(),
            r#"{"type":"ack","client_id":"c","status":"queued","thread":"t"}"#
        );
        let e = ServerFrame::Error {
            code: ErrorCode::RateLimited,
            message: "slow down".into(),
            client_id: None,
            retry_after_ms: Some(50),
        };
        assert_eq!(
            e.to_json(),
            r#"{"type":"error","code":"rate_limited","message":"slow down","retry_after_ms":50}"#
        );
        for code in [ErrorCode::UnsupportedType, ErrorCode::ProviderError] {
            assert_eq!(
                serde_json::to_value(code).unwrap(),
                serde_json::Value::String(code.as_str().into())
            );
        }
    }
}
