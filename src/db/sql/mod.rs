//! The SQL backends: one generic [`SqlStore`] over `sqlx::Database` implements [`Store`] for
//! SQLite and PostgreSQL with the SQL written once (both engines accept `$N` parameters,
//! `RETURNING` and `ON CONFLICT`); what differs (connection options, how the group commit
//! begins, its idempotency lookup and multi-row insert, the migrations) is the [`Dialect`] of
//! each engine, in `dialect`.

mod accounts;
mod dialect;
mod lifecycle;
mod personas;
mod search;
mod search_scope;
mod sso;
mod usage;
mod versions;

use async_trait::async_trait;
use sqlx::{ColumnIndex, Decode, Encode, Executor, IntoArguments, Pool, Row, Type};

use super::{
    Author, InsertOutcome, Message, MessageMeta, NewMessage, Page, StoreError, Thread, User,
    accounts::{
        AccessChange, AccessOutcome, Account, AccountLink, NewAccount, Registered, SessionRow,
    },
    batch::{self, BatchPlan},
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

type Result<T> = std::result::Result<T, StoreError>;

/// One engine's connection pool; the queries are the same for both engines.
pub struct SqlStore<DB: sqlx::Database> {
    pool: Pool<DB>,
    /// Behind a transaction-mode pooler (`database.pooler = "transaction"`): every operation
    /// runs in an explicit transaction, its statements unnamed (not cached per connection).
    pooled: bool,
    /// Where migrations run when the pool goes through a pooler (PostgreSQL itself).
    direct_url: Option<String>,
}

impl<DB: sqlx::Database> SqlStore<DB> {
    fn new(pool: Pool<DB>) -> Self {
        SqlStore {
            pool,
            pooled: false,
            direct_url: None,
        }
    }
}

impl<DB: Dialect> SqlStore<DB> {
    /// A query as this store runs it: prepared once per connection and cached, except behind
    /// a transaction-mode pooler, where the next transaction may run on another server
    /// connection that never saw the statement (the unnamed statement lives one transaction).
    fn q(&self, sql: &'static str) -> sqlx::query::Query<'static, DB, DB::Arguments> {
        sqlx::query(sql).persistent(!self.pooled)
    }

    /// A connection for one operation; finish it with [`Conn::done`].
    async fn conn(&self) -> Result<Conn<DB>> {
        Ok(if self.pooled {
            Conn::Tx(self.pool.begin().await?)
        } else {
            Conn::Plain(self.pool.acquire().await?)
        })
    }
}

/// A connection for one operation: straight from the pool, or, behind a transaction-mode
/// pooler, a transaction, the only span for which the pooler keeps one server connection ours
/// (a statement is parsed and executed in two round trips, which must reach the same server).
/// Dropped without [`Conn::done`] (an error), the transaction rolls back.
enum Conn<DB: sqlx::Database> {
    Plain(sqlx::pool::PoolConnection<DB>),
    Tx(sqlx::Transaction<'static, DB>),
}

impl<DB: sqlx::Database> Conn<DB> {
    fn get(&mut self) -> &mut DB::Connection {
        match self {
            Conn::Plain(c) => c,
            Conn::Tx(t) => t,
        }
    }

    async fn done(self) -> Result<()> {
        if let Conn::Tx(t) = self {
            t.commit().await?;
        }
        Ok(())
    }
}

// Every query that reads messages selects the columns in the order `message_row` reads them,
// and every query that reads threads those `thread_row` reads (the tests below hold them to it).

/// History pages. `Latest` is `Before(i64::MAX)`.
const MESSAGES_AFTER: &str = "SELECT id, thread_id, seq, client_id, author_kind, author_id, \
     author_name, body, created_at, status, prompt_tokens, completion_tokens, meta FROM messages \
     WHERE thread_id = $1 AND seq > $2 ORDER BY seq ASC LIMIT $3";
const MESSAGES_BEFORE: &str = "SELECT id, thread_id, seq, client_id, author_kind, author_id, \
     author_name, body, created_at, status, prompt_tokens, completion_tokens, meta FROM messages \
     WHERE thread_id = $1 AND seq < $2 ORDER BY seq DESC LIMIT $3";
const MESSAGE_BY_CLIENT_ID: &str = "SELECT id, thread_id, seq, client_id, author_kind, author_id, \
     author_name, body, created_at, status, prompt_tokens, completion_tokens, meta FROM messages WHERE thread_id = $1 AND client_id = $2";
/// Reserve a block of `$2` seqs in thread `$1` (the row lock orders concurrent writers).
const RESERVE_SEQS: &str = "UPDATE threads SET last_seq = last_seq + $2, last_activity = $3 \
     WHERE id = $1 AND deleted_at IS NULL RETURNING last_seq";
const THREAD_BY_ID: &str = "SELECT id, title, owner_id, agents, created_at, last_seq FROM threads WHERE id = $1 \
     AND deleted_at IS NULL";
const THREADS_FOR_USER: &str = "SELECT t.id, t.title, t.owner_id, t.agents, t.created_at, \
     t.last_seq FROM threads t JOIN thread_members m ON m.thread_id = t.id \
     WHERE m.user_id = $1 AND t.deleted_at IS NULL ORDER BY t.last_activity DESC, t.id DESC";

/// Read a message row (`id, thread_id, seq, client_id, author_kind, author_id, author_name,
/// body, created_at, status, prompt_tokens, completion_tokens, meta`).
pub(crate) fn message_row<R>(row: &R) -> Result<Message>
where
    R: Row,
    usize: ColumnIndex<R>,
    for<'r> &'r str: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(Message {
        id: row.try_get(0)?,
        thread_id: row.try_get(1)?,
        seq: row.try_get(2)?,
        client_id: row.try_get(3)?,
        author: Author {
            kind: super::author_kind(row.try_get::<&str, _>(4)?),
            id: row.try_get(5)?,
            name: row.try_get(6)?,
        },
        body: row.try_get(7)?,
        created_at: row.try_get(8)?,
        status: row.try_get(9)?,
        prompt_tokens: row.try_get(10)?,
        completion_tokens: row.try_get(11)?,
        meta: MessageMeta::from_column(row.try_get::<Option<String>, _>(12)?.as_deref())
            .map(Box::new),
    })
}

/// Read a thread row (`id, title, owner_id, agents, created_at, last_seq`).
fn thread_row<R>(row: &R) -> Result<Thread>
where
    R: Row,
    usize: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
{
    let agents: String = row.try_get(3)?;
    Ok(Thread {
        id: row.try_get(0)?,
        title: row.try_get(1)?,
        owner_id: row.try_get(2)?,
        agents: serde_json::from_str(&agents).unwrap_or_default(),
        created_at: row.try_get(4)?,
        last_seq: row.try_get(5)?,
    })
}

/// Store a batch in one transaction (group commit); each new message gets the next `seq` of its
/// thread, in batch order. A handful of statements per batch: one idempotency lookup and one
/// `last_seq` bump per thread, then multi-row inserts.
async fn insert_batch<DB>(
    conn: &mut DB::Connection,
    batch: &[NewMessage],
    persistent: bool,
) -> Result<Vec<InsertOutcome>>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    for<'q> &'q str: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    usize: ColumnIndex<DB::Row>,
{
    // The batch reads (idempotency lookup) before it writes: on SQLite it must hold the write
    // lock from the start, or a commit by another connection in between fails it with
    // BUSY_SNAPSHOT, which no busy timeout waits out.
    let mut tx = sqlx::Connection::begin_with(conn, DB::BEGIN_WRITE).await?;
    let mut already = Vec::new();
    for (thread, idxs) in &batch::by_thread(batch) {
        for chunk in idxs.chunks(500) {
            let ids: Vec<&str> = chunk.iter().map(|i| batch[*i].client_id.as_str()).collect();
            already.extend(DB::stored_client_ids(&mut tx, thread, &ids, persistent).await?);
        }
    }
    let mut plan = BatchPlan::new(batch, already);
    let now = batch.iter().map(|m| m.created_at).max().unwrap_or(0);
    for (thread, count) in plan.fresh_counts() {
        let row = sqlx::query(RESERVE_SEQS)
            .persistent(persistent)
            .bind(thread)
            .bind(count)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?;
        let last = row.map(|r| r.try_get::<i64, _>(0)).transpose()?;
        plan.reserved(thread, last);
    }
    for chunk in plan.rows().chunks(1000) {
        DB::insert_rows(&mut tx, chunk, persistent).await?;
    }
    tx.commit().await?;
    Ok(plan.outcomes())
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
        self.pool.close().await
    }

    async fn ping(&self) -> Result<()> {
        let mut c = self.conn().await?;
        self.q("SELECT 1").execute(c.get()).await?;
        c.done().await
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
        let mut c = self.conn().await?;
        self.q(
            "INSERT INTO sessions (id, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(id)
        .bind(user_id)
        .bind(now)
        .bind(expires)
        .execute(c.get())
        .await?;
        c.done().await
    }

    async fn revoke_session(&self, id: &str, now: i64) -> Result<()> {
        let mut c = self.conn().await?;
        self.q("UPDATE sessions SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL")
            .bind(id)
            .bind(now)
            .execute(c.get())
            .await?;
        c.done().await
    }

    async fn revoked_since(&self, since: i64, now: i64) -> Result<Vec<(String, i64, i64)>> {
        let mut c = self.conn().await?;
        let rows = self
            .q("SELECT id, revoked_at, expires_at FROM sessions \
                WHERE revoked_at IS NOT NULL AND revoked_at >= $1 AND expires_at > $2")
            .bind(since)
            .bind(now)
            .fetch_all(c.get())
            .await?;
        c.done().await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
            .collect()
    }

    async fn create_thread(&self, thread: &Thread, now: i64) -> Result<()> {
        let agents = serde_json::to_string(&thread.agents).unwrap_or_else(|_| "[]".into());
        let mut tx = self.pool.begin().await?;
        self.q(
            "INSERT INTO threads (id, title, owner_id, agents, created_at, last_seq, last_activity) \
             VALUES ($1, $2, $3, $4, $5, 0, $5)",
        )
        .bind(thread.id.as_str())
        .bind(thread.title.as_str())
        .bind(thread.owner_id.as_str())
        .bind(agents)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        self.q("INSERT INTO thread_members (thread_id, user_id, added_at) VALUES ($1, $2, $3)")
            .bind(thread.id.as_str())
            .bind(thread.owner_id.as_str())
            .bind(now)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn thread(&self, id: &str) -> Result<Option<Thread>> {
        let mut c = self.conn().await?;
        let row = self
            .q(THREAD_BY_ID)
            .bind(id)
            .fetch_optional(c.get())
            .await?;
        c.done().await?;
        row.as_ref().map(thread_row).transpose()
    }

    async fn threads_for_user(&self, user_id: &str) -> Result<Vec<Thread>> {
        let mut c = self.conn().await?;
        let rows = self
            .q(THREADS_FOR_USER)
            .bind(user_id)
            .fetch_all(c.get())
            .await?;
        c.done().await?;
        rows.iter().map(thread_row).collect()
    }

    async fn members(&self, thread_id: &str) -> Result<Vec<String>> {
        let mut c = self.conn().await?;
        let rows = self
            .q(
                "SELECT m.user_id FROM thread_members m JOIN threads t ON t.id = m.thread_id \
                AND t.deleted_at IS NULL WHERE m.thread_id = $1",
            )
            .bind(thread_id)
            .fetch_all(c.get())
            .await?;
        c.done().await?;
        rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
    }

    async fn memberships(&self, user_id: &str) -> Result<Vec<String>> {
        let mut c = self.conn().await?;
        let rows = self
            .q(
                "SELECT m.thread_id FROM thread_members m JOIN threads t ON t.id = m.thread_id \
                AND t.deleted_at IS NULL WHERE m.user_id = $1",
            )
            .bind(user_id)
            .fetch_all(c.get())
            .await?;
        c.done().await?;
        rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
    }

    async fn add_member(&self, thread_id: &str, user_id: &str, now: i64) -> Result<()> {
        let mut c = self.conn().await?;
        self.q(
            "INSERT INTO thread_members (thread_id, user_id, added_at) VALUES ($1, $2, $3) \
             ON CONFLICT (thread_id, user_id) DO NOTHING",
        )
        .bind(thread_id)
        .bind(user_id)
        .bind(now)
        .execute(c.get())
        .await?;
        c.done().await
    }

    async fn messages(&self, thread_id: &str, page: Page, limit: i64) -> Result<Vec<Message>> {
        let (sql, bound) = match page {
            Page::After(n) => (MESSAGES_AFTER, n),
            Page::Before(n) => (MESSAGES_BEFORE, n),
            Page::Latest => (MESSAGES_BEFORE, i64::MAX),
        };
        let mut c = self.conn().await?;
        let rows = self
            .q(sql)
            .bind(thread_id)
            .bind(bound)
            .bind(limit)
            .fetch_all(c.get())
            .await?;
        c.done().await?;
        let mut messages = rows.iter().map(message_row).collect::<Result<Vec<_>>>()?;
        if !matches!(page, Page::After(_)) {
            messages.reverse();
        }
        Ok(messages)
    }

    async fn message_by_client_id(
        &self,
        thread_id: &str,
        client_id: &str,
    ) -> Result<Option<Message>> {
        let mut c = self.conn().await?;
        let row = self
            .q(MESSAGE_BY_CLIENT_ID)
            .bind(thread_id)
            .bind(client_id)
            .fetch_optional(c.get())
            .await?;
        c.done().await?;
        row.as_ref().map(message_row).transpose()
    }

    async fn insert_messages(&self, batch: &[NewMessage]) -> Result<Vec<InsertOutcome>> {
        let mut conn = self.pool.acquire().await?;
        let outcomes = insert_batch::<DB>(&mut conn, batch, !self.pooled).await;
        if batch.len() > 64 {
            // A backlog batch (after an outage) grows the connection's buffers to its size;
            // they would stay that large for the connection's life.
            sqlx::Connection::shrink_buffers(&mut *conn);
        }
        outcomes
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
}

/// Keeps the column lists and the queries that spell them out in step.
#[cfg(test)]
mod tests;
