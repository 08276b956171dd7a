//! The SQL of personas and provider connections (issue #18), written once for both engines.
//! Every change runs in one write transaction with a bump of `agents_version`, the number each
//! instance polls to learn that its agent registry is stale.

use sqlx::{ColumnIndex, Decode, Encode, Executor, IntoArguments, Row, Type};

use super::{Dialect, Result, SqlStore};
use crate::db::{
    StoreError,
    personas::{ConnectionRow, PersonaChange, PersonaRow, PersonaSnapshot},
};

const CONNECTIONS: &str = "SELECT id, name, kind, base_url, key_cipher, key_nonce, key_version, \
     key_hint, created_at, updated_at FROM provider_connections ORDER BY created_at, id";
const AGENTS: &str = "SELECT id, name, colour, system_prompt, connection_id, model, \
     temperature_milli, max_tokens, fallback_model, enabled, created_at, updated_at, \
     fallback_agent FROM agents ORDER BY created_at, id";

impl<DB> SqlStore<DB>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    for<'q> &'q str: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> String: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> Option<String>: Encode<'q, DB> + Type<DB>,
    usize: ColumnIndex<DB::Row>,
{
    pub(super) async fn personas_version_sql(&self) -> Result<i64> {
        let mut c = self.conn().await?;
        let row = self
            .q("SELECT version FROM agents_version WHERE id = 1")
            .fetch_one(c.get())
            .await?;
        c.done().await?;
        Ok(row.try_get(0)?)
    }

    pub(super) async fn personas_sql(&self) -> Result<PersonaSnapshot> {
        // One transaction: the version and the rows are of the same moment.
        let mut tx = self.pool.begin().await?;
        let version: i64 = self
            .q("SELECT version FROM agents_version WHERE id = 1")
            .fetch_one(&mut *tx)
            .await?
            .try_get(0)?;
        let connections = self
            .q(CONNECTIONS)
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|r| {
                Ok(ConnectionRow {
                    id: r.try_get(0)?,
                    name: r.try_get(1)?,
                    kind: r.try_get(2)?,
                    base_url: r.try_get(3)?,
                    key_cipher: r.try_get(4)?,
                    key_nonce: r.try_get(5)?,
                    key_version: r.try_get(6)?,
                    key_hint: r.try_get(7)?,
                    created_at: r.try_get(8)?,
                    updated_at: r.try_get(9)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let agents = self
            .q(AGENTS)
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|r| {
                let enabled: i64 = r.try_get(9)?;
                Ok(PersonaRow {
                    id: r.try_get(0)?,
                    name: r.try_get(1)?,
                    colour: r.try_get(2)?,
                    system_prompt: r.try_get(3)?,
                    connection_id: r.try_get(4)?,
                    model: r.try_get(5)?,
                    temperature_milli: r.try_get(6)?,
                    max_tokens: r.try_get(7)?,
                    fallback_model: r.try_get(8)?,
                    enabled: enabled != 0,
                    created_at: r.try_get(10)?,
                    updated_at: r.try_get(11)?,
                    fallback_agent: r.try_get(12)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        tx.commit().await?;
        Ok(PersonaSnapshot {
            version,
            connections,
            agents,
        })
    }

    pub(super) async fn change_personas_sql(&self, change: &PersonaChange) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let done = match change {
            PersonaChange::PutConnection { row, create: true } => self
                .q(
                    "INSERT INTO provider_connections (id, name, kind, base_url, key_cipher, \
                     key_nonce, key_version, key_hint, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id",
                )
                .bind(row.id.as_str())
                .bind(row.name.as_str())
                .bind(row.kind.as_str())
                .bind(row.base_url.clone())
                .bind(row.key_cipher.clone())
                .bind(row.key_nonce.clone())
                .bind(row.key_version)
                .bind(row.key_hint.clone())
                .bind(row.created_at)
                .bind(row.updated_at)
                .fetch_optional(&mut *tx)
                .await?
                .is_some(),
            PersonaChange::PutConnection { row, create: false } => self
                .q(
                    "UPDATE provider_connections SET name = $2, kind = $3, base_url = $4, \
                     key_cipher = $5, key_nonce = $6, key_version = $7, key_hint = $8, \
                     updated_at = $9 WHERE id = $1 RETURNING id",
                )
                .bind(row.id.as_str())
                .bind(row.name.as_str())
                .bind(row.kind.as_str())
                .bind(row.base_url.clone())
                .bind(row.key_cipher.clone())
                .bind(row.key_nonce.clone())
                .bind(row.key_version)
                .bind(row.key_hint.clone())
                .bind(row.updated_at)
                .fetch_optional(&mut *tx)
                .await?
                .is_some(),
            PersonaChange::DeleteConnection { id } => {
                let users: i64 = self
                    .q("SELECT count(*) FROM agents WHERE connection_id = $1")
                    .bind(id.as_str())
                    .fetch_one(&mut *tx)
                    .await?
                    .try_get(0)?;
                if users > 0 {
                    return Err(StoreError::Conflict(
                        "agents still use this connection".into(),
                    ));
                }
                self.q("DELETE FROM provider_connections WHERE id = $1 RETURNING id")
                    .bind(id.as_str())
                    .fetch_optional(&mut *tx)
                    .await?
                    .is_some()
            }
            PersonaChange::PutAgent { row, create: true } => self
                .q(
                    "INSERT INTO agents (id, name, name_key, colour, system_prompt, \
                     connection_id, model, temperature_milli, max_tokens, fallback_model, \
                     enabled, created_at, updated_at, fallback_agent) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) \
                     RETURNING id",
                )
                .bind(row.id.as_str())
                .bind(row.name.as_str())
                .bind(row.name_key())
                .bind(row.colour.clone())
                .bind(row.system_prompt.as_str())
                .bind(row.connection_id.clone())
                .bind(row.model.as_str())
                .bind(row.temperature_milli)
                .bind(row.max_tokens)
                .bind(row.fallback_model.clone())
                .bind(i64::from(row.enabled))
                .bind(row.created_at)
                .bind(row.updated_at)
                .bind(row.fallback_agent.clone())
                .fetch_optional(&mut *tx)
                .await?
                .is_some(),
            PersonaChange::PutAgent { row, create: false } => self
                .q("UPDATE agents SET name = $2, name_key = $3, colour = $4, \
                     system_prompt = $5, connection_id = $6, model = $7, \
                     temperature_milli = $8, max_tokens = $9, fallback_model = $10, \
                     enabled = $11, updated_at = $12, fallback_agent = $13 \
                     WHERE id = $1 RETURNING id")
                .bind(row.id.as_str())
                .bind(row.name.as_str())
                .bind(row.name_key())
                .bind(row.colour.clone())
                .bind(row.system_prompt.as_str())
                .bind(row.connection_id.clone())
                .bind(row.model.as_str())
                .bind(row.temperature_milli)
                .bind(row.max_tokens)
                .bind(row.fallback_model.clone())
                .bind(i64::from(row.enabled))
                .bind(row.updated_at)
                .bind(row.fallback_agent.clone())
                .fetch_optional(&mut *tx)
                .await?
                .is_some(),
            PersonaChange::DeleteAgent { id } => self
                .q("DELETE FROM agents WHERE id = $1 RETURNING id")
                .bind(id.as_str())
                .fetch_optional(&mut *tx)
                .await?
                .is_some(),
        };
        if done {
            self.q("UPDATE agents_version SET version = version + 1 WHERE id = 1")
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        }
        Ok(done)
    }
}
