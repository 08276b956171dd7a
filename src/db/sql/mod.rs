//! The SQL backends: one generic [`SqlStore`] over `sqlx::Database` implements [`Store`] for
//! SQLite and PostgreSQL with the SQL written once (both engines accept `$N` parameters,
//! `RETURNING` and `ON CONFLICT`); what differs (connection options, how the group commit
//! begins, its idempotency lookup and multi-row insert, the migrations) is the [`Dialect`] of
//! each engine, in `dialect`.

mod accounts;
mod checkpoint;
mod conn;
mod dialect;
mod documents;
mod embeddings;
mod lifecycle;
mod memories;
mod messages;
mod personas;
mod search;
mod search_scope;
mod sqlite_batch;
mod sso;
mod summaries;
mod threads;
mod usage;
mod versions;

use async_trait::async_trait;
use sqlx::{ColumnIndex, Decode, Encode, Executor, IntoArguments, Pool, Row, Type};

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
    store::Store,
    usage::{BudgetRow, Counter, PeriodLimit, UsageGroup, UsageQuery},
    versions::Regeneration,
};
pub(crate) use dialect::{Dialect, open_postgres, open_sqlite};
pub(crate) use messages::message_row;
use threads::thread_row;

type Result<T> = std::result::Result<T, StoreError>;

/// One engine's connection pool; the queries are the same for both engines.
pub struct SqlStore<DB: sqlx::Database> {
    pool: Pool<DB>,
    /// Where the message writer's batches run. PostgreSQL: the pool. SQLite: a pool of one
    /// connection of its own, so its page cache stays warm: SQLite drops a connection's whole
    /// cache when another connection has written since its last transaction, and the pool lends
    /// its connections in turn, so every batch used to start on a cold cache (reading back the
    /// index pages the previous batch wrote, on another connection).
    writer: Pool<DB>,
    /// Behind a transaction-mode pooler (`database.pooler = "transaction"`): every operation
    /// runs in an explicit transaction, its statements unnamed (not cached per connection).
    pooled: bool,
    /// Where migrations run when the pool goes through a pooler (PostgreSQL itself).
    direct_url: Option<String>,
    /// Stops the store's own background work (SQLite's checkpointer) on close or drop.
    stop: tokio_util::sync::CancellationToken,
}

impl<DB: sqlx::Database> Drop for SqlStore<DB> {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl<DB: sqlx::Database> SqlStore<DB> {
    /// A store on `pool`, its message writer's batches on `writer` (`SqlStore::writer`).
    fn new(pool: Pool<DB>, writer: Pool<DB>) -> Self {
        SqlStore {
            writer,
            pool,
            pooled: false,
            direct_url: None,
            stop: Default::default(),
        }
    }
}

#[async_trait]
impl<DB> Store for SqlStore<DB>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    for<'q> &'q str: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> String: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> bool: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> Option<&'q str>: Encode<'q, DB> + Type<DB>,
    for<'q> Option<String>: Encode<'q, DB> + Type<DB>,
    for<'q> Option<i64>: Encode<'q, DB> + Type<DB>,
    for<'q> &'q [u8]: Encode<'q, DB> + Type<DB>,
    for<'q> Vec<u8>: Decode<'q, DB> + Type<DB>,
    for<'q> f64: Decode<'q, DB> + Type<DB>,
    usize: ColumnIndex<DB::Row>,
{
    fn backend_name(&self) -> &'static str {
        DB::BACKEND
    }

    async fn migrate(&self) -> Result<()> {
        match &self.direct_url {
            Some(url) => DB::migrate_at(url).await,
            None => DB::migrate(&self.pool).await,
        }
    }

    async fn close(&self) {
        self.stop.cancel();
        self.writer.close().await;
        self.pool.close().await
    }

    async fn ping(&self) -> Result<()> {
        self.execute(self.q("SELECT 1")).await
    }

    async fn kv_get_or_insert(&self, key: &str, candidate: &str) -> Result<String> {
        let mut c = self.conn().await?;
        self.q("INSERT INTO kv (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING")
            .bind(key)
            .bind(candidate)
            .execute(c.get())
            .await?;
        let row = self
            .q("SELECT value FROM kv WHERE key = $1")
            .bind(key)
            .fetch_one(c.get())
            .await?;
        c.done().await?;
        Ok(row.try_get(0)?)
    }

    async fn user_by_key(&self, key: &str) -> Result<Option<User>> {
        self.user_by("username_key", key).await
    }

    async fn create_session(&self, id: &str, user_id: &str, now: i64, expires: i64) -> Result<()> {
        self.execute(
            self.q(
                "INSERT INTO sessions (id, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4)",
            )
            .bind(id)
            .bind(user_id)
            .bind(now)
            .bind(expires),
        )
        .await
    }

    async fn revoke_session(&self, id: &str, now: i64) -> Result<()> {
        self.execute(
            self.q("UPDATE sessions SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL")
                .bind(id)
                .bind(now),
        )
        .await
    }

    async fn revoked_since(&self, since: i64, now: i64) -> Result<Vec<(String, i64, i64)>> {
        let rows = self
            .fetch_all(
                self.q("SELECT id, revoked_at, expires_at FROM sessions \
                    WHERE revoked_at IS NOT NULL AND revoked_at >= $1 AND expires_at > $2")
                    .bind(since)
                    .bind(now),
            )
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
            .collect()
    }

    // ---- Threads and members: the SQL is in `sql/threads.rs` ---------------------------------

    async fn create_thread(&self, thread: &Thread, now: i64) -> Result<()> {
        self.create_thread_sql(thread, now).await
    }

    async fn thread(&self, id: &str) -> Result<Option<Thread>> {
        self.thread_sql(id).await
    }

    async fn threads_for_user(&self, user_id: &str) -> Result<Vec<Thread>> {
        self.threads_for_user_sql(user_id).await
    }

    async fn members(&self, thread_id: &str) -> Result<Vec<String>> {
        self.members_sql(thread_id).await
    }

    async fn memberships(&self, user_id: &str) -> Result<Vec<String>> {
        self.memberships_sql(user_id).await
    }

    async fn add_member(&self, thread_id: &str, user_id: &str, now: i64) -> Result<()> {
        self.add_member_sql(thread_id, user_id, now).await
    }

    // ---- Messages: the SQL is in `sql/messages.rs` --------------------------------------------

    async fn messages(&self, thread_id: &str, page: Page, limit: i64) -> Result<Vec<Message>> {
        self.messages_sql(thread_id, page, limit).await
    }

    async fn message_by_client_id(
        &self,
        thread_id: &str,
        client_id: &str,
    ) -> Result<Option<Message>> {
        self.message_by_client_id_sql(thread_id, client_id).await
    }

    async fn insert_messages(&self, batch: &[NewMessage]) -> Result<Vec<InsertOutcome>> {
        self.insert_messages_sql(batch).await
    }

    // ---- Thread lifecycle, members, search, export and import (issue 17): `lifecycle.rs` ----

    async fn thread_list(&self, user_id: &str, archived: bool) -> Result<Vec<ListedThread>> {
        self.do_thread_list(user_id, archived).await
    }

    async fn member_flags(&self, thread_id: &str, user_id: &str) -> Result<Option<(bool, bool)>> {
        self.do_member_flags(thread_id, user_id).await
    }

    async fn update_thread(
        &self,
        thread_id: &str,
        change: &ThreadChange,
    ) -> Result<Option<Thread>> {
        self.do_update_thread(thread_id, change).await
    }

    async fn set_member_flags(
        &self,
        thread_id: &str,
        user_id: &str,
        flags: MemberFlags,
        now: i64,
    ) -> Result<bool> {
        self.do_set_member_flags(thread_id, user_id, flags, now)
            .await
    }

    async fn delete_thread(&self, thread_id: &str, now: i64) -> Result<Option<i64>> {
        self.do_delete_thread(thread_id, now).await
    }

    async fn purge_deleted(&self, before: i64) -> Result<u64> {
        self.do_purge_deleted(before).await
    }

    async fn thread_members(&self, thread_id: &str) -> Result<Vec<ThreadMember>> {
        self.do_thread_members(thread_id).await
    }

    async fn remove_member(&self, thread_id: &str, user_id: &str) -> Result<bool> {
        self.do_remove_member(thread_id, user_id).await
    }

    async fn search(&self, query: &SearchQuery) -> Result<Vec<SearchHit>> {
        DB::search(&self.pool, query, !self.pooled).await
    }

    async fn export_messages(&self, thread_id: &str) -> Result<Vec<ExportedMessage>> {
        self.do_export_messages(thread_id).await
    }

    async fn imported_thread(&self, user_id: &str, content_hash: &str) -> Result<Option<String>> {
        self.do_imported_thread(user_id, content_hash).await
    }

    async fn import_thread(&self, import: &ImportedThread, now: i64) -> Result<()> {
        self.do_import_thread(import, now).await
    }
    // ---- Accounts and access (issue #15): the SQL is in `sql/accounts.rs` ---------------------

    async fn register_user(&self, account: &NewAccount) -> Result<Registered> {
        self.register_user_sql(account).await
    }

    async fn user_by_id(&self, id: &str) -> Result<Option<User>> {
        self.user_by("id", id).await
    }

    async fn accounts(&self) -> Result<Vec<Account>> {
        self.accounts_sql().await
    }

    async fn set_access(&self, user_id: &str, change: AccessChange) -> Result<AccessOutcome> {
        self.set_access_sql(user_id, change).await
    }

    async fn set_password(&self, user_id: &str, password_hash: &str) -> Result<bool> {
        self.set_password_sql(user_id, password_hash).await
    }

    async fn create_session_row(&self, row: &SessionRow) -> Result<()> {
        self.create_session_row_sql(row).await
    }

    async fn sessions_of(&self, user_id: &str, kind: &str, now: i64) -> Result<Vec<SessionRow>> {
        self.sessions_of_sql(user_id, kind, now).await
    }

    async fn revoke_sessions_of(
        &self,
        user_id: &str,
        kind: Option<&str>,
        keep: Option<&str>,
        now: i64,
    ) -> Result<Vec<(String, i64)>> {
        self.revoke_sessions_of_sql(user_id, kind, keep, now).await
    }

    async fn revoke_session_of(
        &self,
        user_id: &str,
        id: &str,
        kind: &str,
        now: i64,
    ) -> Result<Option<i64>> {
        self.revoke_session_of_sql(user_id, id, kind, now).await
    }

    async fn create_link(&self, link: &AccountLink) -> Result<()> {
        self.create_link_sql(link).await
    }

    async fn open_links(&self, purpose: &str, now: i64) -> Result<Vec<AccountLink>> {
        self.open_links_sql(purpose, now).await
    }

    async fn revoke_link(&self, id: &str, purpose: &str, now: i64) -> Result<bool> {
        self.revoke_link_sql(id, purpose, now).await
    }

    async fn use_reset_link(
        &self,
        token_hash: &str,
        password_hash: &str,
        now: i64,
    ) -> Result<Option<String>> {
        self.use_reset_link_sql(token_hash, password_hash, now)
            .await
    }
    // ---- Single sign-on: the SQL is in `sql/sso.rs` --------------------------------------------

    async fn put_sso_pending(&self, p: &SsoPending) -> Result<()> {
        self.put_sso_pending_sql(p).await
    }

    async fn take_sso_pending(
        &self,
        kind: &str,
        key: &str,
        now: i64,
    ) -> Result<Option<SsoPending>> {
        self.take_sso_pending_sql(kind, key, now).await
    }

    async fn sso_user(&self, issuer: &str, subject: &str) -> Result<Option<User>> {
        self.sso_user_sql(issuer, subject).await
    }

    async fn register_sso_user(&self, a: &NewAccount, id: &SsoIdentity) -> Result<Registered> {
        self.register_sso_user_sql(a, id).await
    }

    async fn message_by_id(&self, thread_id: &str, id: &str) -> Result<Option<Message>> {
        self.do_message_by_id(thread_id, id).await
    }

    async fn claim_regeneration(&self, claim: &Regeneration) -> Result<Regeneration> {
        self.do_claim_regeneration(claim).await
    }

    async fn personas_version(&self) -> Result<i64> {
        self.personas_version_sql().await
    }

    async fn personas(&self) -> Result<PersonaSnapshot> {
        self.personas_sql().await
    }

    async fn context_summary(
        &self,
        thread_id: &str,
        agent_id: &str,
    ) -> Result<Option<crate::db::summaries::ContextSummary>> {
        self.context_summary_sql(thread_id, agent_id).await
    }

    async fn put_context_summary(
        &self,
        summary: &crate::db::summaries::ContextSummary,
    ) -> Result<()> {
        self.put_context_summary_sql(summary).await
    }

    async fn change_personas(&self, change: &PersonaChange) -> Result<bool> {
        self.change_personas_sql(change).await
    }

    async fn usage(&self, query: &UsageQuery) -> Result<Vec<UsageGroup>> {
        self.usage_sql(query).await
    }

    async fn budget_rows(&self, user_id: Option<&str>) -> Result<Vec<BudgetRow>> {
        self.budget_rows_sql(user_id).await
    }

    async fn set_budget(
        &self,
        user_id: &str,
        daily: Option<i64>,
        monthly: Option<i64>,
        now: i64,
    ) -> Result<()> {
        self.set_budget_sql(user_id, daily, monthly, now).await
    }

    async fn delete_budget(&self, user_id: &str) -> Result<bool> {
        self.delete_budget_sql(user_id).await
    }

    async fn reserve_usage(
        &self,
        user_id: &str,
        periods: &[PeriodLimit],
        tokens: i64,
    ) -> Result<Option<String>> {
        self.reserve_sql(user_id, periods, tokens).await
    }

    async fn settle_usage(
        &self,
        user_id: &str,
        periods: &[String],
        reserved: i64,
        used: i64,
    ) -> Result<()> {
        self.settle_sql(user_id, periods, reserved, used).await
    }

    async fn usage_counters(&self, user_id: &str, periods: &[String]) -> Result<Vec<Counter>> {
        self.counters_sql(user_id, periods).await
    }

    fn documents(&self) -> Option<&dyn crate::db::documents::DocumentStore> {
        Some(self)
    }

    fn memories(&self) -> Option<&dyn crate::db::memories::MemoriesStore> {
        Some(self)
    }

    fn embeddings(&self) -> Option<&dyn crate::db::embeddings::EmbeddingStore> {
        Some(self)
    }
}

/// Keeps the column lists and the queries that spell them out in step.
#[cfg(test)]
mod tests;
