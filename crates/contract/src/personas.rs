//! The bodies of the persona and provider-connection admin routes (`/api/admin/connections*`,
//! `/api/admin/agents*`; `docs/protocol.md`, "Personas and provider connections"). A key is
//! write-only: no answer carries it, only `has_key` and at most its last 4 characters.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Where an agent is defined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum AgentSource {
    /// The TOML settings file: read-only here, and it wins over a stored agent of the same id
    /// or name.
    Settings,
    /// Created in the admin UI, stored in the database.
    Database,
}

/// Whether a connection's stored key can be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum KeyStatus {
    /// No key stored.
    None,
    /// Stored and readable.
    Ok,
    /// Stored but sealed under another signing key (the key was rotated): enter it again.
    Unreadable,
}

/// A provider connection, without its key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct ConnectionView {
    pub id: String,
    pub name: String,
    /// `openai` (and compatible gateways), `anthropic`, `gemini` or `ollama`.
    pub kind: String,
    pub base_url: Option<String>,
    pub has_key: bool,
    /// At most the key's last 4 characters (none for a key shorter than 12).
    pub key_hint: Option<String>,
    pub key_status: KeyStatus,
    pub created_at: String,
    pub updated_at: String,
}

/// `GET /api/admin/connections`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct ConnectionList {
    pub connections: Vec<ConnectionView>,
}

/// `POST /api/admin/connections` (all but `name` and `kind` optional) and
/// `PATCH /api/admin/connections/{id}` (every field optional). `api_key` is write-only; a new
/// one replaces (rotates) the stored one, `""` or `null` removes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct ConnectionInput {
    pub name: Option<String>,
    pub kind: Option<String>,
    pub base_url: Option<String>,
    pub api_key: Option<String>,
}

/// `GET /api/admin/connections/{id}/models`: the chat models the provider lists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct ModelList {
    pub models: Vec<String>,
}

/// An agent as administrators see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct AdminAgentView {
    pub id: String,
    pub name: String,
    /// A CSS colour (`#rrggbb`) for the agent's messages.
    pub colour: Option<String>,
    pub system_prompt: String,
    /// The connection it calls (`null`: the settings' provider, or the built-in local one).
    pub connection_id: Option<String>,
    pub provider: String,
    pub model: String,
    pub temperature: f32,
    pub max_tokens: u32,
    /// A model of the same connection tried when the main one fails before its first token.
    pub fallback_model: Option<String>,
    /// An agent (its id) whose provider and model answer, in this agent's persona, when this
    /// agent's own (and its fallback model) fail before the first token.
    pub fallback_agent: Option<String>,
    pub enabled: bool,
    pub source: AgentSource,
    /// Whether messages may ask it now (false when disabled, or when a settings agent with the
    /// same id or name wins over it).
    pub active: bool,
    pub updated_at: Option<String>,
}

/// `GET /api/admin/agents`: the settings' agents first, then the stored ones.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct AdminAgentList {
    pub agents: Vec<AdminAgentView>,
}

/// `POST /api/admin/agents` (`name` and `model` required; `id` defaults to the name in lower
/// case with dashes) and `PATCH /api/admin/agents/{id}` (every field optional).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct AgentInput {
    pub id: Option<String>,
    pub name: Option<String>,
    pub colour: Option<String>,
    pub system_prompt: Option<String>,
    pub connection_id: Option<String>,
    pub model: Option<String>,
    pub temperature: Option<f32>,
    pub max_tokens: Option<u32>,
    pub fallback_model: Option<String>,
    pub fallback_agent: Option<String>,
    pub enabled: Option<bool>,
}
