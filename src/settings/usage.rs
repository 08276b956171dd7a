//! Usage settings: the price table that turns tokens into money (`[prices."MODEL"]`) and the
//! default token budgets (`[budgets]`, `EMERGENCE_BUDGET_DAILY_TOKENS`,
//! `EMERGENCE_BUDGET_MONTHLY_TOKENS`). An admin may change the default at run time
//! (`PUT /api/admin/budgets`); the stored one then wins over these.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::Env;

/// The price of one model, per million tokens, in [`UsageSettings::currency`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    pub input_per_million: f64,
    pub output_per_million: f64,
}

impl Price {
    /// What `prompt` input and `completion` output tokens cost.
    pub fn cost(&self, prompt: u64, completion: u64) -> f64 {
        (prompt as f64 * self.input_per_million + completion as f64 * self.output_per_million)
            / 1_000_000.0
    }
}

/// The default token budgets of every user (0 or absent: no limit).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BudgetSettings {
    pub daily_tokens: Option<u64>,
    pub monthly_tokens: Option<u64>,
}

/// Prices and budgets.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UsageSettings {
    /// The currency prices are given in (only a label: `USD` by default).
    pub currency: String,
}

impl Default for UsageSettings {
    fn default() -> Self {
        Self {
            currency: "USD".into(),
        }
    }
}

/// Model name -> price.
pub type PriceTable = BTreeMap<String, Price>;

impl BudgetSettings {
    /// `EMERGENCE_BUDGET_DAILY_TOKENS`, `EMERGENCE_BUDGET_MONTHLY_TOKENS` (0: no limit).
    pub fn apply_env(&mut self, env: &dyn Env) -> anyhow::Result<()> {
        for (key, slot) in [
            ("EMERGENCE_BUDGET_DAILY_TOKENS", &mut self.daily_tokens),
            ("EMERGENCE_BUDGET_MONTHLY_TOKENS", &mut self.monthly_tokens),
        ] {
            if let Some(v) = env.var(key) {
                let n: u64 = v
                    .trim()
                    .parse()
                    .map_err(|e| anyhow::anyhow!("invalid {key}={v:?}: {e}"))?;
                *slot = Some(n);
            }
        }
        Ok(())
    }

    /// The limits, with 0 meaning none.
    pub fn limits(&self) -> (Option<u64>, Option<u64>) {
        (
            self.daily_tokens.filter(|n| *n > 0),
            self.monthly_tokens.filter(|n| *n > 0),
        )
    }
}
