//! The SQL of context summaries (issue #18), written once for both engines: one row per thread
//! and agent, replaced only by a summary that covers more.

use sqlx::{ColumnIndex, Decode, Encode, Executor, IntoArguments, Row, Type};

use super::{Dialect, Result, SqlStore};
use crate::db::summaries::ContextSummary;

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
    pub(super) async fn context_summary_sql(
        &self,
        thread_id: &str,
        agent_id: &str,
    ) -> Result<Option<ContextSummary>> {
        let row = self
            .fetch_optional(
                self.q(
                    "SELECT thread_id, agent_id, through_seq, body, method, updated_at \
                     FROM context_summaries WHERE thread_id = $1 AND agent_id = $2",
                )
                .bind(thread_id)
                .bind(agent_id),
            )
            .await?;
        row.map(|r| {
            Ok(ContextSummary {
                thread_id: r.try_get(0)?,
                agent_id: r.try_get(1)?,
                through_seq: r.try_get(2)?,
                body: r.try_get(3)?,
                method: r.try_get(4)?,
                updated_at: r.try_get(5)?,
            })
        })
        .transpose()
    }

    /// Insert, or replace a summary that covers fewer messages (two instances summarising at
    /// once: the one that covers more wins, whatever the order).
    pub(super) async fn put_context_summary_sql(&self, s: &ContextSummary) -> Result<()> {
        let mut c = self.conn().await?;
        self.q(
            "INSERT INTO context_summaries (thread_id, agent_id, through_seq, body, method, \
             updated_at) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (thread_id, agent_id) DO UPDATE SET through_seq = excluded.through_seq, \
             body = excluded.body, method = excluded.method, updated_at = excluded.updated_at \
             WHERE context_summaries.through_seq < excluded.through_seq",
        )
        .bind(s.thread_id.as_str())
        .bind(s.agent_id.as_str())
        .bind(s.through_seq)
        .bind(s.body.as_str())
        .bind(s.method.as_str())
        .bind(s.updated_at)
        .execute(c.get())
        .await?;
        c.done().await?;
        Ok(())
    }
}
