//! [`StreamEvent`]: everything that happens to an agent stream, published through the broker
//! and applied on every instance (`Streams::apply`).

use serde::{Deserialize, Serialize};

use crate::contract::{AgentErrorClass, DebateRole, ErrorCode};
use crate::realtime::WireMessage;

/// Everything that happens to a stream, applied on every instance.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "stream_event", rename_all = "snake_case")]
pub enum StreamEvent {
    Start {
        thread: String,
        stream_id: String,
        agent_id: String,
        agent_name: String,
        debate_id: Option<String>,
        /// The model that really answers.
        #[serde(default)]
        model: Option<String>,
        /// A debate turn's round and part (turn or synthesis).
        #[serde(default)]
        round: Option<u32>,
        #[serde(default)]
        role: Option<DebateRole>,
        /// A regenerated answer's first version.
        #[serde(default)]
        version_of: Option<String>,
    },
    Chunk {
        thread: String,
        stream_id: String,
        offset: usize,
        delta: String,
    },
    /// Reasoning text, offset-addressed like `Chunk` but apart from the answer.
    Reasoning {
        thread: String,
        stream_id: String,
        offset: usize,
        delta: String,
    },
    End {
        thread: String,
        stream_id: String,
        message: WireMessage,
    },
    Error {
        thread: String,
        stream_id: String,
        code: ErrorCode,
        message: String,
        #[serde(default)]
        error_class: Option<AgentErrorClass>,
        /// `budget_exceeded`: when the requester's budget starts again (RFC 3339).
        #[serde(default)]
        resets_at: Option<String>,
    },
    /// The provider failed before the first token; the answer is tried again after a pause.
    Retry {
        thread: String,
        stream_id: String,
        attempt: u32,
        retry_in_ms: u64,
        error_class: AgentErrorClass,
    },
    /// The answer goes on with another model (the agent's fallback, before the first token).
    ModelChanged {
        thread: String,
        stream_id: String,
        model: String,
    },
    /// Asks the instance running the stream (or debate) to stop it.
    Cancel { stream_id: String },
    /// Asks the instance running the debate to stop it, also between two turns.
    CancelDebate { debate_id: String },
    /// A debate's job ended (every turn ran, or it was stopped): it can no longer be stopped.
    DebateEnded { thread: String, debate_id: String },
    /// Asks the instance running the stream to publish its full text (a mirror missed chunks).
    SnapshotRequest { stream_id: String },
    /// The full text so far, from the running instance.
    Snapshot {
        thread: String,
        stream_id: String,
        agent_id: String,
        agent_name: String,
        debate_id: Option<String>,
        text: String,
        /// The reasoning so far.
        #[serde(default)]
        reasoning: String,
        #[serde(default)]
        model: Option<String>,
        #[serde(default)]
        round: Option<u32>,
        #[serde(default)]
        role: Option<DebateRole>,
        #[serde(default)]
        version_of: Option<String>,
    },
}

impl StreamEvent {
    /// The thread the stream belongs to; `None` for requests addressed to a stream by id.
    pub fn thread(&self) -> Option<&str> {
        match self {
            StreamEvent::Start { thread, .. }
            | StreamEvent::Chunk { thread, .. }
            | StreamEvent::Reasoning { thread, .. }
            | StreamEvent::End { thread, .. }
            | StreamEvent::Error { thread, .. }
            | StreamEvent::Retry { thread, .. }
            | StreamEvent::Snapshot { thread, .. }
            | StreamEvent::ModelChanged { thread, .. }
            | StreamEvent::DebateEnded { thread, .. } => Some(thread),
            StreamEvent::Cancel { .. }
            | StreamEvent::CancelDebate { .. }
            | StreamEvent::SnapshotRequest { .. } => None,
        }
    }
}
