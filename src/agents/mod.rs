//! Agents: AI personas that answer in threads. This module owns their settings; the streaming
//! runtime and providers live in submodules.

use serde::{Deserialize, Serialize};

use crate::settings::{Env, Secret};

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
}

fn default_temperature() -> f32 {
    0.7
}
fn default_max_tokens() -> u32 {
    1024
}

/// Provider endpoints and keys (`[providers]`). Keys come from the environment or this file only.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProviderSettings {
    pub openai_base_url: Option<String>,
    pub openai_api_key: Option<Secret>,
    pub anthropic_base_url: Option<String>,
    pub anthropic_api_key: Option<Secret>,
    pub gemini_base_url: Option<String>,
    pub gemini_api_key: Option<Secret>,
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
    }
}

/// The default personas: Anima, Neo and Nexus, on the offline `local` provider.
pub fn default_agents() -> Vec<AgentSettings> {
    let persona = |id: &str, name: &str, prompt: &str| AgentSettings {
        id: id.into(),
        name: name.into(),
        system_prompt: prompt.into(),
        provider: "local".into(),
        model: "offline".into(),
        temperature: default_temperature(),
        max_tokens: default_max_tokens(),
        fallback_model: None,
    };
    vec![
        persona(
            "anima",
            "Anima",
            "You are Anima, warm and curious; you look for what people mean.",
        ),
        persona(
            "neo",
            "Neo",
            "You are Neo, a sceptic; you test every claim.",
        ),
        persona(
            "nexus",
            "Nexus",
            "You are Nexus; you connect ideas and summarise.",
        ),
    ]
}

mod runtime;
pub use runtime::{Agents, cancel, routes, start_debate};
