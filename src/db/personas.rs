//! What the store keeps for personas and provider connections managed live by admins (issue
//! #18): plain rows. A connection's key is stored only encrypted (`agents::secrets` seals and
//! opens it); every change bumps one version number, which every instance polls to rebuild its
//! agent registry (`agents::registry`).

/// One `provider_connections` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionRow {
    pub id: String,
    /// Unique, shown in the admin UI.
    pub name: String,
    /// `openai`, `anthropic`, `gemini` or `ollama`.
    pub kind: String,
    /// The provider's base URL; `None` uses the provider's public one.
    pub base_url: Option<String>,
    /// The sealed key (base64), `None` when the connection has no key.
    pub key_cipher: Option<String>,
    /// The nonce it was sealed with (base64).
    pub key_nonce: Option<String>,
    /// The key-derivation scheme it was sealed under (0: no key).
    pub key_version: i64,
    /// At most the key's last 4 characters.
    pub key_hint: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// One `agents` row: a persona defined in the admin UI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonaRow {
    pub id: String,
    pub name: String,
    pub colour: Option<String>,
    pub system_prompt: String,
    /// The connection it calls; `None` for the built-in `local` provider.
    pub connection_id: Option<String>,
    pub model: String,
    /// Thousandths (0.7 is 700): an integer on both engines.
    pub temperature_milli: i64,
    pub max_tokens: i64,
    /// A model of the same connection to try when the main one fails before its first token.
    pub fallback_model: Option<String>,
    /// An agent whose provider and model answer when this one's fail before the first token.
    pub fallback_agent: Option<String>,
    pub enabled: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

impl PersonaRow {
    /// The key that makes names unique (case-insensitive).
    pub fn name_key(&self) -> String {
        self.name.to_lowercase()
    }
}

/// Everything stored, read at once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PersonaSnapshot {
    /// Bumped by every change.
    pub version: i64,
    pub connections: Vec<ConnectionRow>,
    pub agents: Vec<PersonaRow>,
}

/// A change. Creation refuses a taken id or name (`Conflict`); an update or delete of a row
/// that does not exist is `Ok(false)`; deleting a connection an agent still uses is `Conflict`.
#[derive(Debug, Clone)]
pub enum PersonaChange {
    PutConnection { row: ConnectionRow, create: bool },
    DeleteConnection { id: String },
    PutAgent { row: PersonaRow, create: bool },
    DeleteAgent { id: String },
}
