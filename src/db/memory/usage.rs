//! The usage half of the in-memory fake: limit rows and budget counters with the same rules as
//! `sql/usage.rs` (a reservation fits in every period or is taken in none). The fake keeps no
//! requester per message, so its usage sums are empty; the SQL backends' are tested end to end.

use super::{MemoryStore, Result};
use crate::db::usage::{BudgetRow, Counter, PeriodLimit, UsageGroup, UsageQuery};

pub(super) fn usage(store: &MemoryStore, _q: &UsageQuery) -> Result<Vec<UsageGroup>> {
    store.check()?;
    Ok(Vec::new())
}

pub(super) fn budget_rows(store: &MemoryStore, user_id: Option<&str>) -> Result<Vec<BudgetRow>> {
    store.check()?;
    let data = store.data();
    let mut rows: Vec<BudgetRow> = data
        .budgets
        .iter()
        .filter(|(id, _)| user_id.is_none_or(|u| *id == u || *id == "*"))
        .map(|(id, (daily, monthly))| BudgetRow {
            user_id: id.clone(),
            username: None,
            daily_tokens: *daily,
            monthly_tokens: *monthly,
        })
        .collect();
    rows.sort_by(|a, b| a.user_id.cmp(&b.user_id));
    Ok(rows)
}

pub(super) fn set_budget(
    store: &MemoryStore,
    user_id: &str,
    daily: Option<i64>,
    monthly: Option<i64>,
) -> Result<()> {
    store.check()?;
    store
        .data()
        .budgets
        .insert(user_id.to_string(), (daily, monthly));
    Ok(())
}

pub(super) fn delete_budget(store: &MemoryStore, user_id: &str) -> Result<bool> {
    store.check()?;
    Ok(store.data().budgets.remove(user_id).is_some())
}

pub(super) fn reserve(
    store: &MemoryStore,
    user_id: &str,
    periods: &[PeriodLimit],
    tokens: i64,
) -> Result<Option<String>> {
    store.check()?;
    let mut data = store.data();
    for p in periods {
        let c = data
            .counters
            .get(&(user_id.to_string(), p.period.clone()))
            .copied()
            .unwrap_or_default();
        if p.limit.is_some_and(|limit| c.used + c.reserved >= limit) {
            return Ok(Some(p.period.clone()));
        }
    }
    for p in periods {
        data.counters
            .entry((user_id.to_string(), p.period.clone()))
            .or_default()
            .reserved += tokens;
    }
    Ok(None)
}

pub(super) fn settle(
    store: &MemoryStore,
    user_id: &str,
    periods: &[String],
    reserved: i64,
    used: i64,
) -> Result<()> {
    store.check()?;
    let mut data = store.data();
    for period in periods {
        if let Some(c) = data
            .counters
            .get_mut(&(user_id.to_string(), period.clone()))
        {
            c.reserved = (c.reserved - reserved).max(0);
            c.used += used;
        }
    }
    Ok(())
}

pub(super) fn counters(
    store: &MemoryStore,
    user_id: &str,
    periods: &[String],
) -> Result<Vec<Counter>> {
    store.check()?;
    let data = store.data();
    Ok(periods
        .iter()
        .map(|p| {
            data.counters
                .get(&(user_id.to_string(), p.clone()))
                .copied()
                .unwrap_or_default()
        })
        .collect())
}
