//! The bodies of the thread lifecycle, members, search, export and import routes (issue 17;
//! `docs/protocol.md` "Managing threads", "Search", "Export and import").

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{AuthorView, DebateMeta, MemberView};

/// `PATCH /api/threads/{id}`: every field optional. `title`, `agents` and `owner_id` are the
/// owner's to change; `archived` and `pinned` are each member's own.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct ThreadPatch {
    /// 1-200 characters after trimming.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(test, ts(optional))]
    pub title: Option<String>,
    /// Agent ids; replaces the thread's agents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(test, ts(optional))]
    pub agents: Option<Vec<String>>,
    /// Hand the thread to another member (who becomes its owner; the caller stays a member).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(test, ts(optional))]
    pub owner_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(test, ts(optional))]
    pub archived: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(test, ts(optional))]
    pub pinned: Option<bool>,
}

/// `GET /api/threads/{id}/members`: owner first, then by when they joined.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct MemberList {
    pub members: Vec<MemberView>,
}

/// `GET /api/search` parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchParams {
    /// The words to find (1-200 characters); English and French words match their other forms.
    pub q: String,
    /// Only this thread.
    pub thread: Option<String>,
    /// Only messages written by this user (a username).
    pub author: Option<String>,
    /// Only answers of this agent (an agent id).
    pub agent: Option<String>,
    /// RFC 3339: messages at or after this time.
    pub from: Option<String>,
    /// RFC 3339: messages before this time.
    pub to: Option<String>,
    /// 1-100, default 20.
    pub limit: Option<i64>,
    /// Hits to skip (paging), default 0.
    pub offset: Option<i64>,
}

/// One search hit. In `snippet`, each match is between U+E000 and U+E001 (private-use
/// characters): escape the text, then turn those two into highlight markup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct SearchHitView {
    pub thread: String,
    pub thread_title: String,
    pub message_id: String,
    pub seq: i64,
    pub snippet: String,
    pub author: AuthorView,
    /// RFC 3339, UTC.
    pub created_at: String,
}

/// `GET /api/search`: best first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct SearchResults {
    pub hits: Vec<SearchHitView>,
    /// The `offset` of the next page, when there may be one.
    #[cfg_attr(test, ts(type = "number | null"))]
    pub next_offset: Option<i64>,
}

/// The format tag of one exported thread (`GET /api/threads/{id}/export?format=json`).
pub const THREAD_EXPORT_FORMAT: &str = "emergence.thread.v1";
/// The format tag of everything of a user (`GET /api/me/export`).
pub const ARCHIVE_FORMAT: &str = "emergence.export.v1";

/// One message in an export: who wrote it, what, when, and what it cost.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct ExportedMessageView {
    pub seq: i64,
    pub client_id: String,
    pub author: AuthorView,
    pub body: String,
    /// RFC 3339, UTC.
    pub created_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(test, ts(optional))]
    pub status: Option<String>,
    /// Token usage of an agent's answer, when the provider reported it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(test, ts(optional))]
    pub prompt_tokens: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(test, ts(optional))]
    pub completion_tokens: Option<i64>,
    /// The message's place in a debate (topic with its agents, rounds and mediator; a turn with
    /// its round; the mediator's synthesis). On import, each debate gets a new id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    #[cfg_attr(test, ts(optional))]
    pub debate: Option<DebateMeta>,
}

/// One thread as exported (and imported back): `format` is `emergence.thread.v1`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct ThreadExport {
    pub format: String,
    pub title: String,
    pub agents: Vec<String>,
    /// RFC 3339, UTC.
    pub created_at: String,
    pub messages: Vec<ExportedMessageView>,
}

/// Everything of a user (`GET /api/me/export`): `format` is `emergence.export.v1`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct ExportArchive {
    pub format: String,
    pub user: super::UserView,
    pub threads: Vec<ThreadExport>,
    /// The user's memory items, newest first (extension; absent when there are none). An
    /// import ignores them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    #[cfg_attr(test, ts(optional))]
    pub memories: Option<Vec<super::memories::MemoryView>>,
}

/// One thread an import made (or found made by an earlier import of the same content).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct ImportedThreadView {
    pub id: String,
    pub title: String,
    /// `false`: the same content was imported before; nothing new was made.
    pub created: bool,
}

/// `POST /api/import`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct ImportResult {
    pub threads: Vec<ImportedThreadView>,
}
