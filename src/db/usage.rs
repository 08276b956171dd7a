//! What storage knows about usage and budgets (issue #15): agent answers summed per requester,
//! day, agent and model from the stored per-message token counts, each user's token limits, and
//! the per-period counters that make a budget exact across instances (a reservation is one
//! atomic update of the counter rows, taken before a provider is called and settled after).

/// Which stored answers to sum: those asked for by `user_id` (everyone's when `None`), created in
/// `[from_ms, to_ms)`.
#[derive(Debug, Clone)]
pub struct UsageQuery {
    pub user_id: Option<String>,
    pub from_ms: i64,
    pub to_ms: i64,
}

/// The answers of one requester, UTC day, agent and model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageGroup {
    pub user_id: String,
    /// Days since the Unix epoch (UTC).
    pub day: i64,
    pub agent: String,
    /// `None` when the answer's model was not recorded.
    pub model: Option<String>,
    pub answers: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
}

/// The key of the default's row in `usage_budgets`.
pub const DEFAULT_BUDGET: &str = "*";

/// A stored limit row: a user's override, or the default ([`DEFAULT_BUDGET`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetRow {
    pub user_id: String,
    /// The user's name (`None` for the default or a user who no longer exists).
    pub username: Option<String>,
    pub daily_tokens: Option<i64>,
    pub monthly_tokens: Option<i64>,
}

/// One period a reservation must fit in, with its limit (`None`: none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeriodLimit {
    /// `d2026-11-30` or `m2026-11`.
    pub period: String,
    pub limit: Option<i64>,
}

/// A period's counter: tokens settled and tokens held by answers still running.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counter {
    pub used: i64,
    pub reserved: i64,
}
