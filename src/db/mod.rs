//! Storage: the one narrow interface to the database ([`Store`]), with a SQLite and a PostgreSQL
//! implementation (chosen once, from the URL scheme, by [`connect`]), the health manager that
//! makes outages survivable, the group-commit message writer, and whole-database backup and
//! restore. Unit tests run the writer and the hub against an in-memory fake of [`Store`].

pub mod accounts;
pub mod backup;
mod batch;
pub mod documents;
pub mod embeddings;
pub mod lifecycle;
pub mod manager;
pub mod memories;
#[cfg(test)]
pub mod memory;
mod meta;
mod migrations;
pub mod personas;
mod sql;
pub mod sso;
mod store;
pub mod summaries;
pub mod usage;
pub mod versions;
pub mod views;
pub mod writer;

use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

pub use manager::{Database, DbState};
pub use meta::{DebateMeta, DebateRole, MessageMeta, debate_id_for};
pub use store::{SharedStore, Store, Target, connect};

/// The storage error vocabulary.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    #[error("conflict: {0}")]
    Conflict(String),
    /// The database cannot be reached (or timed out); the caller may retry later.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error(transparent)]
    Other(anyhow::Error),
}

impl StoreError {
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        use sqlx::Error as E;
        match &e {
            E::RowNotFound => StoreError::NotFound,
            E::Io(_)
            | E::Tls(_)
            | E::Protocol(_)
            | E::PoolTimedOut
            | E::PoolClosed
            | E::WorkerCrashed => StoreError::Unavailable(e.to_string()),
            E::Database(db) => {
                if db.is_unique_violation() {
                    return StoreError::Conflict(db.message().to_string());
                }
                let code = db.code().map(|c| c.to_string()).unwrap_or_default();
                // Each backend's codes are read only for that backend (a PostgreSQL data error
                // such as 22021 must never look like SQLite's BUSY).
                let down = if db
                    .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
                    .is_some()
                {
                    // Class 08 connection exceptions, 57P0x shutdown/terminated, 53xxx
                    // insufficient resources.
                    code.starts_with("08") || code.starts_with("57P") || code.starts_with("53")
                } else if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
                    // BUSY(5), LOCKED(6), IOERR(10), CANTOPEN(14) and their extended codes.
                    code.parse::<i64>()
                        .is_ok_and(|c| matches!(c & 0xff, 5 | 6 | 10 | 14))
                } else {
                    false
                };
                if down {
                    StoreError::Unavailable(format!("{code}: {}", db.message()))
                } else {
                    StoreError::Other(anyhow::Error::new(e))
                }
            }
            _ => StoreError::Other(anyhow::Error::new(e)),
        }
    }
}

/// Milliseconds since the Unix epoch; how every timestamp is stored.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// RFC 3339 UTC with milliseconds, as the contract shows times.
pub fn rfc3339(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let f = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    t.format(&f).unwrap_or_default()
}

/// A registered user.
#[derive(Debug, Clone)]
pub struct User {
    pub id: String,
    pub username: String,
    pub password_hash: String,
    pub role: accounts::Role,
    pub status: accounts::Status,
}

/// A thread, as stored.
#[derive(Debug, Clone)]
pub struct Thread {
    pub id: String,
    pub title: String,
    pub owner_id: String,
    pub agents: Vec<String>,
    pub created_at: i64,
    pub last_seq: i64,
}

/// Who wrote a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Author {
    pub kind: AuthorKind,
    pub id: String,
    pub name: String,
}

/// Who writes a message is part of the wire contract; storage keeps it as its text.
pub use crate::contract::AuthorKind;

/// A stored author kind: anything but `agent` is a user.
pub(crate) fn author_kind(s: &str) -> AuthorKind {
    if s == "agent" {
        AuthorKind::Agent
    } else {
        AuthorKind::User
    }
}

/// A stored message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub id: String,
    pub thread_id: String,
    pub seq: i64,
    pub client_id: String,
    pub author: Author,
    pub body: String,
    pub created_at: i64,
    /// `incomplete` for an agent answer cut short.
    pub status: Option<String>,
    pub prompt_tokens: Option<i64>,
    pub completion_tokens: Option<i64>,
    /// Debate place, version link, model and duration (stored as JSON).
    pub meta: Option<Box<MessageMeta>>,
}

#[cfg(test)]
impl Message {
    /// A user's message for unit tests: `seq` doubles as id and client id, in thread `t`.
    pub fn said(seq: i64, name: &str, body: &str) -> Message {
        Message {
            id: seq.to_string(),
            thread_id: "t".into(),
            seq,
            client_id: seq.to_string(),
            author: Author {
                kind: AuthorKind::User,
                id: name.into(),
                name: name.into(),
            },
            body: body.into(),
            created_at: 0,
            status: None,
            prompt_tokens: None,
            completion_tokens: None,
            meta: None,
        }
    }
}

/// A message to store; `seq` is assigned by the database transaction.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub id: String,
    pub thread_id: String,
    pub client_id: String,
    pub author: Author,
    pub body: String,
    pub created_at: i64,
    pub status: Option<String>,
    pub prompt_tokens: Option<i64>,
    pub completion_tokens: Option<i64>,
    /// Debate place, version link, model and duration (stored as JSON).
    pub meta: Option<Box<MessageMeta>>,
    /// Who asked for this agent answer (`None` for users' own messages): usage is summed per
    /// requester from it.
    pub requester: Option<String>,
    /// What the message asks of the agents (not stored; acted on once, when first stored).
    pub agent: Option<AgentRequest>,
    /// The agent stream this message is the answer of (not stored; its `message` frame follows
    /// that stream's `stream_end`).
    pub stream_id: Option<String>,
}

/// Agent work a message asks for, with the requester's reserved answer slot.
#[derive(Debug, Clone)]
pub struct AgentRequest {
    pub work: AgentWork,
    pub requester: String,
    /// Held until the jobs end (one per parallel answer, one for an answer or a debate);
    /// dropping every copy (also when the message turns out to be a repeat, or is refused)
    /// gives the slots back.
    pub slots: Vec<std::sync::Arc<crate::limits::SlotLease>>,
}

/// What the agents are asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentWork {
    /// One agent answers.
    Answer { agent: String },
    /// Several agents answer at once, each in its own job (each stoppable alone).
    Several { agents: Vec<String> },
    /// Agents take turns for `rounds` rounds, then the mediator (if any) writes a synthesis.
    Debate {
        agents: Vec<String>,
        rounds: u32,
        mediator: Option<String>,
    },
}

/// What happened to one message of a batch.
#[derive(Debug, Clone)]
pub enum InsertOutcome {
    /// Newly stored.
    Inserted(Message),
    /// The same author already stored this `client_id` in this thread.
    Existing(Message),
    /// Another author owns this `client_id` in this thread.
    ClientIdTaken,
    /// The thread does not exist.
    NoThread,
}

/// Which page of history to read.
#[derive(Debug, Clone, Copy)]
pub enum Page {
    After(i64),
    Before(i64),
    Latest,
}
