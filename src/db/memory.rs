//! An in-memory [`Store`] for unit tests: the same semantics as the SQL backends (gapless `seq`
//! per thread in batch order, exactly-once by `(thread, client_id)` through the same
//! [`BatchPlan`], unique usernames, membership), plus switches a test uses to make it fail the
//! way a real database does (down, one failed batch, a message the database refuses).

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex, MutexGuard},
};

use async_trait::async_trait;

use super::{
    InsertOutcome, Message, NewMessage, Page, StoreError, Thread, User,
    accounts::{
        AccessChange, AccessOutcome, Account, AccountLink, NewAccount, Registered, SessionRow,
    },
    lifecycle::{
        ExportedMessage, ImportedThread, ListedThread, MemberFlags, SearchHit, SearchQuery,
        ThreadChange, ThreadMember,
    },
    personas::{PersonaChange, PersonaSnapshot},
    sso::{SsoIdentity, SsoPending},
    store::{SharedStore, Store},
    usage::{BudgetRow, Counter, PeriodLimit, UsageGroup, UsageQuery},
    versions::Regeneration,
};

mod accounts;
mod faults;
mod messages;
mod personas;
mod sso;
mod threads;
mod usage;

use faults::Faults;
pub use faults::{Failure, alices_thread, user_message};

type Result<T> = std::result::Result<T, StoreError>;

mod lifecycle;
mod versions;

#[derive(Default)]
struct Data {
    /// By username key, with the creation time.
    users: HashMap<String, (User, i64)>,
    sessions: HashMap<String, Session>,
    links: Vec<AccountLink>,
    threads: HashMap<String, StoredThread>,
    /// Soft-deleted threads, with when: invisible to everything but the purge.
    deleted: HashMap<String, (StoredThread, i64)>,
    /// `(user, content hash)` -> imported thread.
    imports: HashMap<(String, String), String>,
    kv: HashMap<String, String>,
    sso: sso::Data,
    personas: crate::db::personas::PersonaSnapshot,
    /// Context summaries by `(thread, agent)`.
    summaries: HashMap<(String, String), crate::db::summaries::ContextSummary>,
    /// Regenerate requests by `(thread, client_id)`.
    regenerations: HashMap<(String, String), Regeneration>,
    /// Limit rows by user id (`*`: the default).
    budgets: HashMap<String, (Option<i64>, Option<i64>)>,
    /// Budget counters by `(user, period)`.
    counters: HashMap<(String, String), super::usage::Counter>,
}

struct Session {
    row: SessionRow,
    revoked_at: Option<i64>,
}

struct StoredThread {
    thread: Thread,
    last_activity: i64,
    members: BTreeMap<String, i64>,
    /// By seq.
    messages: BTreeMap<i64, Message>,
    by_client_id: HashMap<String, i64>,
    /// Each member's own `(archived_at, pinned_at)`.
    flags: HashMap<String, (Option<i64>, Option<i64>)>,
}

/// The fake. Cheap to share: every test handle is an `Arc`.
#[derive(Default)]
pub struct MemoryStore {
    data: Mutex<Data>,
    faults: Mutex<Faults>,
    /// Sizes of the batches committed, in commit order.
    batches: Mutex<Vec<usize>>,
}

impl MemoryStore {
    pub fn new() -> Arc<MemoryStore> {
        Arc::new(MemoryStore::default())
    }

    /// A fake holding these threads (owned by `alice`).
    pub async fn with_threads(ids: &[&str]) -> Arc<MemoryStore> {
        let store = MemoryStore::new();
        for id in ids {
            store
                .create_thread(&alices_thread(id), 1)
                .await
                .expect("a new thread");
        }
        store
    }

    /// The same store as a [`SharedStore`].
    pub fn shared(self: &Arc<Self>) -> SharedStore {
        self.clone()
    }

    /// While down, every operation fails with `Unavailable`.
    pub fn set_down(&self, down: bool) {
        self.faults().down = down;
    }

    /// The next batch fails with `failure` (queue several to fail several).
    pub fn fail_next_batch(&self, failure: Failure) {
        self.faults().failing_batches.push(failure);
    }

    /// Any batch holding a message with this body fails with `Other`.
    pub fn refuse_body(&self, body: &str) {
        self.faults().refused_body = Some(body.to_string());
    }

    /// Sizes of the batches committed so far.
    pub fn batches(&self) -> Vec<usize> {
        self.batches
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Every message of `thread`, by seq.
    pub fn all_messages(&self, thread: &str) -> Vec<Message> {
        self.data()
            .threads
            .get(thread)
            .map(|t| t.messages.values().cloned().collect())
            .unwrap_or_default()
    }

    fn data(&self) -> MutexGuard<'_, Data> {
        self.data.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn faults(&self) -> MutexGuard<'_, Faults> {
        self.faults.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn check(&self) -> Result<()> {
        if self.faults().down {
            return Err(Failure::Unavailable.error());
        }
        Ok(())
    }

    fn check_batch(&self, batch: &[NewMessage]) -> Result<()> {
        let mut faults = self.faults();
        if faults.down {
            return Err(Failure::Unavailable.error());
        }
        if !faults.failing_batches.is_empty() {
            return Err(faults.failing_batches.remove(0).error());
        }
        if let Some(body) = &faults.refused_body
            && batch.iter().any(|m| &m.body == body)
        {
            return Err(Failure::Other.error());
        }
        Ok(())
    }
}

#[async_trait]
impl Store for MemoryStore {
    fn backend_name(&self) -> &'static str {
        "memory"
    }

    async fn migrate(&self) -> Result<()> {
        self.check()
    }

    async fn close(&self) {}

    async fn ping(&self) -> Result<()> {
        self.check()
    }

    async fn kv_get_or_insert(&self, key: &str, candidate: &str) -> Result<String> {
        self.check()?;
        let mut data = self.data();
        Ok(data
            .kv
            .entry(key.to_string())
            .or_insert_with(|| candidate.to_string())
            .clone())
    }

    async fn user_by_key(&self, key: &str) -> Result<Option<User>> {
        self.check()?;
        Ok(self.data().users.get(key).map(|(u, _)| u.clone()))
    }

    async fn create_session(&self, id: &str, user: &str, now: i64, expires: i64) -> Result<()> {
        accounts::create_session_row(
            self,
            &SessionRow {
                id: id.into(),
                user_id: user.into(),
                kind: super::accounts::KIND_SESSION.into(),
                name: None,
                scope: None,
                token_hash: None,
                created_at: now,
                expires_at: expires,
            },
        )
    }

    async fn revoke_session(&self, id: &str, now: i64) -> Result<()> {
        self.check()?;
        if let Some(s) = self.data().sessions.get_mut(id) {
            s.revoked_at.get_or_insert(now);
        }
        Ok(())
    }

    async fn revoked_since(&self, since: i64, now: i64) -> Result<Vec<(String, i64, i64)>> {
        self.check()?;
        Ok(self
            .data()
            .sessions
            .iter()
            .filter_map(|(id, s)| Some((id.clone(), s.revoked_at?, s.row.expires_at)))
            .filter(|(_, revoked, expires)| *revoked >= since && *expires > now)
            .collect())
    }

    // ---- Threads and members: in `memory/threads.rs` ----------------------------------------

    async fn create_thread(&self, thread: &Thread, now: i64) -> Result<()> {
        self.create_thread_data(thread, now)
    }

    async fn thread(&self, id: &str) -> Result<Option<Thread>> {
        self.thread_data(id)
    }

    async fn threads_for_user(&self, user_id: &str) -> Result<Vec<Thread>> {
        self.threads_for_user_data(user_id)
    }

    async fn members(&self, thread_id: &str) -> Result<Vec<String>> {
        self.members_data(thread_id)
    }

    async fn memberships(&self, user_id: &str) -> Result<Vec<String>> {
        self.memberships_data(user_id)
    }

    async fn add_member(&self, thread_id: &str, user_id: &str, now: i64) -> Result<()> {
        self.add_member_data(thread_id, user_id, now)
    }

    // ---- Messages: in `memory/messages.rs` ----------------------------------------------------

    async fn messages(&self, thread_id: &str, page: Page, limit: i64) -> Result<Vec<Message>> {
        self.messages_data(thread_id, page, limit)
    }

    async fn message_by_client_id(
        &self,
        thread_id: &str,
        client_id: &str,
    ) -> Result<Option<Message>> {
        self.message_by_client_id_data(thread_id, client_id)
    }

    async fn insert_messages(&self, batch: &[NewMessage]) -> Result<Vec<InsertOutcome>> {
        self.insert_messages_data(batch)
    }

    // ---- Thread lifecycle, members, search, export and import (issue 17) ----

    async fn thread_list(&self, user_id: &str, archived: bool) -> Result<Vec<ListedThread>> {
        self.thread_list_data(user_id, archived)
    }

    async fn member_flags(&self, thread_id: &str, user_id: &str) -> Result<Option<(bool, bool)>> {
        self.member_flags_data(thread_id, user_id)
    }

    async fn update_thread(
        &self,
        thread_id: &str,
        change: &ThreadChange,
    ) -> Result<Option<Thread>> {
        self.update_thread_data(thread_id, change)
    }

    async fn set_member_flags(
        &self,
        thread_id: &str,
        user_id: &str,
        flags: MemberFlags,
        now: i64,
    ) -> Result<bool> {
        self.set_member_flags_data(thread_id, user_id, flags, now)
    }

    async fn delete_thread(&self, thread_id: &str, now: i64) -> Result<Option<i64>> {
        self.delete_thread_data(thread_id, now)
    }

    async fn purge_deleted(&self, before: i64) -> Result<u64> {
        self.purge_deleted_data(before)
    }

    async fn thread_members(&self, thread_id: &str) -> Result<Vec<ThreadMember>> {
        self.thread_members_data(thread_id)
    }

    async fn remove_member(&self, thread_id: &str, user_id: &str) -> Result<bool> {
        self.check()?;
        let mut data = self.data();
        Ok(data
            .threads
            .get_mut(thread_id)
            .is_some_and(|t| t.members.remove(user_id).is_some()))
    }

    /// Every word must occur in the body, case-insensitively (no stemming, no ranking).
    async fn search(&self, q: &SearchQuery) -> Result<Vec<SearchHit>> {
        self.search_data(q)
    }

    async fn export_messages(&self, thread_id: &str) -> Result<Vec<ExportedMessage>> {
        self.export_messages_data(thread_id)
    }

    async fn imported_thread(&self, user_id: &str, content_hash: &str) -> Result<Option<String>> {
        self.check()?;
        let data = self.data();
        Ok(data
            .imports
            .get(&(user_id.to_string(), content_hash.to_string()))
            .filter(|t| data.threads.contains_key(*t))
            .cloned())
    }

    async fn import_thread(&self, import: &ImportedThread, now: i64) -> Result<()> {
        self.import_thread_data(import, now)
    }

    // ---- Accounts and access (issue #15): in `memory/accounts.rs` -----------------------------

    async fn register_user(&self, account: &NewAccount) -> Result<Registered> {
        accounts::register(self, account)
    }

    async fn user_by_id(&self, id: &str) -> Result<Option<User>> {
        accounts::user_by_id(self, id)
    }

    async fn accounts(&self) -> Result<Vec<Account>> {
        accounts::accounts(self)
    }

    async fn set_access(&self, user_id: &str, change: AccessChange) -> Result<AccessOutcome> {
        accounts::set_access(self, user_id, change)
    }

    async fn set_password(&self, user_id: &str, password_hash: &str) -> Result<bool> {
        accounts::set_password(self, user_id, password_hash)
    }

    async fn create_session_row(&self, row: &SessionRow) -> Result<()> {
        accounts::create_session_row(self, row)
    }

    async fn sessions_of(&self, user_id: &str, kind: &str, now: i64) -> Result<Vec<SessionRow>> {
        accounts::sessions_of(self, user_id, kind, now)
    }

    async fn revoke_sessions_of(
        &self,
        user_id: &str,
        kind: Option<&str>,
        keep: Option<&str>,
        now: i64,
    ) -> Result<Vec<(String, i64)>> {
        accounts::revoke_sessions_of(self, user_id, kind, keep, now)
    }

    async fn revoke_session_of(
        &self,
        user_id: &str,
        id: &str,
        kind: &str,
        now: i64,
    ) -> Result<Option<i64>> {
        accounts::revoke_session_of(self, user_id, id, kind, now)
    }

    async fn create_link(&self, link: &AccountLink) -> Result<()> {
        accounts::create_link(self, link)
    }

    async fn open_links(&self, purpose: &str, now: i64) -> Result<Vec<AccountLink>> {
        accounts::open_links(self, purpose, now)
    }

    async fn revoke_link(&self, id: &str, purpose: &str, now: i64) -> Result<bool> {
        accounts::revoke_link(self, id, purpose, now)
    }

    async fn use_reset_link(
        &self,
        token_hash: &str,
        password_hash: &str,
        now: i64,
    ) -> Result<Option<String>> {
        accounts::use_reset_link(self, token_hash, password_hash, now)
    }

    async fn put_sso_pending(&self, p: &SsoPending) -> Result<()> {
        sso::put_pending(self, p)
    }

    async fn take_sso_pending(&self, k: &str, key: &str, now: i64) -> Result<Option<SsoPending>> {
        sso::take_pending(self, k, key, now)
    }

    async fn sso_user(&self, issuer: &str, subject: &str) -> Result<Option<User>> {
        sso::user(self, issuer, subject)
    }

    async fn register_sso_user(&self, a: &NewAccount, id: &SsoIdentity) -> Result<Registered> {
        sso::register(self, a, id)
    }

    async fn message_by_id(&self, thread_id: &str, id: &str) -> Result<Option<Message>> {
        self.message_by_id_data(thread_id, id)
    }

    async fn claim_regeneration(&self, claim: &Regeneration) -> Result<Regeneration> {
        self.claim_regeneration_data(claim)
    }

    async fn personas_version(&self) -> Result<i64> {
        personas::version(self)
    }

    async fn personas(&self) -> Result<PersonaSnapshot> {
        personas::snapshot(self)
    }

    async fn change_personas(&self, change: &PersonaChange) -> Result<bool> {
        personas::change(self, change)
    }

    async fn context_summary(
        &self,
        thread_id: &str,
        agent_id: &str,
    ) -> Result<Option<crate::db::summaries::ContextSummary>> {
        self.check()?;
        let key = (thread_id.to_string(), agent_id.to_string());
        Ok(self.data().summaries.get(&key).cloned())
    }

    async fn put_context_summary(
        &self,
        summary: &crate::db::summaries::ContextSummary,
    ) -> Result<()> {
        self.check()?;
        let key = (summary.thread_id.clone(), summary.agent_id.clone());
        let mut data = self.data();
        let newer = data
            .summaries
            .get(&key)
            .is_none_or(|s| s.through_seq < summary.through_seq);
        if newer {
            data.summaries.insert(key, summary.clone());
        }
        Ok(())
    }

    async fn usage(&self, query: &UsageQuery) -> Result<Vec<UsageGroup>> {
        usage::usage(self, query)
    }

    async fn budget_rows(&self, user_id: Option<&str>) -> Result<Vec<BudgetRow>> {
        usage::budget_rows(self, user_id)
    }

    async fn set_budget(
        &self,
        user_id: &str,
        daily: Option<i64>,
        monthly: Option<i64>,
        _now: i64,
    ) -> Result<()> {
        usage::set_budget(self, user_id, daily, monthly)
    }

    async fn delete_budget(&self, user_id: &str) -> Result<bool> {
        usage::delete_budget(self, user_id)
    }

    async fn reserve_usage(
        &self,
        user_id: &str,
        periods: &[PeriodLimit],
        tokens: i64,
    ) -> Result<Option<String>> {
        usage::reserve(self, user_id, periods, tokens)
    }

    async fn settle_usage(
        &self,
        user_id: &str,
        periods: &[String],
        reserved: i64,
        used: i64,
    ) -> Result<()> {
        usage::settle(self, user_id, periods, reserved, used)
    }

    async fn usage_counters(&self, user_id: &str, periods: &[String]) -> Result<Vec<Counter>> {
        usage::counters(self, user_id, periods)
    }
}
