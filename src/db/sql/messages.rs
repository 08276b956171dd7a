//! Messages in the SQL backends: the history pages, the idempotency lookup by `client_id`, and
//! the group commit that stores a batch with gapless `seq`s (the writer's one way in). Every
//! query that reads messages selects the columns in the order [`message_row`] reads them (the
//! tests in `sql/tests.rs` hold them to it).

use sqlx::{ColumnIndex, Decode, Encode, Executor, IntoArguments, Row, Type};

use std::collections::HashMap;

use super::{
    Dialect, Result, SqlStore,
    dialect::{LOOKUP_KEYS, RESERVE_THREADS},
};
use crate::db::{
    Author, InsertOutcome, Message, MessageMeta, NewMessage, Page,
    batch::{self, BatchPlan},
};

/// History pages. `Latest` is `Before(i64::MAX)`.
pub(super) const MESSAGES_AFTER: &str = "SELECT id, thread_id, seq, client_id, author_kind, author_id, \
     author_name, body, created_at, status, prompt_tokens, completion_tokens, meta FROM messages \
     WHERE thread_id = $1 AND seq > $2 ORDER BY seq ASC LIMIT $3";
pub(super) const MESSAGES_BEFORE: &str = "SELECT id, thread_id, seq, client_id, author_kind, author_id, \
     author_name, body, created_at, status, prompt_tokens, completion_tokens, meta FROM messages \
     WHERE thread_id = $1 AND seq < $2 ORDER BY seq DESC LIMIT $3";
pub(super) const MESSAGE_BY_CLIENT_ID: &str = "SELECT id, thread_id, seq, client_id, author_kind, author_id, \
     author_name, body, created_at, status, prompt_tokens, completion_tokens, meta FROM messages WHERE thread_id = $1 AND client_id = $2";
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
            kind: crate::db::author_kind(row.try_get::<&str, _>(4)?),
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
    pub(super) async fn messages_sql(
        &self,
        thread_id: &str,
        page: Page,
        limit: i64,
    ) -> Result<Vec<Message>> {
        let (sql, bound) = match page {
            Page::After(n) => (MESSAGES_AFTER, n),
            Page::Before(n) => (MESSAGES_BEFORE, n),
            Page::Latest => (MESSAGES_BEFORE, i64::MAX),
        };
        let rows = self
            .fetch_all(self.q(sql).bind(thread_id).bind(bound).bind(limit))
            .await?;
        let mut messages = rows.iter().map(message_row).collect::<Result<Vec<_>>>()?;
        if !matches!(page, Page::After(_)) {
            messages.reverse();
        }
        Ok(messages)
    }

    pub(super) async fn message_by_client_id_sql(
        &self,
        thread_id: &str,
        client_id: &str,
    ) -> Result<Option<Message>> {
        let row = self
            .fetch_optional(self.q(MESSAGE_BY_CLIENT_ID).bind(thread_id).bind(client_id))
            .await?;
        row.as_ref().map(message_row).transpose()
    }

    pub(super) async fn insert_messages_sql(
        &self,
        batch: &[NewMessage],
    ) -> Result<Vec<InsertOutcome>> {
        let mut conn = self.writer.acquire().await?;
        let outcomes = insert_batch::<DB>(&mut conn, batch, !self.pooled).await;
        if batch.len() > 64 {
            // A backlog batch (after an outage) grows the connection's buffers to its size;
            // they would stay that large for the connection's life.
            sqlx::Connection::shrink_buffers(&mut *conn);
        }
        outcomes
    }
}

/// Store a batch in one transaction (group commit); each new message gets the next `seq` of its
/// thread, in batch order. Three statements per batch, whatever its threads: one idempotency
/// lookup, one `last_seq` bump for every thread, then the multi-row insert.
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
    let keys: Vec<(&str, &str)> = batch::by_thread(batch)
        .into_iter()
        .flat_map(|(thread, idxs)| {
            idxs.into_iter()
                .map(move |i| (thread, batch[i].client_id.as_str()))
        })
        .collect();
    let mut already = Vec::new();
    for chunk in keys.chunks(LOOKUP_KEYS) {
        already.extend(DB::stored_client_ids(&mut tx, chunk, persistent).await?);
    }
    let mut plan = BatchPlan::new(batch, already);
    let now = batch.iter().map(|m| m.created_at).max().unwrap_or(0);
    let counts = plan.fresh_counts();
    let mut reserved: HashMap<String, i64> = HashMap::new();
    for chunk in counts.chunks(RESERVE_THREADS) {
        reserved.extend(DB::reserve_seqs(&mut tx, chunk, now, persistent).await?);
    }
    for (thread, _) in &counts {
        plan.reserved(thread, reserved.get(*thread).copied());
    }
    for chunk in plan.rows().chunks(1000) {
        DB::insert_rows(&mut tx, chunk, persistent).await?;
    }
    tx.commit().await?;
    Ok(plan.outcomes())
}
