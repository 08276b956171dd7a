//! The bodies of the usage and budget routes (`/api/usage`, `/api/admin/usage`,
//! `/api/me/budget`, `/api/admin/budgets*`; `docs/protocol.md`, "Usage, cost and budgets"),
//! as types, like `contract::accounts`.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// One group of agent answers: the grouped dimensions are set, the others absent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct UsageRow {
    /// `YYYY-MM-DD` (UTC), when grouped by `day`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    #[cfg_attr(test, ts(optional))]
    pub day: Option<String>,
    /// The agent's id, when grouped by `agent`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    #[cfg_attr(test, ts(optional))]
    pub agent: Option<String>,
    /// The model that answered, when grouped by `model` (`unknown` when it was not recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    #[cfg_attr(test, ts(optional))]
    pub model: Option<String>,
    /// The requester, when grouped by `user` (admin report only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    #[cfg_attr(test, ts(optional))]
    pub user_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    #[cfg_attr(test, ts(optional))]
    pub username: Option<String>,
    #[serde(flatten)]
    pub totals: UsageTotals,
}

/// Token and money totals of a set of agent answers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct UsageTotals {
    /// Agent answers stored (complete or incomplete).
    pub answers: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
    /// Tokens times the price table (`prices` settings), in `currency`; answers of a model
    /// without a price count 0.
    pub cost: f64,
}

/// `GET /api/usage` (the caller's answers) and `GET /api/admin/usage` (everyone's).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct UsageReport {
    /// First and last day of the report, inclusive (`YYYY-MM-DD`, UTC).
    pub from: String,
    pub to: String,
    /// The dimensions rows are grouped by, in order (`day`, `agent`, `model`, `user`).
    pub group: Vec<String>,
    pub currency: String,
    pub rows: Vec<UsageRow>,
    pub total: UsageTotals,
}

/// Daily and monthly token limits (`null`: none). The default applies to every user without an
/// override; in an override, `null` means "the default's limit applies".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct BudgetLimits {
    #[serde(default)]
    pub daily_tokens: Option<u64>,
    #[serde(default)]
    pub monthly_tokens: Option<u64>,
}

/// Where one budget period stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct BudgetPeriod {
    /// The limit in tokens; absent: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    #[cfg_attr(test, ts(optional))]
    pub limit: Option<u64>,
    /// Tokens spent this period (answers still running count their reservation).
    pub used: u64,
    /// `limit - used` (0 once spent); absent: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    #[cfg_attr(test, ts(optional))]
    pub remaining: Option<u64>,
    /// When the period starts again (RFC 3339, UTC).
    pub resets_at: String,
}

/// `GET /api/me/budget`: the caller's budgets today and this month.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct MyBudget {
    pub daily: BudgetPeriod,
    pub monthly: BudgetPeriod,
}

/// One user's own limits (`PUT /api/admin/budgets/{user_id}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct BudgetOverride {
    pub user_id: String,
    pub username: String,
    #[serde(flatten)]
    pub limits: BudgetLimits,
}

/// `GET /api/admin/budgets`: the default for everyone (`PUT /api/admin/budgets`; the settings'
/// `[budgets]` until an admin changes it) and each user's override.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct BudgetSettingsView {
    pub default: BudgetLimits,
    pub overrides: Vec<BudgetOverride>,
}
