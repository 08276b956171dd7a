//! The SQL of thread lifecycle, membership, export and import (issue 17), written once for both
//! engines like the rest of `sql/`; the search queries differ per engine and live in `search`.

use sqlx::{ColumnIndex, Decode, Encode, Executor, IntoArguments, Row, Type};

use super::{Dialect, Result, SqlStore, message_row, thread_row};
use crate::db::{
    StoreError, Thread,
    lifecycle::{
        ExportedMessage, ImportedThread, ListedThread, MemberFlags, ThreadChange, ThreadMember,
    },
};

/// A member's list: the thread columns, then the member's flags; pinned first.
const THREAD_LIST: &str = "SELECT t.id, t.title, t.owner_id, t.agents, t.created_at, \
     t.last_seq, m.archived_at, m.pinned_at FROM threads t \
     JOIN thread_members m ON m.thread_id = t.id \
     WHERE m.user_id = $1 AND t.deleted_at IS NULL AND (m.archived_at IS NOT NULL) = $2 \
     ORDER BY (m.pinned_at IS NULL) ASC, t.last_activity DESC, t.id DESC";

/// Every message of a thread, with token usage.
pub(super) const EXPORT_MESSAGES: &str = "SELECT id, thread_id, seq, client_id, author_kind, author_id, \
     author_name, body, created_at, status, prompt_tokens, completion_tokens, meta FROM messages \
     WHERE thread_id = $1 ORDER BY seq ASC";

impl<DB> SqlStore<DB>
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
    pub(super) async fn do_thread_list(
        &self,
        user_id: &str,
        archived: bool,
    ) -> Result<Vec<ListedThread>> {
        let rows = self
            .fetch_all(self.q(THREAD_LIST).bind(user_id).bind(archived))
            .await?;
        rows.iter()
            .map(|r| {
                Ok(ListedThread {
                    thread: thread_row(r)?,
                    archived: r.try_get::<Option<i64>, _>(6)?.is_some(),
                    pinned: r.try_get::<Option<i64>, _>(7)?.is_some(),
                })
            })
            .collect()
    }

    pub(super) async fn do_member_flags(
        &self,
        thread_id: &str,
        user_id: &str,
    ) -> Result<Option<(bool, bool)>> {
        let row = self
            .fetch_optional(
                self.q("SELECT m.archived_at, m.pinned_at FROM thread_members m \
             JOIN threads t ON t.id = m.thread_id AND t.deleted_at IS NULL \
             WHERE m.thread_id = $1 AND m.user_id = $2")
                    .bind(thread_id)
                    .bind(user_id),
            )
            .await?;
        row.map(|r| {
            Ok((
                r.try_get::<Option<i64>, _>(0)?.is_some(),
                r.try_get::<Option<i64>, _>(1)?.is_some(),
            ))
        })
        .transpose()
    }

    pub(super) async fn do_update_thread(
        &self,
        thread_id: &str,
        change: &ThreadChange,
    ) -> Result<Option<Thread>> {
        let agents = change
            .agents
            .as_ref()
            .map(|a| serde_json::to_string(a).unwrap_or_else(|_| "[]".into()));
        // The row lock taken here also orders the change among the thread's message batches
        // (which bump `last_seq` on the same row): the returned `last_seq` is exactly the seq
        // of the last message committed before the change.
        let row = self.fetch_optional(self
            .q(
                "UPDATE threads SET title = COALESCE($2, title), agents = COALESCE($3, agents), \
             owner_id = COALESCE($4, owner_id) WHERE id = $1 AND deleted_at IS NULL \
             RETURNING id, title, owner_id, agents, created_at, last_seq",
            )
            .bind(thread_id)
            .bind(change.title.as_deref())
            .bind(agents)
            .bind(change.owner_id.as_deref()))
.await?;
        row.as_ref().map(thread_row).transpose()
    }

    pub(super) async fn do_set_member_flags(
        &self,
        thread_id: &str,
        user_id: &str,
        flags: MemberFlags,
        now: i64,
    ) -> Result<bool> {
        // $3/$5: whether to change the flag; $4/$6: whether it is set.
        let done = self
            .fetch_optional(
                self.q("UPDATE thread_members SET \
             archived_at = CASE WHEN $3 THEN (CASE WHEN $4 THEN COALESCE(archived_at, $7) END) \
             ELSE archived_at END, \
             pinned_at = CASE WHEN $5 THEN (CASE WHEN $6 THEN COALESCE(pinned_at, $7) END) \
             ELSE pinned_at END \
             WHERE thread_id = $1 AND user_id = $2 \
             AND EXISTS (SELECT 1 FROM threads t WHERE t.id = $1 AND t.deleted_at IS NULL) \
             RETURNING user_id")
                    .bind(thread_id)
                    .bind(user_id)
                    .bind(flags.archived.is_some())
                    .bind(flags.archived.unwrap_or(false))
                    .bind(flags.pinned.is_some())
                    .bind(flags.pinned.unwrap_or(false))
                    .bind(now),
            )
            .await?;
        Ok(done.is_some())
    }

    pub(super) async fn do_delete_thread(&self, thread_id: &str, now: i64) -> Result<Option<i64>> {
        let row = self
            .fetch_optional(
                self.q(
                    "UPDATE threads SET deleted_at = $2 WHERE id = $1 AND deleted_at IS NULL \
             RETURNING last_seq",
                )
                .bind(thread_id)
                .bind(now),
            )
            .await?;
        row.map(|r| Ok(r.try_get::<i64, _>(0)?)).transpose()
    }

    pub(super) async fn do_purge_deleted(&self, before: i64) -> Result<u64> {
        let mut tx = self.pool.begin().await?;
        let doomed = "SELECT id FROM threads WHERE deleted_at IS NOT NULL AND deleted_at < $1";
        // Deleting the messages deletes their search rows (SQLite's trigger; PostgreSQL's index
        // is on the rows themselves).
        for table in [
            "messages",
            "thread_members",
            "regenerations",
            "context_summaries",
        ] {
            self.q_built(format!("DELETE FROM {table} WHERE thread_id IN ({doomed})"))
                .bind(before)
                .execute(&mut *tx)
                .await?;
        }
        self.q_built(format!(
            "DELETE FROM thread_imports WHERE thread_id IN ({doomed})"
        ))
        .bind(before)
        .execute(&mut *tx)
        .await?;
        let gone = self
            .q("DELETE FROM threads WHERE deleted_at IS NOT NULL AND deleted_at < $1 RETURNING id")
            .bind(before)
            .fetch_all(&mut *tx)
            .await?
            .len() as u64;
        tx.commit().await?;
        Ok(gone)
    }

    pub(super) async fn do_thread_members(&self, thread_id: &str) -> Result<Vec<ThreadMember>> {
        let rows = self
            .fetch_all(
                self.q("SELECT u.id, u.username, m.added_at FROM thread_members m \
             JOIN users u ON u.id = m.user_id \
             JOIN threads t ON t.id = m.thread_id AND t.deleted_at IS NULL \
             WHERE m.thread_id = $1 ORDER BY m.added_at ASC, u.username_key ASC")
                    .bind(thread_id),
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(ThreadMember {
                    user_id: r.try_get(0)?,
                    username: r.try_get(1)?,
                    added_at: r.try_get(2)?,
                })
            })
            .collect()
    }

    pub(super) async fn do_remove_member(&self, thread_id: &str, user_id: &str) -> Result<bool> {
        let done = self.fetch_optional(self
            .q("DELETE FROM thread_members WHERE thread_id = $1 AND user_id = $2 RETURNING user_id")
            .bind(thread_id)
            .bind(user_id))
.await?;
        Ok(done.is_some())
    }

    pub(super) async fn do_export_messages(&self, thread_id: &str) -> Result<Vec<ExportedMessage>> {
        let rows = self
            .fetch_all(self.q(EXPORT_MESSAGES).bind(thread_id))
            .await?;
        rows.iter()
            .map(|r| {
                Ok(ExportedMessage {
                    message: message_row(r)?,
                    prompt_tokens: r.try_get(10)?,
                    completion_tokens: r.try_get(11)?,
                })
            })
            .collect()
    }

    pub(super) async fn do_imported_thread(
        &self,
        user_id: &str,
        content_hash: &str,
    ) -> Result<Option<String>> {
        let row = self
            .fetch_optional(
                self.q(
                    "SELECT i.thread_id FROM thread_imports i JOIN threads t ON t.id = i.thread_id \
             AND t.deleted_at IS NULL WHERE i.user_id = $1 AND i.content_hash = $2",
                )
                .bind(user_id)
                .bind(content_hash),
            )
            .await?;
        row.map(|r| Ok(r.try_get::<String, _>(0)?)).transpose()
    }

    pub(super) async fn do_import_thread(&self, import: &ImportedThread, now: i64) -> Result<()> {
        let t = &import.thread;
        let mut tx = self.pool.begin().await?;
        // A hash recorded by an import whose thread was deleted since may be imported again.
        self.q(
            "DELETE FROM thread_imports WHERE user_id = $1 AND content_hash = $2 AND thread_id IN \
             (SELECT id FROM threads WHERE deleted_at IS NOT NULL)",
        )
        .bind(t.owner_id.as_str())
        .bind(import.content_hash.as_str())
        .execute(&mut *tx)
        .await?;
        let recorded = self.q(
            "INSERT INTO thread_imports (user_id, content_hash, thread_id, imported_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (user_id, content_hash) DO NOTHING RETURNING thread_id",
        )
        .bind(t.owner_id.as_str())
        .bind(import.content_hash.as_str())
        .bind(t.id.as_str())
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        if recorded.is_none() {
            return Err(StoreError::Conflict("already imported".into()));
        }
        let count = import.messages.len() as i64;
        self.insert_thread_rows(&mut tx, t, t.created_at, count, now)
            .await?;
        let rows: Vec<_> = import.messages.iter().zip(1i64..).collect();
        for chunk in rows.chunks(1000) {
            DB::insert_rows(&mut tx, chunk, !self.pooled).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}
