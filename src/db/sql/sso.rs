//! The single sign-on half of [`SqlStore`] (issue #15): identities linked by `(issuer,
//! subject)` and the single-use pending rows. The same SQL serves SQLite and PostgreSQL;
//! `Store` in `sql/mod.rs` delegates here.
//!
//! Taking a pending row is one `DELETE ... RETURNING`: of two instances (or two browser tabs)
//! presenting the same `state` or hand-over code, exactly one gets the row.

use sqlx::{ColumnIndex, Decode, Encode, Executor, IntoArguments, Row, Type};

use super::{Dialect, Result, SqlStore};
use crate::db::{
    User,
    accounts::{NewAccount, Registered},
    sso::{SsoIdentity, SsoPending},
};

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
    pub(super) async fn put_sso_pending_sql(&self, p: &SsoPending) -> Result<()> {
        let mut c = self.conn().await?;
        // Housekeeping: rows nobody came back for.
        self.q("DELETE FROM sso_pending WHERE expires_at < $1")
            .bind(p.created_at)
            .execute(c.get())
            .await?;
        self.q(
            "INSERT INTO sso_pending (key_hash, kind, provider, nonce, pkce_verifier, \
             browser_hash, invite_hash, user_id, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(p.key_hash.as_str())
        .bind(p.kind.as_str())
        .bind(p.provider.as_str())
        .bind(p.nonce.clone())
        .bind(p.pkce_verifier.clone())
        .bind(p.browser_hash.clone())
        .bind(p.invite_hash.clone())
        .bind(p.user_id.clone())
        .bind(p.created_at)
        .bind(p.expires_at)
        .execute(c.get())
        .await?;
        c.done().await
    }

    pub(super) async fn take_sso_pending_sql(
        &self,
        kind: &str,
        key_hash: &str,
        now: i64,
    ) -> Result<Option<SsoPending>> {
        let row = self
            .fetch_optional(
                self.q(
                    "DELETE FROM sso_pending WHERE key_hash = $1 AND kind = $2 RETURNING \
                     key_hash, kind, provider, nonce, pkce_verifier, browser_hash, invite_hash, \
                     user_id, created_at, expires_at",
                )
                .bind(key_hash)
                .bind(kind),
            )
            .await?;
        let Some(r) = row else { return Ok(None) };
        let pending = SsoPending {
            key_hash: r.try_get(0)?,
            kind: r.try_get(1)?,
            provider: r.try_get(2)?,
            nonce: r.try_get(3)?,
            pkce_verifier: r.try_get(4)?,
            browser_hash: r.try_get(5)?,
            invite_hash: r.try_get(6)?,
            user_id: r.try_get(7)?,
            created_at: r.try_get(8)?,
            expires_at: r.try_get(9)?,
        };
        // Taken either way: an expired row is gone too.
        Ok((pending.expires_at > now).then_some(pending))
    }

    pub(super) async fn sso_user_sql(&self, issuer: &str, subject: &str) -> Result<Option<User>> {
        let row = self
            .fetch_optional(
                self.q("SELECT user_id FROM sso_identities WHERE issuer = $1 AND subject = $2")
                    .bind(issuer)
                    .bind(subject),
            )
            .await?;
        match row {
            Some(r) => {
                let id: String = r.try_get(0)?;
                self.user_by("id", &id).await
            }
            None => Ok(None),
        }
    }

    pub(super) async fn register_sso_user_sql(
        &self,
        a: &NewAccount,
        identity: &SsoIdentity,
    ) -> Result<Registered> {
        let mut tx = self.begin_write().await?;
        let outcome = self.register_in(&mut tx, a).await?;
        if !matches!(outcome, Registered::Created(_)) {
            return Ok(outcome);
        }
        let linked = self
            .q(
                "INSERT INTO sso_identities (issuer, subject, user_id, provider, created_at) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (issuer, subject) DO NOTHING \
                 RETURNING user_id",
            )
            .bind(identity.issuer.as_str())
            .bind(identity.subject.as_str())
            .bind(a.id.as_str())
            .bind(identity.provider.as_str())
            .bind(a.now)
            .fetch_optional(&mut *tx)
            .await?;
        if linked.is_none() {
            // Linked meanwhile (the same person signing in twice at once): roll the account back.
            return Ok(Registered::Taken);
        }
        tx.commit().await?;
        Ok(outcome)
    }
}
