//! The usage half of [`SqlStore`] (issue #15): usage sums, token limits and the per-period
//! budget counters. The same SQL serves SQLite and PostgreSQL except for reading the model out of
//! the `meta` JSON (`json_extract` / `->>`). `Store` in `sql/mod.rs` delegates here.
//!
//! A reservation is race-free across instances: each period's counter row is updated with the
//! budget check in its `WHERE` clause, inside one write transaction (PostgreSQL re-checks the
//! clause after waiting for the row lock; SQLite's `BEGIN IMMEDIATE` serialises writers), so two
//! answers can never both take the last of a budget.

use sqlx::{ColumnIndex, Decode, Encode, Executor, IntoArguments, Row, Type};

use super::{Dialect, Result, SqlStore};
use crate::db::usage::{BudgetRow, Counter, PeriodLimit, UsageGroup, UsageQuery};

/// The usage sum, with `$model` the engine's way to read `meta.model`, and `$who` the filter.
macro_rules! usage_sql {
    ($model:literal, $who:literal) => {
        concat!(
            "SELECT requester_id, created_at / 86400000 AS day, author_id, ",
            $model,
            " AS model, COUNT(*), CAST(COALESCE(SUM(prompt_tokens), 0) AS BIGINT), \
             CAST(COALESCE(SUM(completion_tokens), 0) AS BIGINT) FROM messages \
             WHERE requester_id IS NOT NULL AND created_at >= $1 AND created_at < $2",
            $who,
            " GROUP BY requester_id, day, author_id, model ORDER BY day, author_id, model"
        )
    };
}

const SQLITE_USAGE_ALL: &str = usage_sql!("json_extract(meta, '$.model')", "");
const SQLITE_USAGE_ONE: &str =
    usage_sql!("json_extract(meta, '$.model')", " AND requester_id = $3");
const PG_USAGE_ALL: &str = usage_sql!("(meta::jsonb ->> 'model')", "");
const PG_USAGE_ONE: &str = usage_sql!("(meta::jsonb ->> 'model')", " AND requester_id = $3");

/// This engine's usage query, for one requester or for everyone.
fn usage_query<DB: Dialect>(one: bool) -> &'static str {
    match (DB::BACKEND, one) {
        ("sqlite", false) => SQLITE_USAGE_ALL,
        ("sqlite", true) => SQLITE_USAGE_ONE,
        (_, false) => PG_USAGE_ALL,
        (_, true) => PG_USAGE_ONE,
    }
}

const BUDGET_ROWS: &str = "SELECT b.user_id, u.username, b.daily_tokens, b.monthly_tokens \
     FROM usage_budgets b LEFT JOIN users u ON u.id = b.user_id";

fn budget_row<R>(r: &R) -> Result<BudgetRow>
where
    R: Row,
    usize: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(BudgetRow {
        user_id: r.try_get(0)?,
        username: r.try_get(1)?,
        daily_tokens: r.try_get(2)?,
        monthly_tokens: r.try_get(3)?,
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
    pub(super) async fn usage_sql(&self, q: &UsageQuery) -> Result<Vec<UsageGroup>> {
        let mut query = self
            .q(usage_query::<DB>(q.user_id.is_some()))
            .bind(q.from_ms)
            .bind(q.to_ms);
        if let Some(user) = &q.user_id {
            query = query.bind(user.clone());
        }
        let rows = self.fetch_all(query).await?;
        rows.iter()
            .map(|r| {
                Ok(UsageGroup {
                    user_id: r.try_get(0)?,
                    day: r.try_get(1)?,
                    agent: r.try_get(2)?,
                    model: r.try_get(3)?,
                    answers: r.try_get(4)?,
                    prompt_tokens: r.try_get(5)?,
                    completion_tokens: r.try_get(6)?,
                })
            })
            .collect()
    }

    pub(super) async fn budget_rows_sql(&self, user_id: Option<&str>) -> Result<Vec<BudgetRow>> {
        let statement = match user_id {
            Some(id) => self
                .q_built(format!(
                    "{BUDGET_ROWS} WHERE b.user_id IN ($1, '*') ORDER BY b.user_id"
                ))
                .bind(id),
            None => self.q_built(format!("{BUDGET_ROWS} ORDER BY u.username, b.user_id")),
        };
        let rows = self.fetch_all(statement).await?;
        rows.iter().map(budget_row).collect()
    }

    pub(super) async fn set_budget_sql(
        &self,
        user_id: &str,
        daily: Option<i64>,
        monthly: Option<i64>,
        now: i64,
    ) -> Result<()> {
        self.execute(
            self.q(
                "INSERT INTO usage_budgets (user_id, daily_tokens, monthly_tokens, updated_at) \
                 VALUES ($1, NULLIF(CAST($2 AS BIGINT), -1), NULLIF(CAST($3 AS BIGINT), -1), $4) \
                 ON CONFLICT (user_id) DO UPDATE SET \
                 daily_tokens = excluded.daily_tokens, monthly_tokens = excluded.monthly_tokens, \
                 updated_at = excluded.updated_at",
            )
            .bind(user_id)
            .bind(daily.unwrap_or(-1))
            .bind(monthly.unwrap_or(-1))
            .bind(now),
        )
        .await
    }

    pub(super) async fn delete_budget_sql(&self, user_id: &str) -> Result<bool> {
        let done = self
            .fetch_optional(
                self.q("DELETE FROM usage_budgets WHERE user_id = $1 RETURNING user_id")
                    .bind(user_id),
            )
            .await?;
        Ok(done.is_some())
    }

    /// Reserve `tokens` in every period, or in none: the first period whose budget is spent
    /// (`used + reserved >= limit`) is returned and the transaction rolls back.
    pub(super) async fn reserve_sql(
        &self,
        user_id: &str,
        periods: &[PeriodLimit],
        tokens: i64,
    ) -> Result<Option<String>> {
        let mut tx = self.begin_write().await?;
        for p in periods {
            self.q(
                "INSERT INTO usage_counters (user_id, period, used, reserved) \
                 VALUES ($1, $2, 0, 0) ON CONFLICT (user_id, period) DO NOTHING",
            )
            .bind(user_id)
            .bind(p.period.as_str())
            .execute(&mut *tx)
            .await?;
            let granted = self
                .q("UPDATE usage_counters SET reserved = reserved + $3 \
                     WHERE user_id = $1 AND period = $2 AND ($4 < 0 OR used + reserved < $4) \
                     RETURNING used")
                .bind(user_id)
                .bind(p.period.as_str())
                .bind(tokens)
                .bind(p.limit.unwrap_or(-1))
                .fetch_optional(&mut *tx)
                .await?;
            if granted.is_none() {
                return Ok(Some(p.period.clone()));
            }
        }
        tx.commit().await?;
        Ok(None)
    }

    /// Give back `reserved` and count `used` instead, in every period.
    pub(super) async fn settle_sql(
        &self,
        user_id: &str,
        periods: &[String],
        reserved: i64,
        used: i64,
    ) -> Result<()> {
        let mut tx = self.begin_write().await?;
        for period in periods {
            self.q(
                "UPDATE usage_counters SET used = used + $4, reserved = CASE \
                 WHEN reserved > $3 THEN reserved - $3 ELSE 0 END \
                 WHERE user_id = $1 AND period = $2",
            )
            .bind(user_id)
            .bind(period.as_str())
            .bind(reserved)
            .bind(used)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn counters_sql(
        &self,
        user_id: &str,
        periods: &[String],
    ) -> Result<Vec<Counter>> {
        let mut c = self.conn().await?;
        let mut out = Vec::with_capacity(periods.len());
        for period in periods {
            let row = self
                .q("SELECT used, reserved FROM usage_counters WHERE user_id = $1 AND period = $2")
                .bind(user_id)
                .bind(period.as_str())
                .fetch_optional(c.get())
                .await?;
            out.push(match row {
                Some(r) => Counter {
                    used: r.try_get(0)?,
                    reserved: r.try_get(1)?,
                },
                None => Counter::default(),
            });
        }
        c.done().await?;
        Ok(out)
    }
}
