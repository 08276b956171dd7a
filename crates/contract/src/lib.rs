//! The public wire contract as types (`../shared/contract.md`, `docs/protocol.md`): every frame
//! the server sends is a [`ServerFrame`], every frame a client may send has its shape in
//! [`ClientFrameShape`], every error code is an [`ErrorCode`], and a message is serialised by
//! [`MessageView`] alone. The web client's TypeScript types (`web/src/contract.ts`) are generated
//! from these types by the unit test `contract_ts_is_current` (`UPDATE_CONTRACT=1 cargo test
//! --lib contract` rewrites the file), so the browser and the server cannot drift apart.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

pub mod accounts;
pub mod context;
mod debate;
pub mod documents;
pub mod http;
pub mod memories;
pub mod personas;
pub mod sso;
pub mod threads;
pub mod usage;

pub use debate::{DebateMeta, DebateRole};

/// Every error code of the contract, for HTTP bodies and WebSocket error frames alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
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
    // Accounts and access (v2).
    RegistrationClosed,
    InviteInvalid,
    PendingApproval,
    // Single sign-on.
    PasswordLoginDisabled,
    /// The requester's daily or monthly usage budget is spent (with `resets_at`).
    BudgetExceeded,
    // Documents (issue #19).
    /// The uploaded file is larger than `documents.max_bytes` (413).
    FileTooLarge,
    /// The uploader's document storage quota is spent (403).
    QuotaExceeded,
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
            ErrorCode::RegistrationClosed => "registration_closed",
            ErrorCode::InviteInvalid => "invite_invalid",
            ErrorCode::PendingApproval => "pending_approval",
            ErrorCode::PasswordLoginDisabled => "password_login_disabled",
            ErrorCode::BudgetExceeded => "budget_exceeded",
            ErrorCode::FileTooLarge => "file_too_large",
            ErrorCode::QuotaExceeded => "quota_exceeded",
        }
    }
}

/// The body of every non-2xx HTTP answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// What went wrong: a stable code, human text, and for `validation` why each field failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct ErrorDetail {
    pub code: ErrorCode,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    #[cfg_attr(test, ts(optional))]
    pub fields: Option<std::collections::BTreeMap<String, String>>,
    /// `budget_exceeded`: when the spent budget starts again (RFC 3339, UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    #[cfg_attr(test, ts(optional))]
    pub resets_at: Option<String>,
}

// Whether a message was written by a user or an agent (no doc comment: it would become the
// schema's description and change docs/openapi.json).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "lowercase")]
pub enum AuthorKind {
    User,
    Agent,
}

impl AuthorKind {
    /// The kind as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthorKind::User => "user",
            AuthorKind::Agent => "agent",
        }
    }
}

/// Who wrote a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct AuthorView {
    pub kind: AuthorKind,
    pub id: String,
    pub name: String,
}

/// A message as the contract shows it, over HTTP and inside frames.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
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
    #[schema(nullable = false)]
    #[cfg_attr(test, ts(optional))]
    pub status: Option<String>,
    /// The message's place in a debate (topic, turn with its round, or closing synthesis).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    #[cfg_attr(test, ts(optional))]
    pub debate: Option<DebateMeta>,
    /// On a regenerated answer: the id of the answer's first version (all versions share it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    #[cfg_attr(test, ts(optional))]
    pub version_of: Option<String>,
    /// On an agent answer: the model that wrote it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    #[cfg_attr(test, ts(optional))]
    pub model: Option<String>,
    /// On an agent answer: milliseconds from the request to the provider to the last token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    #[cfg_attr(test, ts(optional))]
    pub duration_ms: Option<u64>,
    /// On an agent answer: tokens of the prompt, as the provider counted them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    #[cfg_attr(test, ts(optional))]
    pub prompt_tokens: Option<i64>,
    /// On an agent answer: tokens of the answer, as the provider counted them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    #[cfg_attr(test, ts(optional))]
    pub completion_tokens: Option<i64>,
    /// On an `incomplete` answer: why it stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    #[cfg_attr(test, ts(optional))]
    pub error_class: Option<AgentErrorClass>,
    /// On an agent answer that used the thread's documents: the passages its `[n]` refer to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    #[cfg_attr(test, ts(optional))]
    pub citations: Option<Vec<documents::Citation>>,
    /// On an agent answer: the model's reasoning ("thinking"), apart from `body` (extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    #[cfg_attr(test, ts(optional))]
    pub reasoning: Option<String>,
    /// On an agent answer: tokens spent reasoning, as the provider counted them (extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    #[cfg_attr(test, ts(optional))]
    pub reasoning_tokens: Option<i64>,
    /// On an agent answer: the summary that stood in for older turns (extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    #[cfg_attr(test, ts(optional))]
    pub context_summary: Option<context::ContextSummaryView>,
}

/// The user a connection is authenticated as.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct UserView {
    pub id: String,
    pub username: String,
}

/// A thread member's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum MemberRole {
    Owner,
    Member,
}

/// One member of a thread (`GET /api/threads/{id}/members`, `members_updated`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct MemberView {
    pub user_id: String,
    pub username: String,
    pub role: MemberRole,
}

/// Why a subscription ended (`removed`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum RemovedReason {
    /// The owner deleted the thread.
    Deleted,
    /// The owner removed this user.
    Removed,
    /// This user left the thread.
    Left,
}

/// An agent as stream frames name it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct AgentRef {
    pub id: String,
    pub name: String,
    /// The model that really answers (`stream_start`): the configured one, a local model found
    /// on this machine, or `offline`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    #[cfg_attr(test, ts(optional))]
    pub model: Option<String>,
}

/// Why an agent's answer failed or waits, as a stable class: the web UI shows a translated
/// sentence for each (`web/src/agentErrors.ts`, generated from `agents::errors`), operators
/// find the detail in the server's log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum AgentErrorClass {
    /// HTTP 429 or a rate-limit error from the provider.
    RateLimited,
    /// 5xx, overloaded, unreachable.
    Unavailable,
    /// The configured model does not exist there (404).
    ModelNotFound,
    /// The conversation exceeds the model's context window.
    ContextTooLong,
    /// The provider's content filter refused the request or the answer.
    ContentFilter,
    /// No first token, or silence mid-answer, for longer than allowed.
    TimedOut,
    /// Credentials refused (401/403) or the provider is not set up.
    Misconfigured,
    /// Another 4xx: the provider refused the request.
    BadRequest,
    /// An answer that is neither a stream nor a completion (wrong Content-Type, bad JSON).
    BadResponse,
    /// The stream broke mid-answer.
    ConnectionLost,
    /// A member cancelled the answer.
    Cancelled,
    /// The instance stopped while answering.
    Interrupted,
}

/// Whether a send is durable yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum AckStatus {
    Queued,
    Persisted,
}

/// Every frame the server sends (`docs/protocol.md` §7.4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
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
        #[schema(nullable = false)]
        #[cfg_attr(test, ts(optional))]
        seq: Option<i64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schema(nullable = false)]
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
        #[schema(nullable = false)]
        #[cfg_attr(test, ts(optional))]
        client_id: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schema(nullable = false)]
        #[cfg_attr(test, ts(optional))]
        retry_after_ms: Option<u64>,
        /// `budget_exceeded`: when the spent budget starts again (RFC 3339, UTC; extension).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schema(nullable = false)]
        #[cfg_attr(test, ts(optional))]
        resets_at: Option<String>,
    },
    StreamStart {
        thread: String,
        stream_id: String,
        agent: AgentRef,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schema(nullable = false)]
        #[cfg_attr(test, ts(optional))]
        debate_id: Option<String>,
        /// A debate turn's 1-based round (extension).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schema(nullable = false)]
        #[cfg_attr(test, ts(optional))]
        round: Option<u32>,
        /// A debate stream's part: `turn`, or `synthesis` for the mediator's closing turn
        /// (extension).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schema(nullable = false)]
        #[cfg_attr(test, ts(optional))]
        role: Option<DebateRole>,
        /// A regenerated answer's first version: the stream writes a new version of that
        /// answer (extension).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schema(nullable = false)]
        #[cfg_attr(test, ts(optional))]
        version_of: Option<String>,
    },
    StreamSnapshot {
        thread: String,
        stream_id: String,
        text: String,
        offset: usize,
        /// The reasoning so far (extension); `stream_reasoning` frames go on from its length.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schema(nullable = false)]
        #[cfg_attr(test, ts(optional))]
        reasoning: Option<String>,
    },
    /// Reasoning ("thinking") of a running answer (extension): like `stream_chunk`, with its
    /// own offsets (characters of reasoning before this delta); never part of the answer text.
    StreamReasoning {
        thread: String,
        stream_id: String,
        offset: usize,
        delta: String,
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
        /// A short, stable English sentence for this class (never upstream text).
        message: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schema(nullable = false)]
        #[cfg_attr(test, ts(optional))]
        error_class: Option<AgentErrorClass>,
        /// `budget_exceeded`: when the requester's spent budget starts again (RFC 3339, UTC;
        /// extension). No provider was called.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schema(nullable = false)]
        #[cfg_attr(test, ts(optional))]
        resets_at: Option<String>,
    },
    /// The thread's title, agents or owner changed; sent to every subscriber right after the
    /// last message stored before the change, once.
    ThreadUpdated {
        thread: String,
        title: String,
        owner_id: String,
        agents: Vec<String>,
    },
    /// The thread's members changed (added, removed, left, new owner): the whole list.
    MembersUpdated {
        thread: String,
        members: Vec<MemberView>,
    },
    /// This subscription has ended and the thread is no longer readable by this user: it was
    /// deleted, or the user was removed or left. Nothing more arrives for the thread.
    Removed {
        thread: String,
        reason: RemovedReason,
    },
    /// The provider failed before the first token and the answer is tried again in
    /// `retry_in_ms` (the user sees "retrying in N s" on the streaming answer).
    StreamRetry {
        thread: String,
        stream_id: String,
        /// 1 for the first retry.
        attempt: u32,
        retry_in_ms: u64,
        error_class: AgentErrorClass,
    },
    /// A document of the thread was uploaded or changed state (queued, extracting, indexed,
    /// failed with its reason) or was deleted (`deleted`: true).
    Document {
        thread: String,
        document: documents::DocumentView,
        /// True on the last frame of a deleted document.
        #[serde(default)]
        deleted: bool,
    },
    /// One of the user's memory items changed (sent to that user's sockets only, on every
    /// instance): captured, added, edited, deleted, or all of them deleted (`cleared`).
    Memory {
        change: memories::MemoryChange,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schema(nullable = false)]
        #[cfg_attr(test, ts(optional))]
        memory: Option<memories::MemoryView>,
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
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
        /// Several agents answer at once, each in its own stream (extension; 1-4 ids).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[cfg_attr(test, ts(optional))]
        agents: Option<Vec<String>>,
    },
    Debate {
        thread: String,
        client_id: String,
        topic: String,
        agents: Vec<String>,
        rounds: u32,
        /// An agent that writes a closing synthesis after the last round (extension).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[cfg_attr(test, ts(optional))]
        mediator: Option<String>,
    },
    /// Stop one stream (`stream_id`) or a whole debate (`debate_id`, extension); one of the two.
    Cancel {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[cfg_attr(test, ts(optional))]
        stream_id: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[cfg_attr(test, ts(optional))]
        debate_id: Option<String>,
    },
    Ping {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[cfg_attr(test, ts(optional, type = "unknown"))]
        nonce: Option<Value>,
    },
    /// Write a new version of the agent answer `message_id` (extension): by the same agent, or
    /// by `agent`; acknowledged with `ack` (no `seq`), idempotent by `client_id`.
    Regenerate {
        thread: String,
        client_id: String,
        message_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[cfg_attr(test, ts(optional))]
        agent: Option<String>,
    },
}

#[cfg(test)]
mod tests;
