//! Token budgets: each user's daily and monthly limits (a user's override, else the default an
//! admin stored, else the settings' `[budgets]`), checked before a provider is called.
//!
//! Exact across instances: before each provider call the turn reserves an estimate of the
//! answer's tokens (its prompt plus the agent's `max_tokens`) in the database counters of the
//! current UTC day and month, in one atomic update that succeeds only while
//! `used + reserved < limit`; after the call the reservation is settled with the tokens really
//! spent. So however many instances and answers run at once, the last answer admitted started
//! under the limit: a user may pass a budget by at most one answer's worth.

use time::{Date, Month, OffsetDateTime};

use crate::{
    contract::usage::{BudgetLimits, BudgetPeriod, MyBudget},
    db::{
        Database, StoreError, rfc3339,
        usage::{BudgetRow, DEFAULT_BUDGET, PeriodLimit},
    },
    settings::usage::BudgetSettings,
};

/// A budget period: its counter key and when it ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Period {
    /// `d2026-11-30` or `m2026-11`.
    pub key: String,
    /// Milliseconds since the epoch when the next period starts (UTC midnight).
    pub resets_at_ms: i64,
}

fn utc(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000)).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

fn midnight_ms(date: Date) -> i64 {
    date.midnight().assume_utc().unix_timestamp() * 1000
}

/// The day and the month containing `now_ms` (UTC).
pub fn periods(now_ms: i64) -> (Period, Period) {
    let date = utc(now_ms).date();
    let next_day = date.next_day().unwrap_or(date);
    let (year, month) = (date.year(), date.month());
    let next_month = match month {
        Month::December => Date::from_calendar_date(year + 1, Month::January, 1),
        m => Date::from_calendar_date(year, m.next(), 1),
    }
    .unwrap_or(date);
    (
        Period {
            key: format!("d{year:04}-{:02}-{:02}", u8::from(month), date.day()),
            resets_at_ms: midnight_ms(next_day),
        },
        Period {
            key: format!("m{year:04}-{:02}", u8::from(month)),
            resets_at_ms: midnight_ms(next_month),
        },
    )
}

/// A spent budget: when the user may ask again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exhausted {
    pub resets_at_ms: i64,
}

impl Exhausted {
    /// `resets_at` as the contract shows times (RFC 3339, UTC).
    pub fn resets_at(&self) -> String {
        rfc3339(self.resets_at_ms)
    }
}

/// Why a provider call may not go ahead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The budget is spent.
    Exhausted(Exhausted),
    /// A budget applies but the database cannot tell what is left.
    Unavailable,
}

/// Tokens held for one provider call until it is settled.
#[derive(Debug, Clone)]
pub struct Reservation {
    user_id: String,
    periods: Vec<String>,
    tokens: i64,
}

/// Daily and monthly limits in tokens (`None`: none).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    pub daily: Option<i64>,
    pub monthly: Option<i64>,
}

/// The budget rules of this instance, over the shared database.
pub struct Budgets {
    db: Database,
    settings: BudgetSettings,
}

fn as_limit(n: Option<u64>) -> Option<i64> {
    n.filter(|n| *n > 0).map(|n| n.min(i64::MAX as u64) as i64)
}

impl Budgets {
    pub fn new(db: Database, settings: BudgetSettings) -> Self {
        Self { db, settings }
    }

    /// The default for everyone: the one an admin stored, else the settings'.
    pub fn default_of(&self, rows: &[BudgetRow]) -> Limits {
        match rows.iter().find(|r| r.user_id == DEFAULT_BUDGET) {
            Some(r) => Limits {
                daily: r.daily_tokens,
                monthly: r.monthly_tokens,
            },
            None => {
                let (daily, monthly) = self.settings.limits();
                Limits {
                    daily: as_limit(daily),
                    monthly: as_limit(monthly),
                }
            }
        }
    }

    /// `user_id`'s limits: each of their override's, else the default's.
    pub async fn limits(&self, user_id: &str) -> Result<Limits, StoreError> {
        let id = user_id.to_string();
        let rows = self
            .db
            .run(|s| async move { s.budget_rows(Some(&id)).await })
            .await?;
        let default = self.default_of(&rows);
        Ok(match rows.iter().find(|r| r.user_id == user_id) {
            Some(r) => Limits {
                daily: r.daily_tokens.or(default.daily),
                monthly: r.monthly_tokens.or(default.monthly),
            },
            None => default,
        })
    }

    /// Whether `user_id` may ask an agent now (send time): refused once the tokens settled in
    /// the day or the month reach its limit. The reservation before each provider call is the
    /// exact check; this one spares a refused user's message.
    pub async fn check(&self, user_id: &str, now_ms: i64) -> Result<(), Exhausted> {
        let Ok(limits) = self.limits(user_id).await else {
            // The reservation decides (and refuses while the database is down).
            return Ok(());
        };
        if limits == Limits::default() {
            return Ok(());
        }
        let (day, month) = periods(now_ms);
        let keys = vec![day.key.clone(), month.key.clone()];
        let id = user_id.to_string();
        let Ok(counters) = self
            .db
            .run(|s| async move { s.usage_counters(&id, &keys).await })
            .await
        else {
            return Ok(());
        };
        let spent = |limit: Option<i64>, used: i64| limit.is_some_and(|l| used >= l);
        let resets_at_ms = [
            (spent(limits.daily, counters[0].used), day.resets_at_ms),
            (spent(limits.monthly, counters[1].used), month.resets_at_ms),
        ]
        .into_iter()
        .filter(|(spent, _)| *spent)
        .map(|(_, at)| at)
        .max();
        match resets_at_ms {
            Some(resets_at_ms) => Err(Exhausted { resets_at_ms }),
            None => Ok(()),
        }
    }

    /// Reserve `tokens` for one provider call of `user_id`'s, in this month's and today's
    /// counters at once, or refuse (nothing reserved). When the database cannot tell (down),
    /// the call goes ahead unreserved only if the settings set no default budget
    /// (`Ok(None)`); otherwise it is refused as [`Refusal::Unavailable`].
    pub async fn reserve(
        &self,
        user_id: &str,
        tokens: i64,
        now_ms: i64,
    ) -> Result<Option<Reservation>, Refusal> {
        let unknown = || match self.settings.limits() {
            (None, None) => Ok(None),
            _ => Err(Refusal::Unavailable),
        };
        let Ok(limits) = self.limits(user_id).await else {
            return unknown();
        };
        let (day, month) = periods(now_ms);
        // The month first: when both are spent, the later reset is the one that matters.
        let wanted = vec![
            PeriodLimit {
                period: month.key.clone(),
                limit: limits.monthly,
            },
            PeriodLimit {
                period: day.key.clone(),
                limit: limits.daily,
            },
        ];
        let id = user_id.to_string();
        let Ok(refused) = self
            .db
            .run(|s| async move { s.reserve_usage(&id, &wanted, tokens).await })
            .await
        else {
            return unknown();
        };
        match refused {
            Some(p) if p == month.key => Err(Refusal::Exhausted(Exhausted {
                resets_at_ms: month.resets_at_ms,
            })),
            Some(_) => Err(Refusal::Exhausted(Exhausted {
                resets_at_ms: day.resets_at_ms,
            })),
            None => Ok(Some(Reservation {
                user_id: user_id.to_string(),
                periods: vec![month.key, day.key],
                tokens,
            })),
        }
    }

    /// Count the tokens `used` by a reserved call and give its reservation back (retried
    /// through a short database outage; an instance that stops before settling leaves the
    /// reservation held until the period ends).
    pub async fn settle(&self, r: Reservation, used: i64) {
        for attempt in 0..20 {
            let r2 = r.clone();
            let done = self
                .db
                .run(|s| async move {
                    s.settle_usage(&r2.user_id, &r2.periods, r2.tokens, used)
                        .await
                })
                .await;
            match done {
                Ok(()) => return,
                Err(e) if attempt == 19 => {
                    tracing::error!(error = %e, user = %r.user_id, "budget reservation not settled");
                }
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(500)).await,
            }
        }
    }

    /// Where `user_id` stands today and this month.
    pub async fn mine(&self, user_id: &str, now_ms: i64) -> Result<MyBudget, StoreError> {
        let limits = self.limits(user_id).await?;
        let (day, month) = periods(now_ms);
        let keys = vec![day.key.clone(), month.key.clone()];
        let id = user_id.to_string();
        let counters = self
            .db
            .run(|s| async move { s.usage_counters(&id, &keys).await })
            .await?;
        let view = |limit: Option<i64>, c: crate::db::usage::Counter, p: &Period| {
            let used = (c.used + c.reserved).max(0) as u64;
            BudgetPeriod {
                limit: limit.map(|l| l as u64),
                used,
                remaining: limit.map(|l| (l as u64).saturating_sub(used)),
                resets_at: rfc3339(p.resets_at_ms),
            }
        };
        Ok(MyBudget {
            daily: view(limits.daily, counters[0], &day),
            monthly: view(limits.monthly, counters[1], &month),
        })
    }
}

/// Limits as the API shows them.
pub fn limits_view(l: Limits) -> BudgetLimits {
    BudgetLimits {
        daily_tokens: l.daily.map(|n| n as u64),
        monthly_tokens: l.monthly.map(|n| n as u64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(y: i32, m: Month, d: u8, h: u8) -> i64 {
        let date = Date::from_calendar_date(y, m, d).unwrap();
        date.with_hms(h, 0, 0)
            .unwrap()
            .assume_utc()
            .unix_timestamp()
            * 1000
    }

    #[test]
    fn periods_are_the_utc_day_and_month_and_reset_at_the_next_midnight() {
        let (day, month) = periods(ms(2026, Month::November, 30, 23));
        assert_eq!(day.key, "d2026-11-30");
        assert_eq!(month.key, "m2026-11");
        assert_eq!(rfc3339(day.resets_at_ms), "2026-12-01T00:00:00.000Z");
        assert_eq!(rfc3339(month.resets_at_ms), "2026-12-01T00:00:00.000Z");
        let (day, month) = periods(ms(2026, Month::December, 31, 0));
        assert_eq!(day.key, "d2026-12-31");
        assert_eq!(rfc3339(day.resets_at_ms), "2027-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(month.resets_at_ms), "2027-01-01T00:00:00.000Z");
        let (day, month) = periods(ms(2028, Month::February, 14, 12));
        assert_eq!(rfc3339(day.resets_at_ms), "2028-02-15T00:00:00.000Z");
        assert_eq!(month.key, "m2028-02");
        assert_eq!(rfc3339(month.resets_at_ms), "2028-03-01T00:00:00.000Z");
    }
}
