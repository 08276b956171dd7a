//! What a message says about itself beyond its text (stored as one JSON column, `meta`): which
//! debate it belongs to and its place there, the answer it is a new version of, and an agent
//! answer's model, duration and token counts. Every field is optional; an unknown field in a
//! stored value is ignored, so later versions may add fields without a migration.

use serde::{Deserialize, Serialize};

pub use crate::contract::{DebateMeta, DebateRole};

/// The id of the debate that the topic message `topic_message_id` starts (also its streams'
/// `debate_id`).
pub fn debate_id_for(topic_message_id: &str) -> String {
    format!("job-{topic_message_id}")
}

/// The stored extras of a message.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageMeta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub debate: Option<DebateMeta>,
    /// The id of the first version of the answer this message regenerates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_of: Option<String>,
    /// The model that wrote an agent answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// How long the agent answer took, from the request to the provider to its last token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// Why an `incomplete` answer stopped: its error class (`cancelled`, `timed_out`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_class: Option<String>,
    /// The document passages an agent answer was given and may cite as `[n]` (issue #19).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub citations: Option<Vec<crate::contract::documents::Citation>>,
    /// An agent answer's reasoning ("thinking"), never part of its body (issue #18).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<String>,
    /// Tokens the answer spent reasoning, when the provider reported them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_tokens: Option<u64>,
    /// The summary of older turns the answer was given in their place (issue #18).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_summary: Option<crate::contract::context::ContextSummaryView>,
}

impl MessageMeta {
    pub fn is_empty(&self) -> bool {
        self == &MessageMeta::default()
    }

    /// The JSON stored in the `meta` column (`None` when there is nothing to say).
    pub fn to_column(meta: Option<&MessageMeta>) -> Option<String> {
        meta.filter(|m| !m.is_empty())
            .map(|m| serde_json::to_string(m).expect("message meta always serialises"))
    }

    /// Read the `meta` column; a value this version cannot read counts as none.
    pub fn from_column(column: Option<&str>) -> Option<MessageMeta> {
        column
            .and_then(|s| serde_json::from_str::<MessageMeta>(s).ok())
            .filter(|m| !m.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_round_trips_through_its_column_and_skips_what_is_empty() {
        assert_eq!(MessageMeta::to_column(Some(&MessageMeta::default())), None);
        let meta = MessageMeta {
            debate: Some(DebateMeta {
                id: "d".into(),
                role: DebateRole::Turn,
                round: Some(2),
                agents: None,
                rounds: None,
                mediator: None,
            }),
            version_of: None,
            model: Some("m".into()),
            duration_ms: Some(1200),
            error_class: None,
            citations: None,
            reasoning: None,
            reasoning_tokens: None,
            context_summary: None,
        };
        let column = MessageMeta::to_column(Some(&meta)).unwrap();
        assert_eq!(
            column,
            r#"{"debate":{"id":"d","role":"turn","round":2},"model":"m","duration_ms":1200}"#
        );
        assert_eq!(MessageMeta::from_column(Some(&column)), Some(meta));
        assert_eq!(MessageMeta::from_column(Some("not json")), None);
        assert_eq!(MessageMeta::from_column(Some(r#"{"later":1}"#)), None);
    }
}
