//! The SQL of regenerated answers (issue 16), written once for both engines: one message by its
//! id, and the once-per-`client_id` record of regenerate requests (`regenerations`).

use sqlx::{ColumnIndex, Decode, Encode, Executor, IntoArguments, Row, Type};

use super::{Dialect, Result, SqlStore, message_row};
use crate::db::{Message, versions::Regeneration};

/// One message of a thread by its id.
pub(super) const MESSAGE_BY_ID: &str = "SELECT id, thread_id, seq, client_id, author_kind, \
     author_id, author_name, body, created_at, status, prompt_tokens, completion_tokens, meta \
     FROM messages WHERE thread_id = $1 AND id = $2";

/// A regenerate request's columns, in the order `regeneration_row` reads them.
const REGENERATION_BY_CLIENT_ID: &str = "SELECT thread_id, client_id, requester_id, message_id, \
     version_of, agent_id, created_at FROM regenerations WHERE thread_id = $1 AND client_id = $2";

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
    pub(super) async fn do_message_by_id(
        &self,
        thread_id: &str,
        id: &str,
    ) -> Result<Option<Message>> {
        let row = self
            .fetch_optional(self.q(MESSAGE_BY_ID).bind(thread_id).bind(id))
            .await?;
        row.as_ref().map(message_row).transpose()
    }

    /// Insert unless the `(thread, client_id)` is taken, then read what is stored: both in one
    /// connection (one transaction behind a pooler), race-free through the primary key.
    pub(super) async fn do_claim_regeneration(&self, r: &Regeneration) -> Result<Regeneration> {
        let mut c = self.conn().await?;
        self.q(
            "INSERT INTO regenerations (thread_id, client_id, requester_id, message_id, \
             version_of, agent_id, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (thread_id, client_id) DO NOTHING",
        )
        .bind(r.thread_id.as_str())
        .bind(r.client_id.as_str())
        .bind(r.requester_id.as_str())
        .bind(r.message_id.as_str())
        .bind(r.version_of.as_str())
        .bind(r.agent_id.as_str())
        .bind(r.created_at)
        .execute(c.get())
        .await?;
        let row = self
            .q(REGENERATION_BY_CLIENT_ID)
            .bind(r.thread_id.as_str())
            .bind(r.client_id.as_str())
            .fetch_one(c.get())
            .await?;
        c.done().await?;
        Ok(Regeneration {
            thread_id: row.try_get(0)?,
            client_id: row.try_get(1)?,
            requester_id: row.try_get(2)?,
            message_id: row.try_get(3)?,
            version_of: row.try_get(4)?,
            agent_id: row.try_get(5)?,
            created_at: row.try_get(6)?,
        })
    }
}
