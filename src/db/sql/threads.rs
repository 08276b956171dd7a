//! Threads and their members in the SQL backends: creation (with the owner as first member),
//! lookups and membership. Every query that reads threads selects the columns in the order
//! [`thread_row`] reads them (the tests in `sql/tests.rs` hold them to it). The lifecycle
//! (archive, pin, delete, import) is in `sql/lifecycle.rs`.

use sqlx::{ColumnIndex, Decode, Encode, Executor, IntoArguments, Row, Type};

use super::{Dialect, Result, SqlStore};
use crate::db::Thread;

pub(super) const THREAD_BY_ID: &str = "SELECT id, title, owner_id, agents, created_at, last_seq FROM threads WHERE id = $1 \
     AND deleted_at IS NULL";
pub(super) const THREADS_FOR_USER: &str = "SELECT t.id, t.title, t.owner_id, t.agents, t.created_at, \
     t.last_seq FROM threads t JOIN thread_members m ON m.thread_id = t.id \
     WHERE m.user_id = $1 AND t.deleted_at IS NULL ORDER BY t.last_activity DESC, t.id DESC";

/// Read a thread row (`id, title, owner_id, agents, created_at, last_seq`).
pub(super) fn thread_row<R>(row: &R) -> Result<Thread>
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

impl<DB> SqlStore<DB>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    for<'q> &'q str: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> String: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    usize: ColumnIndex<DB::Row>,
{
    pub(super) async fn create_thread_sql(&self, thread: &Thread, now: i64) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        self.insert_thread_rows(&mut tx, thread, now, 0, now)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// A thread's row and its owner's membership, in the caller's transaction: a new thread
    /// (`last_seq` 0), or an imported one whose messages the caller inserts next.
    pub(super) async fn insert_thread_rows(
        &self,
        tx: &mut sqlx::Transaction<'static, DB>,
        thread: &Thread,
        created_at: i64,
        last_seq: i64,
        now: i64,
    ) -> Result<()> {
        let agents = serde_json::to_string(&thread.agents).unwrap_or_else(|_| "[]".into());
        self.q(
            "INSERT INTO threads (id, title, owner_id, agents, created_at, last_seq, last_activity) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(thread.id.as_str())
        .bind(thread.title.as_str())
        .bind(thread.owner_id.as_str())
        .bind(agents)
        .bind(created_at)
        .bind(last_seq)
        .bind(now)
        .execute(&mut **tx)
        .await?;
        self.q("INSERT INTO thread_members (thread_id, user_id, added_at) VALUES ($1, $2, $3)")
            .bind(thread.id.as_str())
            .bind(thread.owner_id.as_str())
            .bind(now)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    pub(super) async fn thread_sql(&self, id: &str) -> Result<Option<Thread>> {
        let row = self.fetch_optional(self.q(THREAD_BY_ID).bind(id)).await?;
        row.as_ref().map(thread_row).transpose()
    }

    pub(super) async fn threads_for_user_sql(&self, user_id: &str) -> Result<Vec<Thread>> {
        let rows = self
            .fetch_all(self.q(THREADS_FOR_USER).bind(user_id))
            .await?;
        rows.iter().map(thread_row).collect()
    }

    pub(super) async fn members_sql(&self, thread_id: &str) -> Result<Vec<String>> {
        let rows = self
            .fetch_all(
                self.q(
                    "SELECT m.user_id FROM thread_members m JOIN threads t ON t.id = m.thread_id \
                    AND t.deleted_at IS NULL WHERE m.thread_id = $1",
                )
                .bind(thread_id),
            )
            .await?;
        rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
    }

    pub(super) async fn memberships_sql(&self, user_id: &str) -> Result<Vec<String>> {
        let rows = self
            .fetch_all(
                self.q(
                    "SELECT m.thread_id FROM thread_members m JOIN threads t ON t.id = m.thread_id \
                    AND t.deleted_at IS NULL WHERE m.user_id = $1",
                )
                .bind(user_id),
            )
            .await?;
        rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
    }

    pub(super) async fn add_member_sql(
        &self,
        thread_id: &str,
        user_id: &str,
        now: i64,
    ) -> Result<()> {
        self.execute(
            self.q(
                "INSERT INTO thread_members (thread_id, user_id, added_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (thread_id, user_id) DO NOTHING",
            )
            .bind(thread_id)
            .bind(user_id)
            .bind(now),
        )
        .await
    }
}
