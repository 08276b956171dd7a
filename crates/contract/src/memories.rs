//! The bodies of the memory routes and the `memory` frame (issue #19; `docs/protocol.md`
//! "Memories", `docs/memories.md`).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// One memory item of the caller (`GET /api/memories`, `POST`, `PATCH`, the `memory` frame).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct MemoryView {
    pub id: String,
    /// `fact` (stated by the user, or added by hand) or `summary` (of a thread).
    pub kind: String,
    pub text: String,
    /// The thread it was captured in (none for an item added by hand).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    #[cfg_attr(test, ts(optional))]
    pub source_thread: Option<String>,
    /// The message it was captured from (facts only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    #[cfg_attr(test, ts(optional))]
    pub source_message: Option<String>,
    /// RFC 3339, UTC.
    pub created_at: String,
    pub updated_at: String,
}

/// `GET /api/memories`: newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct MemoryList {
    pub memories: Vec<MemoryView>,
    /// Pass as `before` for the next (older) page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    #[cfg_attr(test, ts(optional))]
    pub next_before: Option<String>,
}

/// `GET|PUT /api/memories/settings`: whether memory is on for the caller, and its limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct MemorySettingsView {
    /// Opt-in: off until the user turns it on. Off, nothing is captured and agents receive
    /// none of the items (which are kept until deleted).
    pub enabled: bool,
    /// Items kept now.
    pub count: u32,
    /// Most items the user may keep.
    pub max_items: u32,
    /// Most characters of one item.
    pub max_chars: u32,
}

/// `POST /api/memories` and `PATCH /api/memories/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct MemoryInput {
    /// 1 to `max_chars` characters after trimming.
    pub text: String,
}

/// `PUT /api/memories/settings`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct MemoryOptIn {
    pub enabled: bool,
}

/// `DELETE /api/memories`: how many items were deleted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct MemoriesDeleted {
    pub deleted: u64,
}

/// What a `memory` frame says happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum MemoryChange {
    /// A new item (captured, or added by hand on another page).
    Added,
    /// An item's text changed (edited, or its thread summarised again).
    Updated,
    /// An item was deleted.
    Deleted,
    /// Every item was deleted (`memory` is absent).
    Cleared,
}
