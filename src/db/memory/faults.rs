//! The in-memory fake's switches for failing the way a real database does (down, one failed
//! batch, a refused message), and the test data helpers for a thread and a user's message.

use crate::db::{Author, AuthorKind, NewMessage, StoreError, Thread};

#[derive(Default)]
pub(super) struct Faults {
    pub(super) down: bool,
    /// The next `n` batches fail with this error before touching anything.
    pub(super) failing_batches: Vec<Failure>,
    /// A batch holding a message with this body fails (`Other`), as a constraint would.
    pub(super) refused_body: Option<String>,
}

/// How an injected failure looks to the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The database cannot be reached.
    Unavailable,
    /// The database refused the statement.
    Other,
}

impl Failure {
    pub(super) fn error(self) -> StoreError {
        match self {
            Failure::Unavailable => StoreError::Unavailable("the fake is down".into()),
            Failure::Other => StoreError::Other(anyhow::anyhow!("the fake refused the batch")),
        }
    }
}

/// A thread owned by `alice`, titled by its id, with no agents (test data).
pub fn alices_thread(id: &str) -> Thread {
    Thread {
        id: id.into(),
        title: id.into(),
        owner_id: "alice".into(),
        agents: vec![],
        created_at: 1,
        last_seq: 0,
    }
}

/// A user's message to store (test data).
pub fn user_message(thread: &str, client_id: &str, author: &str, body: &str) -> NewMessage {
    NewMessage {
        id: format!("{thread}/{client_id}/{author}"),
        thread_id: thread.into(),
        client_id: client_id.into(),
        author: Author {
            kind: AuthorKind::User,
            id: author.into(),
            name: author.into(),
        },
        body: body.into(),
        created_at: 10,
        status: None,
        prompt_tokens: None,
        completion_tokens: None,
        meta: None,
        requester: None,
        agent: None,
        stream_id: None,
    }
}
