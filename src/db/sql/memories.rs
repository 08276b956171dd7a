//! The SQL of per-user memory (issue #19, docs/memories.md), written once for both engines.
//! Every statement names the owner (`user_id`) next to the item, so an item is never read,
//! changed or deleted for anyone else. Adding an item first touches the owner's
//! `memory_optin` row (an upsert that changes nothing): on PostgreSQL that row lock, on SQLite
//! `BEGIN IMMEDIATE`, serialises one user's additions, so the count limit holds exactly.

use async_trait::async_trait;
use sqlx::{ColumnIndex, Decode, Encode, Executor, IntoArguments, Row, Type};

use super::{Dialect, Result, SqlStore};
use crate::db::memories::{Added, MemoriesStore, MemoryItem, MemoryPage};

/// Every query that reads items selects these columns, in the order `item_row` reads them.
const COLUMNS: &str = "id, user_id, kind, text, dedupe_key, source_thread_id, \
     source_message_id, created_at, updated_at";

fn item_row<R>(row: &R) -> Result<MemoryItem>
where
    R: Row,
    usize: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(MemoryItem {
        id: row.try_get(0)?,
        user_id: row.try_get(1)?,
        kind: row.try_get(2)?,
        text: row.try_get(3)?,
        dedupe_key: row.try_get(4)?,
        source_thread_id: row.try_get(5)?,
        source_message_id: row.try_get(6)?,
        created_at: row.try_get(7)?,
        updated_at: row.try_get(8)?,
    })
}

#[async_trait]
impl<DB> MemoriesStore for SqlStore<DB>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    for<'q> &'q str: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> String: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> Option<&'q str>: Encode<'q, DB> + Type<DB>,
    for<'q> Option<String>: Encode<'q, DB> + Type<DB>,
    usize: ColumnIndex<DB::Row>,
{
    async fn memories_enabled(&self, user_id: &str) -> Result<Option<i64>> {
        let row = self
            .fetch_optional(
                self.q("SELECT updated_at FROM memory_optin WHERE user_id = $1 AND enabled <> 0")
                    .bind(user_id),
            )
            .await?;
        row.map(|r| r.try_get::<i64, _>(0))
            .transpose()
            .map_err(Into::into)
    }

    async fn members_with_memory(&self, thread_id: &str) -> Result<Vec<String>> {
        let rows = self
            .fetch_all(
                self.q("SELECT m.user_id FROM thread_members m \
                     JOIN threads t ON t.id = m.thread_id AND t.deleted_at IS NULL \
                     JOIN memory_optin o ON o.user_id = m.user_id AND o.enabled <> 0 \
                     WHERE m.thread_id = $1")
                    .bind(thread_id),
            )
            .await?;
        rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
    }

    async fn set_memories_enabled(&self, user_id: &str, enabled: bool, now: i64) -> Result<()> {
        self.execute(
            self.q(
                "INSERT INTO memory_optin (user_id, enabled, updated_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (user_id) DO UPDATE SET enabled = $2, updated_at = CASE \
                 WHEN memory_optin.enabled = $2 THEN memory_optin.updated_at ELSE $3 END",
            )
            .bind(user_id)
            .bind(i64::from(enabled))
            .bind(now),
        )
        .await
    }

    async fn memory_count(&self, user_id: &str) -> Result<i64> {
        let row = self
            .fetch_optional(
                self.q("SELECT count(*) FROM memories WHERE user_id = $1")
                    .bind(user_id),
            )
            .await?;
        Ok(match row {
            Some(r) => r.try_get(0)?,
            None => 0,
        })
    }

    async fn memory_page(&self, page: &MemoryPage) -> Result<Vec<MemoryItem>> {
        let rows = self
            .fetch_all(
                self.q_built(format!(
                    "SELECT {COLUMNS} FROM memories WHERE user_id = $1 \
                     AND ($2 IS NULL OR kind = $2) AND ($3 IS NULL OR id < $3) \
                     ORDER BY id DESC LIMIT $4"
                ))
                .bind(page.user_id.as_str())
                .bind(page.kind.clone())
                .bind(page.before.clone())
                .bind(page.limit),
            )
            .await?;
        rows.iter().map(item_row).collect()
    }

    async fn add_memory(&self, item: &MemoryItem, max_items: i64, replace: bool) -> Result<Added> {
        let mut tx = self.begin_write().await?;
        // Serialise this user's additions (see the module's comment); changes nothing.
        self.q(
            "INSERT INTO memory_optin (user_id, enabled, updated_at) VALUES ($1, 0, $2) \
             ON CONFLICT (user_id) DO UPDATE SET updated_at = memory_optin.updated_at",
        )
        .bind(item.user_id.as_str())
        .bind(item.created_at)
        .execute(&mut *tx)
        .await?;
        let existing = self
            .q_built(format!(
                "SELECT {COLUMNS} FROM memories WHERE user_id = $1 AND dedupe_key = $2"
            ))
            .bind(item.user_id.as_str())
            .bind(item.dedupe_key.as_str())
            .fetch_optional(&mut *tx)
            .await?;
        if let Some(row) = existing {
            let found = item_row(&row)?;
            if !replace {
                tx.commit().await?;
                return Ok(Added::Duplicate(found));
            }
            let row = self
                .q_built(format!(
                    "UPDATE memories SET text = $3, source_thread_id = $4, \
                     source_message_id = $5, updated_at = $6 \
                     WHERE user_id = $1 AND id = $2 RETURNING {COLUMNS}"
                ))
                .bind(item.user_id.as_str())
                .bind(found.id.as_str())
                .bind(item.text.as_str())
                .bind(item.source_thread_id.clone())
                .bind(item.source_message_id.clone())
                .bind(item.updated_at)
                .fetch_one(&mut *tx)
                .await?;
            tx.commit().await?;
            return Ok(Added::Stored(item_row(&row)?));
        }
        let count: i64 = self
            .q("SELECT count(*) FROM memories WHERE user_id = $1")
            .bind(item.user_id.as_str())
            .fetch_one(&mut *tx)
            .await?
            .try_get(0)?;
        if count >= max_items {
            tx.commit().await?;
            return Ok(Added::Full);
        }
        let row = self
            .q_built(format!(
                "INSERT INTO memories ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                 RETURNING {COLUMNS}"
            ))
            .bind(item.id.as_str())
            .bind(item.user_id.as_str())
            .bind(item.kind.as_str())
            .bind(item.text.as_str())
            .bind(item.dedupe_key.as_str())
            .bind(item.source_thread_id.clone())
            .bind(item.source_message_id.clone())
            .bind(item.created_at)
            .bind(item.updated_at)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Added::Stored(item_row(&row)?))
    }

    async fn update_memory(
        &self,
        user_id: &str,
        id: &str,
        text: &str,
        dedupe_key: &str,
        now: i64,
    ) -> Result<Option<MemoryItem>> {
        let row = self
            .fetch_optional(
                self.q_built(format!(
                    "UPDATE memories SET text = $3, updated_at = $5, \
                     dedupe_key = CASE WHEN kind = 'fact' THEN $4 ELSE dedupe_key END \
                     WHERE user_id = $1 AND id = $2 RETURNING {COLUMNS}"
                ))
                .bind(user_id)
                .bind(id)
                .bind(text)
                .bind(dedupe_key)
                .bind(now),
            )
            .await?;
        row.as_ref().map(item_row).transpose()
    }

    async fn delete_memory(&self, user_id: &str, id: &str) -> Result<Option<MemoryItem>> {
        let row = self
            .fetch_optional(
                self.q_built(format!(
                    "DELETE FROM memories WHERE user_id = $1 AND id = $2 RETURNING {COLUMNS}"
                ))
                .bind(user_id)
                .bind(id),
            )
            .await?;
        row.as_ref().map(item_row).transpose()
    }

    async fn delete_all_memories(&self, user_id: &str) -> Result<u64> {
        let rows = self
            .fetch_all(
                self.q("DELETE FROM memories WHERE user_id = $1 RETURNING id")
                    .bind(user_id),
            )
            .await?;
        Ok(rows.len() as u64)
    }
}
