//! The WebSocket wire format: parsing client frames and building server frames. Server frames
//! are serialised once into [`Frame`]s (shared bytes) that every subscriber's writer reuses.

use axum::extract::ws::Utf8Bytes;
use serde_json::{Map, Value};

use crate::{
    contract::{AckStatus, ErrorCode, MessageView, ServerFrame, UserView},
    db::Message,
    domain::{ClientId, MessageBody},
    http::json::nesting_depth,
};

/// A serialised server frame, cheap to clone.
pub type Frame = Utf8Bytes;

/// Serialise a frame once; every subscriber's connection shares the bytes.
pub fn frame(f: &ServerFrame) -> Frame {
    Utf8Bytes::from(f.to_json())
}

/// `{"type":"message", ...message fields..., "thread"}`.
pub fn message_frame(m: &Message) -> Frame {
    frame(&ServerFrame::Message {
        message: MessageView::from(m),
        thread: m.thread_id.clone(),
    })
}

pub fn welcome(connection_id: &str, user_id: &str, username: &str, db: &str) -> Frame {
    frame(&ServerFrame::Welcome {
        connection_id: connection_id.to_string(),
        user: UserView {
            id: user_id.to_string(),
            username: username.to_string(),
        },
        db: db.to_string(),
    })
}

pub fn subscribed(thread: &str, head_seq: i64) -> Frame {
    frame(&ServerFrame::Subscribed {
        thread: thread.to_string(),
        head_seq,
    })
}

pub fn unsubscribed(thread: &str) -> Frame {
    frame(&ServerFrame::Unsubscribed {
        thread: thread.to_string(),
    })
}

pub fn resync(thread: &str) -> Frame {
    frame(&ServerFrame::Resync {
        thread: thread.to_string(),
    })
}

pub fn ack_persisted(client_id: &str, m: &Message) -> Frame {
    frame(&ServerFrame::Ack {
        client_id: client_id.to_string(),
        status: AckStatus::Persisted,
        seq: Some(m.seq),
        message_id: Some(m.id.clone()),
        thread: m.thread_id.clone(),
    })
}

/// A regenerate request is recorded (first time or repeat): `message_id` is the answer's first
/// version, the group its new version joins.
pub fn ack_regenerate(client_id: &str, thread: &str, version_of: &str) -> Frame {
    frame(&ServerFrame::Ack {
        client_id: client_id.to_string(),
        status: AckStatus::Persisted,
        seq: None,
        message_id: Some(version_of.to_string()),
        thread: thread.to_string(),
    })
}

pub fn ack_queued(client_id: &str, thread: &str) -> Frame {
    frame(&ServerFrame::Ack {
        client_id: client_id.to_string(),
        status: AckStatus::Queued,
        seq: None,
        message_id: None,
        thread: thread.to_string(),
    })
}

pub fn status(db: &str, broker: &str) -> Frame {
    frame(&ServerFrame::Status {
        db: db.to_string(),
        broker: broker.to_string(),
    })
}

pub fn pong(nonce: Option<&Value>) -> Frame {
    frame(&ServerFrame::Pong {
        nonce: nonce.cloned().unwrap_or(Value::Null),
    })
}

/// An error frame; the connection stays open.
#[derive(Debug, Clone, PartialEq)]
pub struct ErrorFrame {
    pub code: ErrorCode,
    pub message: String,
    pub client_id: Option<String>,
    pub retry_after_ms: Option<u64>,
    /// `budget_exceeded`: when the budget starts again (RFC 3339).
    pub resets_at: Option<String>,
}

impl ErrorFrame {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            client_id: None,
            retry_after_ms: None,
            resets_at: None,
        }
    }
    pub fn client(mut self, client_id: Option<&str>) -> Self {
        self.client_id = client_id.map(str::to_string);
        self
    }
    pub fn retry_after(mut self, ms: u64) -> Self {
        self.retry_after_ms = Some(ms);
        self
    }
    pub fn resets_at(mut self, at: Option<String>) -> Self {
        self.resets_at = at;
        self
    }
    pub fn to_frame(&self) -> Frame {
        frame(&ServerFrame::Error {
            code: self.code,
            message: self.message.clone(),
            client_id: self.client_id.clone(),
            retry_after_ms: self.retry_after_ms,
            resets_at: self.resets_at.clone(),
        })
    }
}

/// A parsed client frame.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientFrame {
    Subscribe {
        thread: String,
        after_seq: Option<i64>,
    },
    Unsubscribe {
        thread: String,
    },
    Send {
        thread: String,
        client_id: ClientId,
        body: MessageBody,
        agent: Option<String>,
        /// Several agents answering at once (empty: none).
        agents: Vec<String>,
    },
    Debate {
        thread: String,
        client_id: ClientId,
        topic: MessageBody,
        agents: Vec<String>,
        rounds: u32,
        mediator: Option<String>,
    },
    Cancel {
        stream_id: String,
    },
    /// Stop a whole debate.
    CancelDebate {
        debate_id: String,
    },
    Ping {
        nonce: Option<Value>,
    },
    /// Write a new version of an agent answer.
    Regenerate(crate::regenerate::RegenerateRequest),
}

/// Largest JSON nesting accepted in a frame (as for HTTP bodies).
const MAX_DEPTH: usize = 64;

/// Parse one text frame. Errors carry the contract's code and, when it could be read, the
/// frame's `client_id` so the client can match the error to its send.
pub fn parse(text: &str) -> Result<ClientFrame, ErrorFrame> {
    if nesting_depth(text.as_bytes()) > MAX_DEPTH {
        return Err(ErrorFrame::new(
            ErrorCode::InvalidJson,
            "JSON is nested too deeply",
        ));
    }
    let value: Value = serde_json::from_str(text)
        .map_err(|e| ErrorFrame::new(ErrorCode::InvalidJson, format!("invalid JSON: {e}")))?;
    let Value::Object(obj) = value else {
        return Err(ErrorFrame::new(
            ErrorCode::InvalidJson,
            "a frame must be a JSON object",
        ));
    };
    let client_id_raw = obj.get("client_id").and_then(Value::as_str);
    let kind = match obj.get("type") {
        Some(Value::String(t)) => t.as_str(),
        _ => {
            return Err(
                ErrorFrame::new(ErrorCode::UnknownType, "a frame needs a string \"type\"")
                    .client(client_id_raw),
            );
        }
    };
    let f = Fields {
        obj: &obj,
        client_id: client_id_raw,
    };
    match kind {
        "subscribe" => Ok(ClientFrame::Subscribe {
            thread: f.string("thread")?,
            after_seq: f.opt_seq("after_seq")?,
        }),
        "unsubscribe" => Ok(ClientFrame::Unsubscribe {
            thread: f.string("thread")?,
        }),
        "send" => {
            let thread = f.string("thread")?;
            let client_id = f.client_id()?;
            let body =
                MessageBody::parse(&f.string("body")?).map_err(|why| f.invalid("body", &why))?;
            let agent = f.opt_string("agent")?;
            let agents = match obj.get("agents") {
                None | Some(Value::Null) => Vec::new(),
                Some(Value::Array(a)) => {
                    let ids = a
                        .iter()
                        .map(|v| v.as_str().map(str::to_string))
                        .collect::<Option<Vec<_>>>()
                        .ok_or_else(|| f.invalid("agents", "must be an array of agent ids"))?;
                    let mut unique: Vec<String> = Vec::with_capacity(ids.len());
                    for id in ids {
                        if !unique.contains(&id) {
                            unique.push(id);
                        }
                    }
                    if !(1..=crate::send::MAX_PARALLEL_AGENTS).contains(&unique.len()) {
                        return Err(f.invalid("agents", "must name 1 to 4 agents"));
                    }
                    unique
                }
                Some(_) => return Err(f.invalid("agents", "must be an array of agent ids")),
            };
            if agent.is_some() && !agents.is_empty() {
                return Err(f.invalid("agents", "give agent or agents, not both"));
            }
            Ok(ClientFrame::Send {
                thread,
                client_id,
                body,
                agent,
                agents,
            })
        }
        "debate" => {
            let thread = f.string("thread")?;
            let client_id = f.client_id()?;
            let topic =
                MessageBody::parse(&f.string("topic")?).map_err(|why| f.invalid("topic", &why))?;
            let agents = match obj.get("agents") {
                Some(Value::Array(a)) => a
                    .iter()
                    .map(|v| v.as_str().map(str::to_string))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| f.invalid("agents", "must be an array of agent ids"))?,
                _ => return Err(f.invalid("agents", "must be an array of agent ids")),
            };
            if !(2..=8).contains(&agents.len()) {
                return Err(f.invalid("agents", "a debate needs 2 to 8 agents"));
            }
            let rounds = match obj.get("rounds").and_then(Value::as_u64) {
                Some(n @ 1..=10) => n as u32,
                _ => return Err(f.invalid("rounds", "must be an integer from 1 to 10")),
            };
            let mediator = f.opt_string("mediator")?;
            Ok(ClientFrame::Debate {
                thread,
                client_id,
                topic,
                agents,
                rounds,
                mediator,
            })
        }
        "cancel" => match (f.opt_string("stream_id")?, f.opt_string("debate_id")?) {
            (Some(stream_id), _) => Ok(ClientFrame::Cancel { stream_id }),
            (None, Some(debate_id)) => Ok(ClientFrame::CancelDebate { debate_id }),
            (None, None) => Err(f.invalid("stream_id", "is required (or debate_id)")),
        },
        "ping" => Ok(ClientFrame::Ping {
            nonce: obj.get("nonce").cloned(),
        }),
        "regenerate" => Ok(ClientFrame::Regenerate(
            crate::regenerate::RegenerateRequest {
                thread: f.string("thread")?,
                client_id: f.client_id()?,
                message_id: f.string("message_id")?,
                agent: f.opt_string("agent")?,
            },
        )),
        other => Err(ErrorFrame::new(
            ErrorCode::UnknownType,
            format!("unknown frame type {:?}", truncate(other, 64)),
        )
        .client(client_id_raw)),
    }
}

fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

struct Fields<'a> {
    obj: &'a Map<String, Value>,
    client_id: Option<&'a str>,
}

impl Fields<'_> {
    fn invalid(&self, field: &str, why: &str) -> ErrorFrame {
        ErrorFrame::new(ErrorCode::Validation, format!("{field}: {why}")).client(self.client_id)
    }
    fn string(&self, name: &str) -> Result<String, ErrorFrame> {
        match self.obj.get(name) {
            Some(Value::String(s)) => Ok(s.clone()),
            None | Some(Value::Null) => Err(self.invalid(name, "is required")),
            Some(_) => Err(self.invalid(name, "must be a string")),
        }
    }
    fn opt_string(&self, name: &str) -> Result<Option<String>, ErrorFrame> {
        match self.obj.get(name) {
            Some(Value::String(s)) => Ok(Some(s.clone())),
            None | Some(Value::Null) => Ok(None),
            Some(_) => Err(self.invalid(name, "must be a string")),
        }
    }
    fn opt_seq(&self, name: &str) -> Result<Option<i64>, ErrorFrame> {
        match self.obj.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => match v.as_i64() {
                Some(n) if n >= 0 => Ok(Some(n)),
                _ => Err(self.invalid(name, "must be a non-negative integer")),
            },
        }
    }
    fn client_id(&self) -> Result<ClientId, ErrorFrame> {
        let raw = self.string("client_id")?;
        ClientId::parse(&raw).map_err(|why| self.invalid("client_id", &why))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_client_frame() {
        assert_eq!(
            parse(r#"{"type":"subscribe","thread":"t","after_seq":3}"#).unwrap(),
            ClientFrame::Subscribe {
                thread: "t".into(),
                after_seq: Some(3)
            }
        );
        assert!(
            matches!(parse(r#"{"type":"send","thread":"t","client_id":"c","body":" hi "}"#),
            Ok(ClientFrame::Send { body, .. }) if body.as_str() == "hi")
        );
        assert!(matches!(
            parse(r#"{"type":"ping"}"#),
            Ok(ClientFrame::Ping { nonce: None })
        ));
        assert!(matches!(
            parse(r#"{"type":"regenerate","thread":"t","client_id":"c","message_id":"m"}"#),
            Ok(ClientFrame::Regenerate(r)) if r.message_id == "m" && r.agent.is_none()
        ));
        let e = parse(r#"{"type":"regenerate","thread":"t","client_id":"c"}"#).unwrap_err();
        assert_eq!(
            (e.code.as_str(), e.client_id.as_deref()),
            ("validation", Some("c"))
        );
    }

    #[test]
    fn bad_frames_get_the_contract_codes() {
        assert_eq!(parse("nope").unwrap_err().code.as_str(), "invalid_json");
        assert_eq!(parse("[1,2]").unwrap_err().code.as_str(), "invalid_json");
        assert_eq!(parse("{}").unwrap_err().code.as_str(), "unknown_type");
        assert_eq!(
            parse(r#"{"type":"dance"}"#).unwrap_err().code.as_str(),
            "unknown_type"
        );
        let e = parse(r#"{"type":"send","thread":"t","client_id":"c","body":"   "}"#).unwrap_err();
        assert_eq!(
            (e.code.as_str(), e.client_id.as_deref()),
            ("validation", Some("c"))
        );
        assert_eq!(
            parse(r#"{"type":"subscribe","thread":"t","after_seq":1e300}"#)
                .unwrap_err()
                .code
                .as_str(),
            "validation"
        );
        assert_eq!(
            parse(r#"{"type":"subscribe","thread":"t","after_seq":-1}"#)
                .unwrap_err()
                .code
                .as_str(),
            "validation"
        );
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert_eq!(parse(&deep).unwrap_err().code.as_str(), "invalid_json");
    }
}
