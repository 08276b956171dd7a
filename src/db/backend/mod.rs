//! The two storage backends. The SQL is written once (both engines accept `$N` parameters,
//! `RETURNING` and `ON CONFLICT`) and expanded for each by `impl_store!`; [`Store`] picks one.

use sqlx::{Row, postgres::PgPoolOptions, sqlite::SqlitePoolOptions};
use std::{
    collections::{BTreeMap, HashMap, HashSet},
    str::FromStr,
    time::Duration,
};

use super::{
    Author, AuthorKind, InsertOutcome, Message, NewMessage, Page, StoreError, Thread, User,
    migrations,
};

type Result<T> = std::result::Result<T, StoreError>;

/// Columns read for a message (a macro so queries stay literal SQL).
macro_rules! message_columns {
    () => {
        "id, thread_id, seq, client_id, author_kind, author_id, author_name, body, created_at, status"
    };
}

macro_rules! impl_store {
    ($name:ident, $db:ty, $row:ty, $begin_write:literal) => {
        /// One backend's connection pool and queries.
        #[derive(Clone)]
        pub struct $name {
            pub(crate) pool: sqlx::Pool<$db>,
        }

        impl $name {
            fn message_row(row: &$row) -> Result<Message> {
                Ok(Message {
                    id: row.try_get(0)?,
                    thread_id: row.try_get(1)?,
                    seq: row.try_get(2)?,
                    client_id: row.try_get(3)?,
                    author: Author {
                        kind: AuthorKind::parse(row.try_get::<&str, _>(4)?),
                        id: row.try_get(5)?,
                        name: row.try_get(6)?,
                    },
                    body: row.try_get(7)?,
                    created_at: row.try_get(8)?,
                    status: row.try_get(9)?,
                })
            }

            fn thread_row(row: &$row) -> Result<Thread> {
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

            pub async fn ping(&self) -> Result<()> {
                sqlx::query("SELECT 1").execute(&self.pool).await?;
                Ok(())
            }

            pub async fn kv_get_or_insert(&self, key: &str, candidate: &str) -> Result<String> {
                sqlx::query("INSERT INTO kv (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING")
                    .bind(key)
                    .bind(candidate)
                    .execute(&self.pool)
                    .await?;
                let row = sqlx::query("SELECT value FROM kv WHERE key = $1")
                    .bind(key)
                    .fetch_one(&self.pool)
                    .await?;
                Ok(row.try_get(0)?)
            }

            pub async fn create_user(&self, user: &User, key: &str, now: i64) -> Result<()> {
                let done = sqlx::query(
                    "INSERT INTO users (id, username, username_key, password_hash, created_at) \
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (username_key) DO NOTHING",
                )
                .bind(&user.id)
                .bind(&user.username)
                .bind(key)
                .bind(&user.password_hash)
                .bind(now)
                .execute(&self.pool)
                .await?;
                if done.rows_affected() == 0 {
                    return Err(StoreError::Conflict("username is taken".into()));
                }
                Ok(())
            }

            pub async fn user_by_key(&self, key: &str) -> Result<Option<User>> {
                let row = sqlx::query("SELECT id, username, password_hash FROM users WHERE username_key = $1")
                    .bind(key)
                    .fetch_optional(&self.pool)
                    .await?;
                row.map(|r| {
                    Ok(User { id: r.try_get(0)?, username: r.try_get(1)?, password_hash: r.try_get(2)? })
                })
                .transpose()
            }

            pub async fn create_session(&self, id: &str, user_id: &str, now: i64, expires: i64) -> Result<()> {
                sqlx::query("INSERT INTO sessions (id, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4)")
                    .bind(id)
                    .bind(user_id)
                    .bind(now)
                    .bind(expires)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            pub async fn revoke_session(&self, id: &str, now: i64) -> Result<()> {
                sqlx::query("UPDATE sessions SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL")
                    .bind(id)
                    .bind(now)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            /// Sessions revoked at or after `since` and not yet expired at `now`.
            pub async fn revoked_since(&self, since: i64, now: i64) -> Result<Vec<(String, i64, i64)>> {
                let rows = sqlx::query(
                    "SELECT id, revoked_at, expires_at FROM sessions \
                     WHERE revoked_at IS NOT NULL AND revoked_at >= $1 AND expires_at > $2",
                )
                .bind(since)
                .bind(now)
                .fetch_all(&self.pool)
                .await?;
                rows.iter()
                    .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
                    .collect()
            }

            pub async fn create_thread(&self, thread: &Thread, now: i64) -> Result<()> {
                let mut tx = self.pool.begin().await?;
                sqlx::query(
                    "INSERT INTO threads (id, title, owner_id, agents, created_at, last_seq, last_activity) \
                     VALUES ($1, $2, $3, $4, $5, 0, $5)",
                )
                .bind(&thread.id)
                .bind(&thread.title)
                .bind(&thread.owner_id)
                .bind(serde_json::to_string(&thread.agents).unwrap_or_else(|_| "[]".into()))
                .bind(now)
                .execute(&mut *tx)
                .await?;
                sqlx::query("INSERT INTO thread_members (thread_id, user_id, added_at) VALUES ($1, $2, $3)")
                    .bind(&thread.id)
                    .bind(&thread.owner_id)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(())
            }

            pub async fn thread(&self, id: &str) -> Result<Option<Thread>> {
                let row = sqlx::query("SELECT id, title, owner_id, agents, created_at, last_seq FROM threads WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?;
                row.as_ref().map(Self::thread_row).transpose()
            }

            pub async fn threads_for_user(&self, user_id: &str) -> Result<Vec<Thread>> {
                let rows = sqlx::query(
                    "SELECT t.id, t.title, t.owner_id, t.agents, t.created_at, t.last_seq \
                     FROM threads t JOIN thread_members m ON m.thread_id = t.id \
                     WHERE m.user_id = $1 ORDER BY t.last_activity DESC, t.id DESC",
                )
                .bind(user_id)
                .fetch_all(&self.pool)
                .await?;
                rows.iter().map(Self::thread_row).collect()
            }

            pub async fn members(&self, thread_id: &str) -> Result<Vec<String>> {
                let rows = sqlx::query("SELECT user_id FROM thread_members WHERE thread_id = $1")
                    .bind(thread_id)
                    .fetch_all(&self.pool)
                    .await?;
                rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
            }

            /// Thread ids the user belongs to (warms the membership cache).
            pub async fn memberships(&self, user_id: &str) -> Result<Vec<String>> {
                let rows = sqlx::query("SELECT thread_id FROM thread_members WHERE user_id = $1")
                    .bind(user_id)
                    .fetch_all(&self.pool)
                    .await?;
                rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
            }

            pub async fn add_member(&self, thread_id: &str, user_id: &str, now: i64) -> Result<()> {
                sqlx::query(
                    "INSERT INTO thread_members (thread_id, user_id, added_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (thread_id, user_id) DO NOTHING",
                )
                .bind(thread_id)
                .bind(user_id)
                .bind(now)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            pub async fn messages(&self, thread_id: &str, page: Page, limit: i64) -> Result<Vec<Message>> {
                let (sql, bound) = match page {
                    Page::After(n) => (
                        concat!("SELECT ", message_columns!(), " FROM messages WHERE thread_id = $1 AND seq > $2 ORDER BY seq ASC LIMIT $3"),
                        n,
                    ),
                    Page::Before(n) => (
                        concat!("SELECT ", message_columns!(), " FROM messages WHERE thread_id = $1 AND seq < $2 ORDER BY seq DESC LIMIT $3"),
                        n,
                    ),
                    Page::Latest => (
                        concat!("SELECT ", message_columns!(), " FROM messages WHERE thread_id = $1 AND seq < $2 ORDER BY seq DESC LIMIT $3"),
                        i64::MAX,
                    ),
                };
                let rows = sqlx::query(sql)
                    .bind(thread_id)
                    .bind(bound)
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?;
                let mut messages = rows.iter().map(Self::message_row).collect::<Result<Vec<_>>>()?;
                if !matches!(page, Page::After(_)) {
                    messages.reverse();
                }
                Ok(messages)
            }

            pub async fn message_by_client_id(&self, thread_id: &str, client_id: &str) -> Result<Option<Message>> {
                let row = sqlx::query(concat!(
                    "SELECT ", message_columns!(), " FROM messages WHERE thread_id = $1 AND client_id = $2"
                ))
                .bind(thread_id)
                .bind(client_id)
                .fetch_optional(&self.pool)
                .await?;
                row.as_ref().map(Self::message_row).transpose()
            }

            /// Store a batch in one transaction (group commit); each new message gets the next
            /// `seq` of its thread, in batch order. A handful of statements per batch: one
            /// idempotency lookup and one `last_seq` bump per thread, then multi-row inserts.
            pub async fn insert_messages(&self, batch: &[NewMessage]) -> Result<Vec<InsertOutcome>> {
                let mut conn = self.pool.acquire().await?;
                let outcomes = self.insert_batch(&mut conn, batch).await;
                if batch.len() > 64 {
                    // A backlog batch (after an outage) grows the connection's buffers to its
                    // size; they would stay that large for the connection's life.
                    sqlx::Connection::shrink_buffers(&mut *conn);
                }
                outcomes
            }

            async fn insert_batch(&self, conn: &mut <$db as sqlx::Database>::Connection, batch: &[NewMessage]) -> Result<Vec<InsertOutcome>> {
                // The batch reads (idempotency lookup) before it writes: on SQLite it must hold
                // the write lock from the start, or a commit by another connection in between
                // fails it with BUSY_SNAPSHOT, which no busy timeout waits out.
                let mut tx = sqlx::Connection::begin_with(conn, $begin_write).await?;
                let mut by_thread: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
                for (i, m) in batch.iter().enumerate() {
                    by_thread.entry(m.thread_id.as_str()).or_default().push(i);
                }
                // Messages already stored under these client_ids.
                let mut stored: HashMap<(&str, String), Message> = HashMap::new();
                for (thread, idxs) in &by_thread {
                    for chunk in idxs.chunks(500) {
                        let ids: Vec<&str> = chunk.iter().map(|i| batch[*i].client_id.as_str()).collect();
                        for m in Self::stored_client_ids(&mut tx, thread, &ids).await? {
                            stored.insert((*thread, m.client_id.clone()), m);
                        }
                    }
                }
                // Which messages are new: the first occurrence of a key not yet stored.
                let mut first_of: HashMap<(&str, &str), usize> = HashMap::new();
                let mut fresh: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
                for (i, m) in batch.iter().enumerate() {
                    let key = (m.thread_id.as_str(), m.client_id.as_str());
                    if stored.contains_key(&(key.0, m.client_id.clone())) || first_of.contains_key(&key) {
                        continue;
                    }
                    first_of.insert(key, i);
                    fresh.entry(key.0).or_default().push(i);
                }
                // Reserve a contiguous block of seqs per thread (the row lock orders writers).
                let now = batch.iter().map(|m| m.created_at).max().unwrap_or(0);
                let mut seqs: HashMap<usize, i64> = HashMap::new();
                let mut missing_threads: HashSet<&str> = HashSet::new();
                for (thread, idxs) in &fresh {
                    let row = sqlx::query(
                        "UPDATE threads SET last_seq = last_seq + $2, last_activity = $3 WHERE id = $1 RETURNING last_seq",
                    )
                    .bind(*thread)
                    .bind(idxs.len() as i64)
                    .bind(now)
                    .fetch_optional(&mut *tx)
                    .await?;
                    let Some(row) = row else {
                        missing_threads.insert(*thread);
                        continue;
                    };
                    let last: i64 = row.try_get(0)?;
                    let first = last - idxs.len() as i64 + 1;
                    for (k, i) in idxs.iter().enumerate() {
                        seqs.insert(*i, first + k as i64);
                    }
                }
                let mut order: Vec<usize> = seqs.keys().copied().collect();
                order.sort_unstable();
                for chunk in order.chunks(1000) {
                    let rows: Vec<(&NewMessage, i64)> = chunk.iter().map(|i| (&batch[*i], seqs[i])).collect();
                    Self::insert_rows(&mut tx, &rows).await?;
                }
                tx.commit().await?;
                let as_message = |i: usize| {
                    let m = &batch[i];
                    Message {
                        id: m.id.clone(),
                        thread_id: m.thread_id.clone(),
                        seq: seqs[&i],
                        client_id: m.client_id.clone(),
                        author: m.author.clone(),
                        body: m.body.clone(),
                        created_at: m.created_at,
                        status: m.status.clone(),
                    }
                };
                let same_author = |found: &Message, m: &NewMessage| found.author.id == m.author.id && found.author.kind == m.author.kind;
                let outcomes = batch
                    .iter()
                    .enumerate()
                    .map(|(i, m)| {
                        if missing_threads.contains(m.thread_id.as_str()) {
                            return InsertOutcome::NoThread;
                        }
                        if let Some(found) = stored.get(&(m.thread_id.as_str(), m.client_id.clone())) {
                            return if same_author(found, m) { InsertOutcome::Existing(found.clone()) } else { InsertOutcome::ClientIdTaken };
                        }
                        let first = first_of[&(m.thread_id.as_str(), m.client_id.as_str())];
                        if first == i {
                            InsertOutcome::Inserted(as_message(i))
                        } else {
                            let found = as_message(first);
                            if same_author(&found, m) { InsertOutcome::Existing(found) } else { InsertOutcome::ClientIdTaken }
                        }
                    })
                    .collect();
                Ok(outcomes)
            }
        }
    };
}

impl_store!(
    SqliteStore,
    sqlx::Sqlite,
    sqlx::sqlite::SqliteRow,
    "BEGIN IMMEDIATE"
);
impl_store!(PgStore, sqlx::Postgres, sqlx::postgres::PgRow, "BEGIN");

// After the macros: the dialects use `message_columns!`.
mod dialects;

/// The configured backend.
#[derive(Clone)]
pub enum Store {
    Sqlite(SqliteStore),
    Postgres(PgStore),
}

/// Call the same method on whichever backend is configured.
macro_rules! dispatch {
    ($self:ident, $s:ident => $call:expr) => {
        match $self {
            Store::Sqlite($s) => $call,
            Store::Postgres($s) => $call,
        }
    };
}

impl Store {
    /// Open a pool for `url` (`sqlite://PATH` or `postgres://...`) and check it answers.
    pub async fn connect(
        url: &str,
        max_connections: u32,
        connect_timeout: Duration,
        may_create: bool,
    ) -> Result<Store> {
        if let Some(path) = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
        {
            let path = path.split('?').next().unwrap_or(path);
            if let Some(dir) = std::path::Path::new(path).parent().filter(|_| may_create)
                && !dir.as_os_str().is_empty()
            {
                {
                    std::fs::create_dir_all(dir).map_err(|e| {
                        StoreError::Unavailable(format!("creating {}: {e}", dir.display()))
                    })?;
                }
            }
            let options =
                sqlx::sqlite::SqliteConnectOptions::from_str(&format!("sqlite://{path}"))?
                    .create_if_missing(may_create)
                    .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
                    .synchronous(sqlx::sqlite::SqliteSynchronous::Normal)
                    .busy_timeout(Duration::from_secs(5))
                    .foreign_keys(true);
            let pool = SqlitePoolOptions::new()
                .max_connections(max_connections)
                .acquire_timeout(connect_timeout)
                .test_before_acquire(false)
                .connect_with(options)
                .await?;
            let store = Store::Sqlite(SqliteStore { pool });
            store.ping().await?;
            Ok(store)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            // Plan each execution with its parameters: the idempotency lookup's generic plan,
            // cached while a table is tiny, degrades into a thread scan as threads grow.
            // A transaction cut off by a network fault (a blackhole: the server never sees the
            // connection close) would otherwise keep its row locks (the thread's `last_seq`)
            // for hours and block every later write to the thread; our transactions are never
            // idle for more than a round trip, so the server ends such a session after 5 s.
            let options = sqlx::postgres::PgConnectOptions::from_str(url)?.options([
                ("plan_cache_mode", "force_custom_plan"),
                ("idle_in_transaction_session_timeout", "5000"),
            ]);
            let pool = PgPoolOptions::new()
                .max_connections(max_connections)
                .acquire_timeout(connect_timeout)
                .test_before_acquire(true)
                .connect_with(options)
                .await?;
            let store = Store::Postgres(PgStore { pool });
            store.ping().await?;
            Ok(store)
        } else {
            Err(StoreError::Other(anyhow::anyhow!(
                "unsupported DATABASE_URL scheme (use sqlite:// or postgres://)"
            )))
        }
    }

    pub fn backend_name(&self) -> &'static str {
        match self {
            Store::Sqlite(_) => "sqlite",
            Store::Postgres(_) => "postgres",
        }
    }

    /// Apply pending migrations (each backend has its own).
    pub async fn migrate(&self) -> Result<()> {
        match self {
            Store::Sqlite(s) => migrations::run_sqlite(&s.pool).await,
            Store::Postgres(s) => migrations::run_postgres(&s.pool).await,
        }
    }

    /// Close the pool (connections are released as their queries end).
    pub async fn close(&self) {
        dispatch!(self, s => s.pool.close().await)
    }

    pub async fn ping(&self) -> Result<()> {
        dispatch!(self, s => s.ping().await)
    }
    pub async fn kv_get_or_insert(&self, key: &str, candidate: &str) -> Result<String> {
        dispatch!(self, s => s.kv_get_or_insert(key, candidate).await)
    }
    pub async fn create_user(&self, user: &User, key: &str, now: i64) -> Result<()> {
        dispatch!(self, s => s.create_user(user, key, now).await)
    }
    pub async fn user_by_key(&self, key: &str) -> Result<Option<User>> {
        dispatch!(self, s => s.user_by_key(key).await)
    }
    pub async fn create_session(
        &self,
        id: &str,
        user_id: &str,
        now: i64,
        expires: i64,
    ) -> Result<()> {
        dispatch!(self, s => s.create_session(id, user_id, now, expires).await)
    }
    pub async fn revoke_session(&self, id: &str, now: i64) -> Result<()> {
        dispatch!(self, s => s.revoke_session(id, now).await)
    }
    pub async fn revoked_since(&self, since: i64, now: i64) -> Result<Vec<(String, i64, i64)>> {
        dispatch!(self, s => s.revoked_since(since, now).await)
    }
    pub async fn create_thread(&self, thread: &Thread, now: i64) -> Result<()> {
        dispatch!(self, s => s.create_thread(thread, now).await)
    }
    pub async fn thread(&self, id: &str) -> Result<Option<Thread>> {
        dispatch!(self, s => s.thread(id).await)
    }
    pub async fn threads_for_user(&self, user_id: &str) -> Result<Vec<Thread>> {
        dispatch!(self, s => s.threads_for_user(user_id).await)
    }
    pub async fn members(&self, thread_id: &str) -> Result<Vec<String>> {
        dispatch!(self, s => s.members(thread_id).await)
    }
    pub async fn memberships(&self, user_id: &str) -> Result<Vec<String>> {
        dispatch!(self, s => s.memberships(user_id).await)
    }
    pub async fn add_member(&self, thread_id: &str, user_id: &str, now: i64) -> Result<()> {
        dispatch!(self, s => s.add_member(thread_id, user_id, now).await)
    }
    pub async fn messages(&self, thread_id: &str, page: Page, limit: i64) -> Result<Vec<Message>> {
        dispatch!(self, s => s.messages(thread_id, page, limit).await)
    }
    pub async fn message_by_client_id(
        &self,
        thread_id: &str,
        client_id: &str,
    ) -> Result<Option<Message>> {
        dispatch!(self, s => s.message_by_client_id(thread_id, client_id).await)
    }
    pub async fn insert_messages(&self, batch: &[NewMessage]) -> Result<Vec<InsertOutcome>> {
        dispatch!(self, s => s.insert_messages(batch).await)
    }
}
