//! The one narrow storage interface, [`Store`]: every operation the server needs from a
//! database, and nothing about SQL. Two real implementations live in `db::sql` (SQLite and
//! PostgreSQL, one generic body of SQL); unit tests use an in-memory fake (`db::memory`).
//!
//! Dispatch is dynamic (`Arc<dyn Store>`, futures boxed by `async_trait`) on purpose: the backend
//! is chosen once, at start-up, from the URL scheme, and the fake must slot in where the real one
//! goes without making `Database`, the writer and `AppState` generic. A call costs one small
//! allocation, against a database round trip of tens of microseconds at least; the group commit
//! makes one call per batch (docs/performance.md has the same-minute A/B).

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;

use super::{
    InsertOutcome, Message, NewMessage, Page, StoreError, Thread, User,
    accounts::{
        AccessChange, AccessOutcome, Account, AccountLink, NewAccount, Registered, SessionRow,
    },
    documents::DocumentStore,
    lifecycle::{
        ExportedMessage, ImportedThread, ListedThread, MemberFlags, SearchHit, SearchQuery,
        ThreadChange, ThreadMember,
    },
    memories::MemoriesStore,
    personas::{PersonaChange, PersonaSnapshot},
    sso::{SsoIdentity, SsoPending},
    summaries::ContextSummary,
    usage::{BudgetRow, Counter, PeriodLimit, UsageGroup, UsageQuery},
    versions::Regeneration,
};
use crate::settings::{DatabaseSettings, Pooler};

type Result<T> = std::result::Result<T, StoreError>;

/// The configured backend, shared by everyone who reads or writes.
pub type SharedStore = Arc<dyn Store>;

/// What the server stores and reads. Every implementation keeps the same semantics, which the
/// storage story test (`tests/it/storage.rs`) checks against SQLite and PostgreSQL alike:
///
/// * usernames are unique by their key (`Conflict` otherwise);
/// * each thread's messages get `seq` 1, 2, 3, ... with no gap, in the order of a batch;
/// * a `(thread, client_id)` is stored once: the same author again gets the stored message
///   back (`Existing`), another author is refused (`ClientIdTaken`);
/// * `Unavailable` means "the database cannot be reached; try again", never "refused".
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// `sqlite`, `postgres` (or `memory` for the test fake), for logs.
    fn backend_name(&self) -> &'static str;

    /// Apply pending migrations (each backend has its own, in `migrations/<backend>`).
    async fn migrate(&self) -> Result<()>;

    /// Close the pool (connections are released as their queries end).
    async fn close(&self);

    /// One trivial round trip.
    async fn ping(&self) -> Result<()>;

    /// The value under `key`, storing `candidate` first when there is none (first writer wins).
    async fn kv_get_or_insert(&self, key: &str, candidate: &str) -> Result<String>;

    async fn user_by_key(&self, key: &str) -> Result<Option<User>>;

    async fn create_session(&self, id: &str, user_id: &str, now: i64, expires: i64) -> Result<()>;

    /// Revoke a session (a second revocation keeps the first time).
    async fn revoke_session(&self, id: &str, now: i64) -> Result<()>;

    /// Sessions revoked at or after `since` and not yet expired at `now`:
    /// `(id, revoked_at, expires_at)`.
    async fn revoked_since(&self, since: i64, now: i64) -> Result<Vec<(String, i64, i64)>>;

    /// Store a thread with its owner as first member.
    async fn create_thread(&self, thread: &Thread, now: i64) -> Result<()>;

    async fn thread(&self, id: &str) -> Result<Option<Thread>>;

    /// The user's threads, most recent activity first.
    async fn threads_for_user(&self, user_id: &str) -> Result<Vec<Thread>>;

    /// User ids of the thread's members.
    async fn members(&self, thread_id: &str) -> Result<Vec<String>>;

    /// Thread ids the user belongs to (warms the membership cache).
    async fn memberships(&self, user_id: &str) -> Result<Vec<String>>;

    /// Add a member (adding twice is harmless).
    async fn add_member(&self, thread_id: &str, user_id: &str, now: i64) -> Result<()>;

    /// One page of a thread's history, always in ascending `seq`.
    async fn messages(&self, thread_id: &str, page: Page, limit: i64) -> Result<Vec<Message>>;

    async fn message_by_client_id(
        &self,
        thread_id: &str,
        client_id: &str,
    ) -> Result<Option<Message>>;

    /// Store a batch atomically (the group commit): one outcome per message, in batch order.
    async fn insert_messages(&self, batch: &[NewMessage]) -> Result<Vec<InsertOutcome>>;

    // ---- Thread lifecycle, members, search, export and import (issue 17) ----
    // A deleted thread (soft delete) is invisible to every method above, as if it never existed.

    /// The user's threads with their own flags: pinned first, then most recent activity;
    /// archived ones only when `archived` is true (then only those).
    async fn thread_list(&self, user_id: &str, archived: bool) -> Result<Vec<ListedThread>>;

    /// One member's own flags on a thread, `None` when not a member.
    async fn member_flags(&self, thread_id: &str, user_id: &str) -> Result<Option<(bool, bool)>>;

    /// Change title, agents or owner; the thread as it now is (`last_seq` orders the change among
    /// the messages), `None` when it does not exist.
    async fn update_thread(&self, thread_id: &str, change: &ThreadChange)
    -> Result<Option<Thread>>;

    /// Set a member's own archive/pin flags; `false` when not a member.
    async fn set_member_flags(
        &self,
        thread_id: &str,
        user_id: &str,
        flags: MemberFlags,
        now: i64,
    ) -> Result<bool>;

    /// Soft delete: the thread's `last_seq` at deletion, `None` when it did not exist.
    async fn delete_thread(&self, thread_id: &str, now: i64) -> Result<Option<i64>>;

    /// Remove for good the threads deleted before `before` (messages, index, members); how many.
    async fn purge_deleted(&self, before: i64) -> Result<u64>;

    /// The members with their usernames, oldest first.
    async fn thread_members(&self, thread_id: &str) -> Result<Vec<ThreadMember>>;

    /// Remove a member; `false` when they were not one.
    async fn remove_member(&self, thread_id: &str, user_id: &str) -> Result<bool>;

    /// Full-text search over the threads `query.user_id` can read, best first.
    async fn search(&self, query: &SearchQuery) -> Result<Vec<SearchHit>>;

    /// Every message of a thread in `seq` order, with token usage (exports).
    async fn export_messages(&self, thread_id: &str) -> Result<Vec<ExportedMessage>>;

    /// The thread an earlier import of `content_hash` by this user created, if any.
    async fn imported_thread(&self, user_id: &str, content_hash: &str) -> Result<Option<String>>;

    /// Store an imported thread (owner as only member), its messages (seq 1..n, indexed) and
    /// the import record, in one transaction; `Conflict` when the hash is already recorded.
    async fn import_thread(&self, import: &ImportedThread, now: i64) -> Result<()>;
    // ---- Accounts and access (issue #15) ------------------------------------------------------

    /// Create an account (see [`NewAccount`]): in one transaction, the first account ever is an
    /// active admin whatever the mode; otherwise the mode decides (an invite is consumed only
    /// when the account is created). Race-free on every backend.
    async fn register_user(&self, account: &NewAccount) -> Result<Registered>;

    async fn user_by_id(&self, id: &str) -> Result<Option<User>>;

    /// Every account, oldest first.
    async fn accounts(&self) -> Result<Vec<Account>>;

    /// Change a role or a status, refusing (`LastAdmin`) one that leaves no active admin.
    /// Admin changes are serialised, so two admins demoting each other cannot both succeed.
    async fn set_access(&self, user_id: &str, change: AccessChange) -> Result<AccessOutcome>;

    /// Replace a password hash; false when there is no such user.
    async fn set_password(&self, user_id: &str, password_hash: &str) -> Result<bool>;

    /// Store a session or API-token row (`create_session` stores a plain session).
    async fn create_session_row(&self, row: &SessionRow) -> Result<()>;

    /// The user's unrevoked, unexpired rows of `kind`, newest first.
    async fn sessions_of(&self, user_id: &str, kind: &str, now: i64) -> Result<Vec<SessionRow>>;

    /// Revoke the user's unrevoked rows (of `kind` when given, all kinds otherwise), except
    /// `keep`; returns `(id, expires_at)` of each row revoked now.
    async fn revoke_sessions_of(
        &self,
        user_id: &str,
        kind: Option<&str>,
        keep: Option<&str>,
        now: i64,
    ) -> Result<Vec<(String, i64)>>;

    /// Revoke one of the user's rows of `kind`; its `expires_at` when it was theirs and active.
    async fn revoke_session_of(
        &self,
        user_id: &str,
        id: &str,
        kind: &str,
        now: i64,
    ) -> Result<Option<i64>>;

    async fn create_link(&self, link: &AccountLink) -> Result<()>;

    /// Links of `purpose` not used, revoked or expired, newest first.
    async fn open_links(&self, purpose: &str, now: i64) -> Result<Vec<AccountLink>>;

    /// Revoke an open link; false when there is none with that id.
    async fn revoke_link(&self, id: &str, purpose: &str, now: i64) -> Result<bool>;

    /// Use a reset link (single use, unexpired) and set its user's password, in one
    /// transaction; the user's id, or `None` when the link is not valid.
    async fn use_reset_link(
        &self,
        token_hash: &str,
        password_hash: &str,
        now: i64,
    ) -> Result<Option<String>>;

    // ---- Single sign-on (OpenID Connect, issue #15) -------------------------------------------

    /// Store a pending row (and forget the expired ones).
    async fn put_sso_pending(&self, pending: &SsoPending) -> Result<()>;

    /// Take (delete and return) the pending row of `kind` under `key_hash`: single use, so of
    /// two concurrent takers one gets it; `None` when unknown, taken or expired.
    async fn take_sso_pending(
        &self,
        kind: &str,
        key_hash: &str,
        now: i64,
    ) -> Result<Option<SsoPending>>;

    /// The account linked to `(issuer, subject)`.
    async fn sso_user(&self, issuer: &str, subject: &str) -> Result<Option<User>>;

    /// Create an account as [`Store::register_user`] does and link it to the identity, in one
    /// transaction. `Taken` also when the identity was linked meanwhile (nothing is created).
    async fn register_sso_user(
        &self,
        account: &NewAccount,
        identity: &SsoIdentity,
    ) -> Result<Registered>;
    // ---- Usage and budgets (issue #15) --------------------------------------------------------

    /// Agent answers with a requester, summed per requester, UTC day, agent and model.
    async fn usage(&self, query: &UsageQuery) -> Result<Vec<UsageGroup>>;

    /// Stored limit rows: `user_id`'s and the default's, or every row when `None`.
    async fn budget_rows(&self, user_id: Option<&str>) -> Result<Vec<BudgetRow>>;

    /// Store a user's (or the default's) limits, replacing earlier ones.
    async fn set_budget(
        &self,
        user_id: &str,
        daily: Option<i64>,
        monthly: Option<i64>,
        now: i64,
    ) -> Result<()>;

    /// Remove a limit row; false when there was none.
    async fn delete_budget(&self, user_id: &str) -> Result<bool>;

    /// Reserve `tokens` in each period, atomically and race-free across instances, unless a
    /// period's budget is spent (`used + reserved >= limit`): then nothing is reserved and that
    /// period is returned.
    async fn reserve_usage(
        &self,
        user_id: &str,
        periods: &[PeriodLimit],
        tokens: i64,
    ) -> Result<Option<String>>;

    /// Settle a reservation: give back `reserved` tokens and count `used` in each period.
    async fn settle_usage(
        &self,
        user_id: &str,
        periods: &[String],
        reserved: i64,
        used: i64,
    ) -> Result<()>;

    /// The counters of these periods (zero when never used), in order.
    async fn usage_counters(&self, user_id: &str, periods: &[String]) -> Result<Vec<Counter>>;

    // ---- Regenerated answers (issue 16): the SQL is in `sql/versions.rs` ----

    /// One message of a thread by its id (`None` when the thread has no such message).
    async fn message_by_id(&self, thread_id: &str, id: &str) -> Result<Option<Message>>;

    /// Record a regenerate request once per `(thread, client_id)`; the stored request: `claim`
    /// itself the first time, the earlier one on a repeat (the caller compares them).
    async fn claim_regeneration(&self, claim: &Regeneration) -> Result<Regeneration>;

    // ---- Documents (issue #19): the SQL is in `sql/documents.rs` ----

    /// The backend's document storage; `None` for a backend without it (the in-memory fake).
    fn documents(&self) -> Option<&dyn DocumentStore> {
        None
    }

    // ---- Per-user memory (issue #19): the SQL is in `sql/memories.rs` ----

    /// The backend's memory storage; `None` for a backend without it (the in-memory fake).
    fn memories(&self) -> Option<&dyn MemoriesStore> {
        None
    }

    /// The backend's storage of chunk vectors (`sql/embeddings.rs`); `None` for a backend
    /// without documents.
    fn embeddings(&self) -> Option<&dyn crate::db::embeddings::EmbeddingStore> {
        None
    }

    // ---- Personas and provider connections (issue #18): the SQL is in `sql/personas.rs` ----

    /// The number every persona or connection change bumps (cheap: polled every second).
    async fn personas_version(&self) -> Result<i64>;

    /// Every connection and persona, with the version they are of.
    async fn personas(&self) -> Result<PersonaSnapshot>;

    /// Apply one change and bump the version, in one transaction (see [`PersonaChange`]).
    async fn change_personas(&self, change: &PersonaChange) -> Result<bool>;

    // ---- Context summaries (issue #18): the SQL is in `sql/summaries.rs` ----

    /// The summary of a thread's older turns for one agent, if one was written.
    async fn context_summary(
        &self,
        thread_id: &str,
        agent_id: &str,
    ) -> Result<Option<ContextSummary>>;

    /// Store a summary, unless the stored one already covers as many messages.
    async fn put_context_summary(&self, summary: &ContextSummary) -> Result<()>;
}

/// Where the database is and how to reach it.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    /// `sqlite://PATH` or `postgres://...`: what every query goes through.
    pub url: &'a str,
    /// PostgreSQL itself when `url` is a pooler: migrations go there.
    pub direct_url: Option<&'a str>,
    pub pooler: Pooler,
}

impl<'a> Target<'a> {
    /// A database reached directly.
    pub fn url(url: &'a str) -> Self {
        Target {
            url,
            direct_url: None,
            pooler: Pooler::None,
        }
    }

    /// The database the settings name.
    pub fn of(settings: &'a DatabaseSettings) -> Self {
        Target {
            url: settings.url.expose(),
            direct_url: settings.direct_url.as_ref().map(|u| u.expose()),
            pooler: settings.pooler,
        }
    }
}

/// Open the backend for `target` (`sqlite://PATH` or `postgres://...`) and check that it
/// answers. `may_create` lets SQLite create the file (and its directory).
pub async fn connect(
    target: Target<'_>,
    max_connections: u32,
    connect_timeout: Duration,
    may_create: bool,
) -> Result<SharedStore> {
    let url = target.url;
    let store: SharedStore = if let Some(path) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    {
        let path = path.split('?').next().unwrap_or(path);
        Arc::new(super::sql::open_sqlite(path, max_connections, connect_timeout, may_create).await?)
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Arc::new(super::sql::open_postgres(target, max_connections, connect_timeout).await?)
    } else {
        return Err(StoreError::Other(anyhow::anyhow!(
            "unsupported DATABASE_URL scheme (use sqlite:// or postgres://)"
        )));
    };
    store.ping().await?;
    Ok(store)
}
