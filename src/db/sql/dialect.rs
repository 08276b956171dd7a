//! Where SQLite and PostgreSQL differ: how a pool is opened, how the group commit begins, its
//! idempotency lookup and multi-row insert (SQLite `IN` lists, PostgreSQL array parameters
//! `ANY` and `unnest`, each shaped so its statement text does not vary with the batch size where
//! the engine would re-plan it), and the migrations. Everything else is in `sql/mod.rs`, once.

use std::{future::Future, str::FromStr, time::Duration};

use sqlx::{
    Pool, Postgres, Row, Sqlite,
    postgres::{PgConnectOptions, PgConnection, PgPoolOptions},
    sqlite::{
        SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePoolOptions,
        SqliteSynchronous,
    },
};

use super::{Result, SqlStore, message_row, sqlite_batch};
use crate::{
    db::{
        Message, MessageMeta, NewMessage, StoreError, Target,
        lifecycle::{SearchHit, SearchQuery},
        migrations,
    },
    settings::Pooler,
};

/// What one engine does its own way.
pub(crate) trait Dialect: sqlx::Database + sqlx::database::HasStatementCache {
    /// For logs: `sqlite`, `postgres`.
    const BACKEND: &'static str;
    /// The statement that begins the group commit's transaction.
    const BEGIN_WRITE: &'static str;

    /// Apply this engine's pending migrations.
    fn migrate(pool: &Pool<Self>) -> impl Future<Output = Result<()>> + Send;

    /// Apply them over a connection of their own to `url` (the database itself, when the pool
    /// goes through a pooler).
    fn migrate_at(url: &str) -> impl Future<Output = Result<()>> + Send;

    /// Messages already stored under these `(thread, client id)`s, in one statement for the
    /// whole batch (at most [`LOOKUP_KEYS`] keys at once). It may also return other messages of
    /// those threads: the caller keys what it gets by thread and client id.
    fn stored_client_ids(
        conn: &mut Self::Connection,
        keys: &[(&str, &str)],
        persistent: bool,
    ) -> impl Future<Output = Result<Vec<Message>>> + Send;

    /// Reserve a block of seqs in each of these threads, in one statement (at most
    /// [`RESERVE_THREADS`] at once): each thread's `last_seq` grows by its count and its
    /// `last_activity` becomes `now`. Returns each thread's new `last_seq`; a thread that does not
    /// exist or is deleted is left out. Row locks are taken in thread id (byte) order, as every
    /// writer takes them, so concurrent batches cannot deadlock.
    fn reserve_seqs(
        conn: &mut Self::Connection,
        counts: &[(&str, i64)],
        now: i64,
        persistent: bool,
    ) -> impl Future<Output = Result<Vec<(String, i64)>>> + Send;

    /// Full-text search (`search.rs`).
    fn search(
        pool: &Pool<Self>,
        query: &SearchQuery,
        persistent: bool,
    ) -> impl Future<Output = Result<Vec<SearchHit>>> + Send;

    /// Insert these new messages with their seqs (at most 1000 at once); the database indexes
    /// them for search in the same statement (SQLite's trigger, PostgreSQL's generated column).
    fn insert_rows(
        conn: &mut Self::Connection,
        rows: &[(&NewMessage, i64)],
        persistent: bool,
    ) -> impl Future<Output = Result<()>> + Send;
}

/// Most `(thread, client id)` keys in one idempotency lookup (SQLite: two parameters each).
pub(crate) const LOOKUP_KEYS: usize = 4000;
/// Most threads in one seq reservation (SQLite: two parameters each).
pub(crate) const RESERVE_THREADS: usize = 500;

/// The insert's column list (both engines).
pub(super) const INSERT_MESSAGES: &str = "INSERT INTO messages (id, thread_id, seq, client_id, author_kind, \
     author_id, author_name, body, created_at, status, prompt_tokens, completion_tokens, meta, \
     requester_id) ";

impl Dialect for Sqlite {
    const BACKEND: &'static str = "sqlite";
    // The batch reads before it writes: it must hold the write lock from the start.
    const BEGIN_WRITE: &'static str = "BEGIN IMMEDIATE";

    async fn search(
        pool: &Pool<Self>,
        query: &SearchQuery,
        _persistent: bool,
    ) -> Result<Vec<SearchHit>> {
        super::search::sqlite(pool, query).await
    }

    async fn migrate(pool: &Pool<Self>) -> Result<()> {
        migrations::run_sqlite(pool).await
    }

    async fn migrate_at(_url: &str) -> Result<()> {
        Err(StoreError::Other(anyhow::anyhow!(
            "a direct database URL is for PostgreSQL behind a pooler"
        )))
    }

    // Fixed, padded shapes, each prepared once per connection (`sqlite_batch`).
    async fn stored_client_ids(
        conn: &mut SqliteConnection,
        keys: &[(&str, &str)],
        persistent: bool,
    ) -> Result<Vec<Message>> {
        sqlite_batch::stored_client_ids(conn, keys, persistent).await
    }

    async fn reserve_seqs(
        conn: &mut SqliteConnection,
        counts: &[(&str, i64)],
        now: i64,
        persistent: bool,
    ) -> Result<Vec<(String, i64)>> {
        sqlite_batch::reserve_seqs(conn, counts, now, persistent).await
    }

    async fn insert_rows(
        conn: &mut SqliteConnection,
        rows: &[(&NewMessage, i64)],
        persistent: bool,
    ) -> Result<()> {
        sqlite_batch::insert_rows(conn, rows, persistent).await
    }
}

/// PostgreSQL's idempotency lookup: one statement text for every batch size (array
/// parameters), so it is prepared once per connection, and a shape that can only use the
/// `(thread_id, client_id)` index: one lookup per key (`LIMIT 1` keeps the lateral subquery from
/// being flattened into a join the planner could hash over the whole table).
pub(super) const PG_STORED_CLIENT_IDS: &str = "SELECT id, thread_id, seq, client_id, author_kind, \
     author_id, author_name, body, created_at, status, prompt_tokens, completion_tokens, meta \
     FROM unnest($1::text[], $2::text[]) AS k(thread_id, client_id) CROSS JOIN LATERAL \
     (SELECT id, seq, author_kind, author_id, author_name, body, created_at, status, \
     prompt_tokens, completion_tokens, meta FROM messages m \
     WHERE m.thread_id = k.thread_id AND m.client_id = k.client_id LIMIT 1) AS m";

/// PostgreSQL's seq reservation for every thread of a batch: the threads' rows are locked first,
/// in byte order of their ids (`COLLATE "C"`, the order of the batch's own `BTreeMap`), then
/// updated; a deleted thread is neither locked nor updated.
const PG_RESERVE_SEQS: &str = "WITH k AS (SELECT * FROM unnest($1::text[], $2::int8[]) AS k(id, n)), \
     locked AS MATERIALIZED (SELECT t.id FROM threads t WHERE t.id IN (SELECT id FROM k) \
     AND t.deleted_at IS NULL ORDER BY t.id COLLATE \"C\" FOR UPDATE) \
     UPDATE threads t SET last_seq = t.last_seq + k.n, last_activity = $3 \
     FROM k, locked l WHERE t.id = k.id AND t.id = l.id RETURNING t.id, t.last_seq";

impl Dialect for Postgres {
    const BACKEND: &'static str = "postgres";
    const BEGIN_WRITE: &'static str = "BEGIN";

    async fn search(
        pool: &Pool<Self>,
        query: &SearchQuery,
        persistent: bool,
    ) -> Result<Vec<SearchHit>> {
        super::search::postgres(pool, query, persistent).await
    }

    async fn migrate(pool: &Pool<Self>) -> Result<()> {
        migrations::run_postgres(pool).await
    }

    async fn migrate_at(url: &str) -> Result<()> {
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(PgConnectOptions::from_str(url)?)
            .await?;
        let result = migrations::run_postgres(&pool).await;
        pool.close().await;
        result
    }

    async fn stored_client_ids(
        conn: &mut PgConnection,
        keys: &[(&str, &str)],
        persistent: bool,
    ) -> Result<Vec<Message>> {
        let threads: Vec<&str> = keys.iter().map(|(t, _)| *t).collect();
        let ids: Vec<&str> = keys.iter().map(|(_, c)| *c).collect();
        let rows = sqlx::query(PG_STORED_CLIENT_IDS)
            .persistent(persistent)
            .bind(threads)
            .bind(ids)
            .fetch_all(conn)
            .await?;
        rows.iter().map(message_row).collect()
    }

    async fn reserve_seqs(
        conn: &mut PgConnection,
        counts: &[(&str, i64)],
        now: i64,
        persistent: bool,
    ) -> Result<Vec<(String, i64)>> {
        let threads: Vec<&str> = counts.iter().map(|(t, _)| *t).collect();
        let ns: Vec<i64> = counts.iter().map(|(_, n)| *n).collect();
        let rows = sqlx::query(PG_RESERVE_SEQS)
            .persistent(persistent)
            .bind(threads)
            .bind(ns)
            .bind(now)
            .fetch_all(conn)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
    }

    /// One `INSERT ... SELECT FROM unnest(...)` with a column array per field: one prepared
    /// statement for every batch size, and no per-row parameter parsing.
    async fn insert_rows(
        conn: &mut PgConnection,
        rows: &[(&NewMessage, i64)],
        persistent: bool,
    ) -> Result<()> {
        let col =
            |f: fn(&NewMessage) -> &str| rows.iter().map(|(m, _)| f(m)).collect::<Vec<&str>>();
        let seqs: Vec<i64> = rows.iter().map(|(_, s)| *s).collect();
        let created: Vec<i64> = rows.iter().map(|(m, _)| m.created_at).collect();
        let status: Vec<Option<&str>> = rows.iter().map(|(m, _)| m.status.as_deref()).collect();
        let prompt: Vec<Option<i64>> = rows.iter().map(|(m, _)| m.prompt_tokens).collect();
        let completion: Vec<Option<i64>> = rows.iter().map(|(m, _)| m.completion_tokens).collect();
        let meta: Vec<Option<String>> = rows
            .iter()
            .map(|(m, _)| MessageMeta::to_column(m.meta.as_deref()))
            .collect();
        let requester: Vec<Option<&str>> =
            rows.iter().map(|(m, _)| m.requester.as_deref()).collect();
        sqlx::query(
            "INSERT INTO messages (id, thread_id, seq, client_id, author_kind, author_id, \
             author_name, body, created_at, status, prompt_tokens, completion_tokens, meta, \
             requester_id) \
             SELECT * FROM unnest($1::text[], $2::text[], $3::int8[], $4::text[], $5::text[], \
             $6::text[], $7::text[], $8::text[], $9::int8[], $10::text[], $11::int8[], $12::int8[], \
             $13::text[], $14::text[])",
        )
        .persistent(persistent)
        .bind(col(|m| m.id.as_str()))
        .bind(col(|m| m.thread_id.as_str()))
        .bind(seqs)
        .bind(col(|m| m.client_id.as_str()))
        .bind(col(|m| m.author.kind.as_str()))
        .bind(col(|m| m.author.id.as_str()))
        .bind(col(|m| m.author.name.as_str()))
        .bind(col(|m| m.body.as_str()))
        .bind(created)
        .bind(status)
        .bind(prompt)
        .bind(completion)
        .bind(meta)
        .bind(requester)
        .execute(conn)
        .await?;
        Ok(())
    }
}

/// Open a SQLite file (WAL, foreign keys on); `may_create` creates it and its directory.
pub(crate) async fn open_sqlite(
    path: &str,
    max_connections: u32,
    connect_timeout: Duration,
    may_create: bool,
) -> Result<SqlStore<Sqlite>> {
    if let Some(dir) = std::path::Path::new(path).parent().filter(|_| may_create)
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Unavailable(format!("creating {}: {e}", dir.display())))?;
    }
    let options = SqliteConnectOptions::from_str(&format!("sqlite://{path}"))?
        .create_if_missing(may_create)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(5))
        .foreign_keys(true)
        // The group commit's multi-row insert fires the search index's trigger per row, so
        // each statement keeps a statement journal: in memory, not in a temporary file.
        .pragma("temp_store", "memory")
        // A larger page cache (8 MiB per connection, from 2) keeps the index pages that every
        // batch rewrites (the messages' b-trees, the full-text segments) out of pread.
        .pragma("cache_size", "-8192")
        // No connection checkpoints in its own commits: the checkpointer task does, off the
        // writer's path (`checkpoint`), and the WAL is cut back to this size when it restarts.
        .pragma("wal_autocheckpoint", "0")
        .pragma("journal_size_limit", super::checkpoint::JOURNAL_SIZE_LIMIT);
    // A new file is written from the template (the final schema, its ledger, WAL mode).
    let templated = may_create
        && path != ":memory:"
        && !path.starts_with("file:")
        && migrations::create_sqlite_from_template(std::path::Path::new(path));
    let pool = SqlitePoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(connect_timeout)
        .test_before_acquire(false)
        .connect_with(options.clone())
        .await?;
    if templated {
        migrations::stamp_template(&pool).await?;
    }
    // The writer's own connection, opened at its first batch (not before readiness) and kept:
    // its page cache is what makes it worth having (`SqlStore::writer`).
    let writer = SqlitePoolOptions::new()
        .max_connections(1)
        .acquire_timeout(connect_timeout)
        .test_before_acquire(false)
        .idle_timeout(None)
        .max_lifetime(None)
        .connect_lazy_with(options.clone());
    let store = SqlStore::new(pool, writer);
    super::checkpoint::spawn(options, super::checkpoint::BOUNDS, store.stop.clone());
    Ok(store)
}

/// Open a PostgreSQL pool, directly or through a transaction-mode pooler.
pub(crate) async fn open_postgres(
    target: Target<'_>,
    max_connections: u32,
    connect_timeout: Duration,
) -> Result<SqlStore<Postgres>> {
    let pooled = target.pooler == Pooler::Transaction;
    let mut options = PgConnectOptions::from_str(target.url)?;
    if pooled {
        // Session settings would apply to whichever server connection the pooler lends, and
        // PgBouncer refuses the `options` startup parameter anyway: an unnamed statement is
        // planned with its parameters, and the pooler's `idle_transaction_timeout` ends a
        // transaction cut off by a fault (docs/operations.md). No statement cache either.
        options = options.statement_cache_capacity(0);
    } else {
        // Plan each execution with its parameters: the idempotency lookup's generic plan,
        // cached while a table is tiny, degrades into a thread scan as threads grow.
        // A transaction cut off by a network fault (a blackhole: the server never sees the
        // connection close) would otherwise keep its row locks (the thread's `last_seq`) for
        // hours and block every later write to the thread; our transactions are never idle for
        // more than a round trip, so the server ends such a session after 5 s.
        options = options.options([
            ("plan_cache_mode", "force_custom_plan"),
            ("idle_in_transaction_session_timeout", "5000"),
        ]);
    }
    let pool = PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(connect_timeout)
        .test_before_acquire(true)
        .connect_with(options)
        .await?;
    // PostgreSQL's shared buffers serve every connection: the writer takes the pool's.
    let mut store = SqlStore::new(pool.clone(), pool);
    store.pooled = pooled;
    store.direct_url = target.direct_url.map(str::to_string);
    Ok(store)
}
