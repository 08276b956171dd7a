//! What an agent answer says about the context it was given (issue #18): the summary of the
//! thread's older turns that stood in for them (`context_summary` on a message), the marker the
//! web UI shows as "earlier messages summarised".

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// How a context summary was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum SummaryMethod {
    /// By the agent's own model.
    Provider,
    /// Offline, from the first sentences of each turn (the local agent, or the provider failed
    /// or was too slow).
    Extractive,
}

/// The summary an agent answer saw in place of the thread's messages up to `through_seq`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct ContextSummaryView {
    /// The last message it covers: every message with `seq <= through_seq`.
    pub through_seq: i64,
    pub body: String,
    pub method: SummaryMethod,
}
