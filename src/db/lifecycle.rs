//! What the storage layer hands back for thread lifecycle, membership, search and import
//! (issue 17): plain values, shared by the SQL backends and the in-memory fake.

use super::{Message, NewMessage, Thread};

/// A thread as one member sees it in their list: with their own archive and pin flags.
#[derive(Debug, Clone)]
pub struct ListedThread {
    pub thread: Thread,
    pub archived: bool,
    pub pinned: bool,
}

/// One member of a thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadMember {
    pub user_id: String,
    pub username: String,
    pub added_at: i64,
}

/// What a thread's owner may change (`None` leaves it as it is).
#[derive(Debug, Clone, Default)]
pub struct ThreadChange {
    pub title: Option<String>,
    pub agents: Option<Vec<String>>,
    pub owner_id: Option<String>,
}

/// A member's own flags (`None` leaves it as it is).
#[derive(Debug, Clone, Copy, Default)]
pub struct MemberFlags {
    pub archived: Option<bool>,
    pub pinned: Option<bool>,
}

/// A full-text search, already checked at the boundary.
#[derive(Debug, Clone)]
pub struct SearchQuery {
    /// The words as typed (PostgreSQL parses them with `websearch_to_tsquery`).
    pub text: String,
    /// The FTS5 `MATCH` expression built from the words (SQLite).
    pub fts5: String,
    /// Only threads this user is a member of (and not deleted).
    pub user_id: String,
    pub thread: Option<String>,
    /// A user id: only messages that user wrote.
    pub author: Option<String>,
    /// An agent id: only that agent's answers.
    pub agent: Option<String>,
    /// Milliseconds; `from` inclusive, `to` exclusive.
    pub from: Option<i64>,
    pub to: Option<i64>,
    pub limit: i64,
    pub offset: i64,
}

/// One hit, best first. The snippet marks matches with U+E000 ... U+E001.
#[derive(Debug, Clone)]
pub struct SearchHit {
    pub message: Message,
    pub thread_title: String,
    pub snippet: String,
}

/// A message with what the export carries beyond the wire message.
#[derive(Debug, Clone)]
pub struct ExportedMessage {
    pub message: Message,
    pub prompt_tokens: Option<i64>,
    pub completion_tokens: Option<i64>,
}

/// A thread to import in one transaction, recorded under `content_hash` for its importer.
#[derive(Debug, Clone)]
pub struct ImportedThread {
    pub thread: Thread,
    pub messages: Vec<NewMessage>,
    pub content_hash: String,
}

/// Where snippets start and end a match: private-use characters that never need escaping and
/// that the UI turns into `<mark>` after escaping the text.
pub const MARK_START: char = '\u{E000}';
pub const MARK_END: char = '\u{E001}';
