//! A message's place in a debate (`docs/protocol.md` §7.9): on the topic, its agents, rounds and
//! mediator; on a turn, its round; on the mediator's closing synthesis, its role.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A message's place in a debate (`docs/protocol.md` §7.9).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct DebateMeta {
    /// The debate's id (the `debate_id` of its streams).
    pub id: String,
    /// `topic` (the user's message that starts it), `turn` (an agent's turn) or `synthesis`
    /// (the mediator's closing turn).
    pub role: DebateRole,
    /// 1-based round of a `turn`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    #[cfg_attr(test, ts(optional))]
    pub round: Option<u32>,
    /// On the topic: the agents in speaking order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    #[cfg_attr(test, ts(optional))]
    pub agents: Option<Vec<String>>,
    /// On the topic: the number of rounds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    #[cfg_attr(test, ts(optional))]
    pub rounds: Option<u32>,
    /// On the topic: the mediator agent that writes the closing synthesis, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    #[cfg_attr(test, ts(optional))]
    pub mediator: Option<String>,
}

/// The part a message plays in a debate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum DebateRole {
    Topic,
    Turn,
    Synthesis,
}
