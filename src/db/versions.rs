//! Versions of an agent answer (issue 16): a regenerated answer is a new message whose
//! `version_of` names the first version; the request that started it is recorded once per
//! `(thread, client_id)` ([`Regeneration`]), so a repeated request never starts a second one.

/// A regenerate request as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Regeneration {
    pub thread_id: String,
    pub client_id: String,
    /// The user who asked.
    pub requester_id: String,
    /// The answer regenerated (the version on the requester's screen).
    pub message_id: String,
    /// The first version of that answer (every version shares it).
    pub version_of: String,
    /// The agent that writes the new version.
    pub agent_id: String,
    pub created_at: i64,
}
