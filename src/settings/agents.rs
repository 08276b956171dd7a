//! Agent personas and provider connections as configured (`[[agent]]`, `[providers]`): the
//! settings the agent runtime is built from. Keys come from the environment or the file only.

use serde::{Deserialize, Serialize};

use super::{Env, Secret};

/// One persona, as configured in the settings file (`[[agent]]`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AgentSettings {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub system_prompt: String,
    /// `local`, `openai`, `anthropic` or `gemini`.
    pub provider: String,
    pub model: String,
    #[serde(default = "default_temperature")]
    pub temperature: f32,
    #[serde(default = "default_max_tokens")]
    pub max_tokens: u32,
    /// A model to try when the main one fails before its first token.
    #[serde(default)]
    pub fallback_model: Option<String>,
    /// An agent (its id) whose provider and model answer, in this agent's persona, when this
    /// agent's own provider (and its fallback model) fails before the first token.
    #[serde(default)]
    pub fallback_agent: Option<String>,
    /// A CSS colour (`#rrggbb`) for the agent's avatar and answers; `GET /api/agents` shows it.
    #[serde(default)]
    pub colour: Option<String>,
    /// Estimated tokens of thread history this agent sees (its context window for the
    /// conversation); older turns are summarised. Default: `providers.context_tokens`.
    #[serde(default)]
    pub context_tokens: Option<usize>,
}

fn default_temperature() -> f32 {
    0.7
}
fn default_max_tokens() -> u32 {
    1024
}

/// Provider endpoints and keys (`[providers]`). Keys come from the environment or this file only.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProviderSettings {
    pub openai_base_url: Option<String>,
    pub openai_api_key: Option<Secret>,
    pub anthropic_base_url: Option<String>,
    pub anthropic_api_key: Option<Secret>,
    pub gemini_base_url: Option<String>,
    pub gemini_api_key: Option<Secret>,
    /// Connecting to a provider must succeed within this time.
    pub connect_timeout_ms: u64,
    /// The first token must arrive within this time.
    pub first_token_timeout_ms: u64,
    /// Silence between chunks longer than this ends the stream (`timeout`).
    pub idle_timeout_ms: u64,
    /// Retries on 408/409/429/5xx/connection errors before the first token.
    pub max_retries: u32,
    /// Every try of one answer, retries and fallback model included, must fit in this time: no
    /// retry starts that would likely end after it (a try is expected to take as long as the
    /// last one did), and a provider's `Retry-After` longer than what is left ends the answer
    /// at once. The first try is bounded by `first_token_timeout_ms` alone.
    pub retry_budget_ms: u64,
    /// Ollama's address, probed at start and every `discovery_interval_ms` (`GET /api/tags`);
    /// agents may then use `provider = "ollama"`. An empty string turns it off.
    pub ollama_url: Option<String>,
    /// OpenAI-compatible servers on this machine or network (vLLM, llama.cpp server, LM Studio),
    /// base URLs ending in `/v1`, probed like Ollama (`GET {url}/models`).
    pub local_urls: Vec<String>,
    /// How often local servers are probed; 0 probes only at start.
    pub discovery_interval_ms: u64,
    /// Estimated tokens of thread history sent as context (an agent's `context_tokens` wins).
    pub context_tokens: usize,
    /// A context summary (older turns that no longer fit, see `agents::summary`) must be
    /// written within this time, else the extractive offline summary is used.
    pub summary_timeout_ms: u64,
}

impl Default for ProviderSettings {
    fn default() -> Self {
        Self {
            openai_base_url: None,
            openai_api_key: None,
            anthropic_base_url: None,
            anthropic_api_key: None,
            gemini_base_url: None,
            gemini_api_key: None,
            connect_timeout_ms: 5_000,
            first_token_timeout_ms: 30_000,
            idle_timeout_ms: 30_000,
            max_retries: 2,
            retry_budget_ms: 8_000,
            ollama_url: Some("http://127.0.0.1:11434".into()),
            local_urls: Vec::new(),
            discovery_interval_ms: 60_000,
            context_tokens: 3_000,
            summary_timeout_ms: 4_000,
        }
    }
}

impl ProviderSettings {
    pub fn apply_env(&mut self, env: &dyn Env) {
        if let Some(k) = env.var("OPENAI_API_KEY") {
            self.openai_api_key = Some(Secret::new(k));
        }
        if let Some(k) = env.var("ANTHROPIC_API_KEY") {
            self.anthropic_api_key = Some(Secret::new(k));
        }
        if let Some(k) = env.var("GEMINI_API_KEY") {
            self.gemini_api_key = Some(Secret::new(k));
        }
        if let Some(u) = env.var("OPENAI_BASE_URL") {
            self.openai_base_url = Some(u);
        }
        if let Some(u) = env.var("EMERGENCE_OLLAMA_URL") {
            self.ollama_url = Some(u);
        }
        if self
            .ollama_url
            .as_deref()
            .is_some_and(|u| u.trim().is_empty() || u == "off")
        {
            self.ollama_url = None;
        }
    }
}

/// The default personas: Anima, Neo and Nexus, on the `local` provider: the first local chat
/// model found on this machine (Ollama, or a server of `local_urls`), else the offline agent.
pub fn default_agents() -> Vec<AgentSettings> {
    let persona = |id: &str, name: &str, prompt: &str, colour: &str| AgentSettings {
        id: id.into(),
        name: name.into(),
        system_prompt: prompt.into(),
        provider: "local".into(),
        model: "offline".into(),
        temperature: default_temperature(),
        max_tokens: default_max_tokens(),
        fallback_model: None,
        fallback_agent: None,
        colour: Some(colour.into()),
        context_tokens: None,
    };
    vec![
        persona(
            "anima",
            "Anima",
            "You are Anima, warm and curious; you look for what people mean.",
            "#b5487a",
        ),
        persona(
            "neo",
            "Neo",
            "You are Neo, a sceptic; you test every claim.",
            "#2f6fb0",
        ),
        persona(
            "nexus",
            "Nexus",
            "You are Nexus; you connect ideas and summarise.",
            "#2e7d4f",
        ),
    ]
}
