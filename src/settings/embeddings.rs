//! Embeddings settings (`[documents.embeddings]`, issue #19): which model turns passages and
//! questions into vectors for hybrid retrieval (docs/documents.md). Off by default: retrieval is
//! then full-text only. `EMERGENCE_EMBEDDINGS_PROVIDER`, `_BASE_URL`, `_MODEL`, `_API_KEY`,
//! `_DIMENSIONS` override the file.

use serde::Deserialize;

use super::{Env, Secret};

/// The embeddings model, when one is configured.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmbeddingSettings {
    /// `openai` (and any OpenAI-compatible `/v1/embeddings`), `ollama` or `gemini`; `None` (or
    /// `off`): no embeddings.
    pub provider: Option<String>,
    /// The API's base URL (default: `https://api.openai.com`, the providers' Ollama URL, or
    /// `https://generativelanguage.googleapis.com`). A trailing `/v1` is accepted.
    pub base_url: Option<String>,
    /// The model name (default `text-embedding-3-small`, `nomic-embed-text` or
    /// `text-embedding-004` by provider).
    pub model: Option<String>,
    /// The key (default: `OPENAI_API_KEY` / `GEMINI_API_KEY` of the providers; Ollama needs none).
    pub api_key: Option<Secret>,
    /// Ask the model for vectors of this size (OpenAI `dimensions`, Gemini
    /// `outputDimensionality`); the model's own size when unset.
    pub dimensions: Option<u32>,
    /// Passages per embeddings request (default 32).
    pub batch: usize,
    /// Time allowed for one embeddings request, in milliseconds (default 20000).
    pub timeout_ms: u64,
    /// Time allowed to embed a question before retrieval goes on with full text alone, in
    /// milliseconds (default 3000).
    pub query_timeout_ms: u64,
}

impl Default for EmbeddingSettings {
    fn default() -> Self {
        Self {
            provider: None,
            base_url: None,
            model: None,
            api_key: None,
            dimensions: None,
            batch: 32,
            timeout_ms: 20_000,
            query_timeout_ms: 3_000,
        }
    }
}

/// The providers Emergence can ask for embeddings.
pub const EMBEDDING_PROVIDERS: &[&str] = &["openai", "ollama", "gemini"];

impl EmbeddingSettings {
    /// The configured provider, `None` when embeddings are off.
    pub fn provider(&self) -> Option<&str> {
        self.provider
            .as_deref()
            .map(str::trim)
            .filter(|p| !p.is_empty() && *p != "off")
    }

    /// The model name, or the provider's usual one.
    pub fn model(&self) -> String {
        if let Some(m) = self.model.as_deref().filter(|m| !m.trim().is_empty()) {
            return m.trim().to_string();
        }
        match self.provider() {
            Some("ollama") => "nomic-embed-text",
            Some("gemini") => "text-embedding-004",
            _ => "text-embedding-3-small",
        }
        .to_string()
    }

    /// What a stored vector was made with: provider, model and size. A chunk whose vector was
    /// made otherwise is embedded again.
    pub fn identity(&self) -> Option<String> {
        let provider = self.provider()?;
        let mut id = format!("{provider}:{}", self.model());
        if let Some(d) = self.dimensions {
            id.push_str(&format!(":{d}"));
        }
        Some(id)
    }

    /// `EMERGENCE_EMBEDDINGS_PROVIDER`, `EMERGENCE_EMBEDDINGS_BASE_URL`,
    /// `EMERGENCE_EMBEDDINGS_MODEL`, `EMERGENCE_EMBEDDINGS_API_KEY`,
    /// `EMERGENCE_EMBEDDINGS_DIMENSIONS`.
    pub fn apply_env(&mut self, env: &dyn Env) -> anyhow::Result<()> {
        if let Some(v) = env.var("EMERGENCE_EMBEDDINGS_PROVIDER") {
            self.provider = Some(v);
        }
        if let Some(v) = env.var("EMERGENCE_EMBEDDINGS_BASE_URL") {
            self.base_url = Some(v);
        }
        if let Some(v) = env.var("EMERGENCE_EMBEDDINGS_MODEL") {
            self.model = Some(v);
        }
        if let Some(v) = env.var("EMERGENCE_EMBEDDINGS_API_KEY") {
            self.api_key = Some(Secret::new(v));
        }
        if let Some(v) = env.var("EMERGENCE_EMBEDDINGS_DIMENSIONS") {
            let d = v.trim().parse().map_err(|e| {
                anyhow::anyhow!("invalid EMERGENCE_EMBEDDINGS_DIMENSIONS={v:?}: {e}")
            })?;
            self.dimensions = Some(d);
        }
        self.check()
    }

    /// Refuse a provider Emergence does not speak, and sizes that cannot work.
    pub fn check(&self) -> anyhow::Result<()> {
        if let Some(p) = self.provider()
            && !EMBEDDING_PROVIDERS.contains(&p)
        {
            anyhow::bail!(
                "documents.embeddings.provider must be one of {} (or off), not {p:?}",
                EMBEDDING_PROVIDERS.join(", ")
            );
        }
        if self.dimensions == Some(0) {
            anyhow::bail!("documents.embeddings.dimensions must be at least 1");
        }
        if self.batch == 0 {
            anyhow::bail!("documents.embeddings.batch must be at least 1");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embeddings_are_off_unless_a_known_provider_is_named() {
        let mut s = EmbeddingSettings::default();
        assert_eq!(s.identity(), None);
        s.provider = Some("off".into());
        assert_eq!(s.identity(), None);
        s.provider = Some("ollama".into());
        assert_eq!(s.identity().as_deref(), Some("ollama:nomic-embed-text"));
        s.provider = Some("openai".into());
        s.dimensions = Some(256);
        assert_eq!(
            s.identity().as_deref(),
            Some("openai:text-embedding-3-small:256")
        );
        s.provider = Some("cohere".into());
        assert!(s.check().is_err());
    }
}
