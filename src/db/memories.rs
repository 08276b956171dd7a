//! Per-user memory (issue #19, docs/memories.md) as stored: each user's opt-in and their memory
//! items (facts they stated, summaries of their threads). [`MemoriesStore`] is what the SQL
//! backends offer (`sql/memories.rs`); a backend without it (the unit tests' in-memory fake)
//! says so through [`super::Store::memories`].
//!
//! Every operation names the owner: an item is found, changed or deleted only by the user it
//! belongs to, so another user's id never reaches it.

use async_trait::async_trait;

use super::StoreError;

type Result<T> = std::result::Result<T, StoreError>;

/// A memory item as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryItem {
    pub id: String,
    pub user_id: String,
    /// `fact` or `summary`.
    pub kind: String,
    pub text: String,
    /// What makes two items the same (unique per user): `fact:` and the normalised text, or
    /// `summary:` and the thread id.
    pub dedupe_key: String,
    pub source_thread_id: Option<String>,
    pub source_message_id: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// What happened to an item offered to [`MemoriesStore::add_memory`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Added {
    /// Stored as new (or, for a summary, its thread's summary replaced).
    Stored(MemoryItem),
    /// The user already has an item with the same dedupe key: nothing changed.
    Duplicate(MemoryItem),
    /// The user already has `max_items` items: nothing stored.
    Full,
}

/// One page of a user's items, newest first.
#[derive(Debug, Clone)]
pub struct MemoryPage {
    pub user_id: String,
    /// Only items of this kind.
    pub kind: Option<String>,
    /// Only items older than this id (the previous page's last).
    pub before: Option<String>,
    pub limit: i64,
}

/// Storage of memory items and opt-ins (the SQL backends).
#[async_trait]
pub trait MemoriesStore: Send + Sync {
    /// Since when (ms) the user has memory on; `None` while off (also when they never chose).
    async fn memories_enabled(&self, user_id: &str) -> Result<Option<i64>>;

    /// The members of a (not deleted) thread who have memory on: one read for a whole thread,
    /// where asking each member cost a query per member at every summary point.
    async fn members_with_memory(&self, thread_id: &str) -> Result<Vec<String>>;

    /// Record the user's choice (the time only when it changes).
    async fn set_memories_enabled(&self, user_id: &str, enabled: bool, now: i64) -> Result<()>;

    /// How many items the user has.
    async fn memory_count(&self, user_id: &str) -> Result<i64>;

    /// A page of the user's items (see [`MemoryPage`]).
    async fn memory_page(&self, page: &MemoryPage) -> Result<Vec<MemoryItem>>;

    /// Store an item unless the user has one with the same dedupe key, or has `max_items`
    /// already. With `replace`, an existing item of that key takes the new text and sources
    /// instead (a thread summarised again).
    async fn add_memory(&self, item: &MemoryItem, max_items: i64, replace: bool) -> Result<Added>;

    /// Change the text of one of the user's items (and, for a fact, its dedupe key; a summary
    /// keeps its thread's); `None` when the user has no such item; `Conflict` when another of
    /// their items has that key.
    async fn update_memory(
        &self,
        user_id: &str,
        id: &str,
        text: &str,
        dedupe_key: &str,
        now: i64,
    ) -> Result<Option<MemoryItem>>;

    /// Delete one of the user's items; the item as it was, `None` when there is none.
    async fn delete_memory(&self, user_id: &str, id: &str) -> Result<Option<MemoryItem>>;

    /// Delete every item of the user; how many.
    async fn delete_all_memories(&self, user_id: &str) -> Result<u64>;
}
