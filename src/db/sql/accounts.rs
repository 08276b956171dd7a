//! The accounts half of [`SqlStore`] (issue #15): registration with the first-admin rule,
//! roles and status, session and API-token rows, invite and reset links. The same SQL serves
//! SQLite and PostgreSQL; `Store` in `sql/mod.rs` delegates here.
//!
//! Two decisions must be race-free across instances: "is this the first account?" and "does
//! this change leave an admin?". Both take a write lock first: registration inserts the
//! `first_user` kv row (the unique key decides who was first; the insert rolls back with the
//! account), and admin changes update that same row before reading the admin count, which
//! serialises them on PostgreSQL (row lock) as SQLite's `BEGIN IMMEDIATE` does.

use sqlx::{ColumnIndex, Decode, Encode, Executor, IntoArguments, Row, Type};

use super::{Dialect, Result, SqlStore};
use crate::db::{
    StoreError, User,
    accounts::{
        AccessChange, AccessOutcome, Account, AccountLink, LINK_INVITE, LINK_RESET, NewAccount,
        Registered, Role, SessionRow, Status,
    },
};

const ACCOUNT_COLUMNS: &str = "SELECT id, username, role, status, created_at FROM users";
const SESSION_COLUMNS: &str =
    "SELECT id, user_id, kind, name, scope, token_hash, created_at, expires_at FROM sessions";
const LINK_COLUMNS: &str = "SELECT id, purpose, token_hash, user_id, created_by, created_at, \
     expires_at, used_at, revoked_at FROM account_links";

fn account_row<R>(r: &R) -> Result<Account>
where
    R: Row,
    usize: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(Account {
        id: r.try_get(0)?,
        username: r.try_get(1)?,
        role: Role::parse(&r.try_get::<String, _>(2)?).unwrap_or(Role::User),
        status: Status::parse(&r.try_get::<String, _>(3)?).unwrap_or(Status::Disabled),
        created_at: r.try_get(4)?,
    })
}

fn session_row<R>(r: &R) -> Result<SessionRow>
where
    R: Row,
    usize: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(SessionRow {
        id: r.try_get(0)?,
        user_id: r.try_get(1)?,
        kind: r.try_get(2)?,
        name: r.try_get(3)?,
        scope: r.try_get(4)?,
        token_hash: r.try_get(5)?,
        created_at: r.try_get(6)?,
        expires_at: r.try_get(7)?,
    })
}

fn link_row<R>(r: &R) -> Result<AccountLink>
where
    R: Row,
    usize: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(AccountLink {
        id: r.try_get(0)?,
        purpose: r.try_get(1)?,
        token_hash: r.try_get(2)?,
        user_id: r.try_get(3)?,
        created_by: r.try_get(4)?,
        created_at: r.try_get(5)?,
        expires_at: r.try_get(6)?,
        used_at: r.try_get(7)?,
        revoked_at: r.try_get(8)?,
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
    for<'q> Option<String>: Encode<'q, DB> + Type<DB>,
    usize: ColumnIndex<DB::Row>,
{
    pub(super) async fn register_user_sql(&self, a: &NewAccount) -> Result<Registered> {
        let mut tx = self.begin_write().await?;
        let outcome = self.register_in(&mut tx, a).await?;
        if matches!(outcome, Registered::Created(_)) {
            tx.commit().await?;
        }
        Ok(outcome)
    }

    /// The registration itself, in a write transaction the caller commits when the account is
    /// `Created` (and drops otherwise, which rolls back the first-user claim and the invite).
    pub(super) async fn register_in(
        &self,
        tx: &mut sqlx::Transaction<'static, DB>,
        a: &NewAccount,
    ) -> Result<Registered> {
        // Whoever inserts this row first is the first account (and the admin).
        let first = self
            .q("INSERT INTO kv (key, value) VALUES ('first_user', $1) \
             ON CONFLICT (key) DO NOTHING RETURNING value")
            .bind(a.id.as_str())
            .fetch_optional(&mut **tx)
            .await?
            .is_some();
        let (role, status) = if first || a.admin {
            (Role::Admin, Status::Active)
        } else {
            use crate::db::accounts::Registration as M;
            match a.mode {
                M::Open => (Role::User, Status::Active),
                M::Approval => (Role::User, Status::Pending),
                M::Closed => return Ok(Registered::Closed),
                M::Invite => {
                    let Some(hash) = a.invite_hash.as_deref() else {
                        return Ok(Registered::InviteInvalid);
                    };
                    let used = self
                        .q("UPDATE account_links SET used_at = $2, used_by = $3 \
                         WHERE token_hash = $1 AND purpose = 'invite' AND used_at IS NULL \
                         AND revoked_at IS NULL AND expires_at > $2 RETURNING id")
                        .bind(hash)
                        .bind(a.now)
                        .bind(a.id.as_str())
                        .fetch_optional(&mut **tx)
                        .await?;
                    if used.is_none() {
                        return Ok(Registered::InviteInvalid);
                    }
                    (Role::User, Status::Active)
                }
            }
        };
        let inserted = self
            .q(
                "INSERT INTO users (id, username, username_key, password_hash, created_at, role, \
             status) VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (username_key) DO NOTHING RETURNING id",
            )
            .bind(a.id.as_str())
            .bind(a.username.as_str())
            .bind(a.key.as_str())
            .bind(a.password_hash.as_str())
            .bind(a.now)
            .bind(role.as_str())
            .bind(status.as_str())
            .fetch_optional(&mut **tx)
            .await?;
        if inserted.is_none() {
            // The caller rolls back the first-user claim and the invite with it.
            return Ok(Registered::Taken);
        }
        Ok(Registered::Created(Account {
            id: a.id.clone(),
            username: a.username.clone(),
            role,
            status,
            created_at: a.now,
        }))
    }

    pub(super) async fn user_by(&self, column: &str, value: &str) -> Result<Option<User>> {
        let sql = format!(
            "SELECT id, username, password_hash, role, status FROM users WHERE {column} = $1"
        );
        let row = self.fetch_optional(self.q_built(sql).bind(value)).await?;
        row.map(|r| {
            Ok(User {
                id: r.try_get(0)?,
                username: r.try_get(1)?,
                password_hash: r.try_get(2)?,
                role: Role::parse(&r.try_get::<String, _>(3)?).unwrap_or(Role::User),
                status: Status::parse(&r.try_get::<String, _>(4)?).unwrap_or(Status::Disabled),
            })
        })
        .transpose()
    }

    pub(super) async fn accounts_sql(&self) -> Result<Vec<Account>> {
        let sql = format!("{ACCOUNT_COLUMNS} ORDER BY created_at, id");
        let rows = self.fetch_all(self.q_built(sql)).await?;
        rows.iter().map(account_row).collect()
    }

    pub(super) async fn set_access_sql(
        &self,
        user_id: &str,
        change: AccessChange,
    ) -> Result<AccessOutcome> {
        let mut tx = self.begin_write().await?;
        // The admin lock (see the module's comment).
        self.q("UPDATE kv SET value = value WHERE key = 'first_user'")
            .execute(&mut *tx)
            .await?;
        let (column, value) = match change {
            AccessChange::Role(r) => ("role", r.as_str()),
            AccessChange::Status(s) => ("status", s.as_str()),
        };
        let sql = format!("UPDATE users SET {column} = $2 WHERE id = $1 RETURNING id");
        let done = self
            .q_built(sql)
            .bind(user_id)
            .bind(value)
            .fetch_optional(&mut *tx)
            .await?;
        if done.is_none() {
            return Ok(AccessOutcome::NotFound);
        }
        let admins: i64 = self
            .q("SELECT count(*) FROM users WHERE role = 'admin' AND status = 'active'")
            .fetch_one(&mut *tx)
            .await?
            .try_get(0)?;
        if admins == 0 {
            return Ok(AccessOutcome::LastAdmin);
        }
        let sql = format!("{ACCOUNT_COLUMNS} WHERE id = $1");
        let row = self.q_built(sql).bind(user_id).fetch_one(&mut *tx).await?;
        let account = account_row(&row)?;
        tx.commit().await?;
        Ok(AccessOutcome::Changed(account))
    }

    pub(super) async fn set_password_sql(&self, user_id: &str, hash: &str) -> Result<bool> {
        let done = self
            .fetch_optional(
                self.q("UPDATE users SET password_hash = $2 WHERE id = $1 RETURNING id")
                    .bind(user_id)
                    .bind(hash),
            )
            .await?;
        Ok(done.is_some())
    }

    pub(super) async fn create_session_row_sql(&self, s: &SessionRow) -> Result<()> {
        self.execute(
            self.q(
                "INSERT INTO sessions (id, user_id, created_at, expires_at, kind, name, scope, \
                 token_hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(s.id.as_str())
            .bind(s.user_id.as_str())
            .bind(s.created_at)
            .bind(s.expires_at)
            .bind(s.kind.as_str())
            .bind(s.name.clone())
            .bind(s.scope.clone())
            .bind(s.token_hash.clone()),
        )
        .await
    }

    pub(super) async fn sessions_of_sql(
        &self,
        user_id: &str,
        kind: &str,
        now: i64,
    ) -> Result<Vec<SessionRow>> {
        let sql = format!(
            "{SESSION_COLUMNS} WHERE user_id = $1 AND kind = $2 AND revoked_at IS NULL \
             AND expires_at > $3 ORDER BY created_at DESC, id DESC"
        );
        let rows = self
            .fetch_all(self.q_built(sql).bind(user_id).bind(kind).bind(now))
            .await?;
        rows.iter().map(session_row).collect()
    }

    pub(super) async fn revoke_sessions_of_sql(
        &self,
        user_id: &str,
        kind: Option<&str>,
        keep: Option<&str>,
        now: i64,
    ) -> Result<Vec<(String, i64)>> {
        let rows = self
            .fetch_all(
                self.q("UPDATE sessions SET revoked_at = $2 WHERE user_id = $1 \
                     AND revoked_at IS NULL AND ($3 = '' OR kind = $3) AND id <> $4 \
                     RETURNING id, expires_at")
                    .bind(user_id)
                    .bind(now)
                    .bind(kind.unwrap_or(""))
                    .bind(keep.unwrap_or("")),
            )
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
    }

    pub(super) async fn revoke_session_of_sql(
        &self,
        user_id: &str,
        id: &str,
        kind: &str,
        now: i64,
    ) -> Result<Option<i64>> {
        let row = self
            .fetch_optional(
                self.q(
                    "UPDATE sessions SET revoked_at = $4 WHERE id = $1 AND user_id = $2 \
                     AND kind = $3 AND revoked_at IS NULL AND expires_at > $4 \
                     RETURNING expires_at",
                )
                .bind(id)
                .bind(user_id)
                .bind(kind)
                .bind(now),
            )
            .await?;
        row.map(|r| Ok(r.try_get(0)?)).transpose()
    }

    pub(super) async fn create_link_sql(&self, l: &AccountLink) -> Result<()> {
        if l.purpose != LINK_INVITE && l.purpose != LINK_RESET {
            return Err(StoreError::Other(anyhow::anyhow!("unknown link purpose")));
        }
        self.execute(
            self.q(
                "INSERT INTO account_links (id, purpose, token_hash, user_id, created_by, \
                 created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(l.id.as_str())
            .bind(l.purpose.as_str())
            .bind(l.token_hash.as_str())
            .bind(l.user_id.clone())
            .bind(l.created_by.as_str())
            .bind(l.created_at)
            .bind(l.expires_at),
        )
        .await
    }

    pub(super) async fn open_links_sql(&self, purpose: &str, now: i64) -> Result<Vec<AccountLink>> {
        let sql = format!(
            "{LINK_COLUMNS} WHERE purpose = $1 AND used_at IS NULL AND revoked_at IS NULL \
             AND expires_at > $2 ORDER BY created_at DESC, id DESC"
        );
        let rows = self
            .fetch_all(self.q_built(sql).bind(purpose).bind(now))
            .await?;
        rows.iter().map(link_row).collect()
    }

    pub(super) async fn revoke_link_sql(&self, id: &str, purpose: &str, now: i64) -> Result<bool> {
        let done = self
            .fetch_optional(
                self.q(
                    "UPDATE account_links SET revoked_at = $3 WHERE id = $1 AND purpose = $2 \
                     AND used_at IS NULL AND revoked_at IS NULL RETURNING id",
                )
                .bind(id)
                .bind(purpose)
                .bind(now),
            )
            .await?;
        Ok(done.is_some())
    }

    pub(super) async fn use_reset_link_sql(
        &self,
        token_hash: &str,
        password_hash: &str,
        now: i64,
    ) -> Result<Option<String>> {
        let mut tx = self.begin_write().await?;
        let row = self
            .q(
                "UPDATE account_links SET used_at = $2, used_by = user_id WHERE token_hash = $1 \
             AND purpose = 'reset' AND used_at IS NULL AND revoked_at IS NULL \
             AND expires_at > $2 RETURNING user_id",
            )
            .bind(token_hash)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let user_id: String = row.try_get(0)?;
        self.q("UPDATE users SET password_hash = $2 WHERE id = $1")
            .bind(user_id.as_str())
            .bind(password_hash)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Some(user_id))
    }
}
