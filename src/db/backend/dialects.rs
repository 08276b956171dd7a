//! Where the two dialects differ: the group commit's idempotency lookup and multi-row insert,
//! as SQLite `IN` lists and PostgreSQL array parameters (`ANY`, `unnest`), each shaped so its
//! statement text does not vary with the batch size where the engine would re-plan it.

use super::{PgStore, Result, SqliteStore};
use crate::db::{Message, NewMessage};

impl SqliteStore {
    /// Messages of `thread` already stored under these client ids.
    pub(super) async fn stored_client_ids(
        tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
        thread: &str,
        ids: &[&str],
    ) -> Result<Vec<Message>> {
        let mut qb = sqlx::QueryBuilder::<sqlx::Sqlite>::new(concat!(
            "SELECT ",
            message_columns!(),
            " FROM messages WHERE thread_id = "
        ));
        qb.push_bind(thread);
        qb.push(" AND client_id IN (");
        let mut list = qb.separated(", ");
        for id in ids {
            list.push_bind(*id);
        }
        qb.push(")");
        // Not cached: the text varies with the batch size, and caching every size would hold
        // prepared statements (and memory) for each one.
        let rows = qb.build().persistent(false).fetch_all(&mut **tx).await?;
        rows.iter().map(Self::message_row).collect()
    }

    /// One multi-row INSERT (SQLite has no array parameters).
    pub(super) async fn insert_rows(
        tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
        rows: &[(&NewMessage, i64)],
    ) -> Result<()> {
        let mut qb = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
            "INSERT INTO messages (id, thread_id, seq, client_id, author_kind, author_id, author_name, \
             body, created_at, status, prompt_tokens, completion_tokens) ",
        );
        qb.push_values(rows, |mut b, (m, seq)| {
            b.push_bind(m.id.as_str())
                .push_bind(m.thread_id.as_str())
                .push_bind(*seq)
                .push_bind(m.client_id.as_str())
                .push_bind(m.author.kind.as_str())
                .push_bind(m.author.id.as_str())
                .push_bind(m.author.name.as_str())
                .push_bind(m.body.as_str())
                .push_bind(m.created_at)
                .push_bind(m.status.as_deref())
                .push_bind(m.prompt_tokens)
                .push_bind(m.completion_tokens);
        });
        qb.build().persistent(false).execute(&mut **tx).await?;
        Ok(())
    }
}

impl PgStore {
    /// Messages of `thread` already stored under these client ids: one statement text for every
    /// batch size (an array parameter), so it is prepared once per connection, and a shape that
    /// can only use the `(thread_id, client_id)` index.
    pub(super) async fn stored_client_ids(
        tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
        thread: &str,
        ids: &[&str],
    ) -> Result<Vec<Message>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            message_columns!(),
            " FROM messages WHERE thread_id = $1 AND client_id = ANY($2::text[])"
        ))
        .bind(thread)
        .bind(ids)
        .fetch_all(&mut **tx)
        .await?;
        rows.iter().map(Self::message_row).collect()
    }

    /// One `INSERT ... SELECT FROM unnest(...)` with a column array per field: one prepared
    /// statement for every batch size, and no per-row parameter parsing.
    pub(super) async fn insert_rows(
        tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
        rows: &[(&NewMessage, i64)],
    ) -> Result<()> {
        let col =
            |f: fn(&NewMessage) -> &str| rows.iter().map(|(m, _)| f(m)).collect::<Vec<&str>>();
        let seqs: Vec<i64> = rows.iter().map(|(_, s)| *s).collect();
        let created: Vec<i64> = rows.iter().map(|(m, _)| m.created_at).collect();
        let status: Vec<Option<&str>> = rows.iter().map(|(m, _)| m.status.as_deref()).collect();
        let prompt: Vec<Option<i64>> = rows.iter().map(|(m, _)| m.prompt_tokens).collect();
        let completion: Vec<Option<i64>> = rows.iter().map(|(m, _)| m.completion_tokens).collect();
        sqlx::query(
            "INSERT INTO messages (id, thread_id, seq, client_id, author_kind, author_id, author_name, \
             body, created_at, status, prompt_tokens, completion_tokens) \
             SELECT * FROM unnest($1::text[], $2::text[], $3::int8[], $4::text[], $5::text[], \
             $6::text[], $7::text[], $8::text[], $9::int8[], $10::text[], $11::int8[], $12::int8[])",
        )
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
        .execute(&mut **tx)
        .await?;
        Ok(())
    }
}
