//! Context summaries (issue #18): what an agent keeps of a thread's older turns once they no
//! longer fit its context window. One row per thread and agent, covering the messages up to
//! `through_seq`; `agents::summary` writes, reuses and extends it.

/// The summary of a thread's turns up to `through_seq`, as one agent sees them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContextSummary {
    pub thread_id: String,
    pub agent_id: String,
    pub through_seq: i64,
    pub body: String,
    /// `provider` (the agent's model wrote it) or `extractive` (the offline summary).
    pub method: String,
    pub updated_at: i64,
}
