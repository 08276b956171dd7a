//! The embeddings client of hybrid retrieval (issue #19, docs/documents.md "Hybrid retrieval"):
//! turns passages (at indexing) and questions (at retrieval) into unit vectors through the
//! configured API (`[documents.embeddings]`: OpenAI-compatible, Ollama or Gemini, `wire`).
//! Requests are bounded in size (`batch`) and time; passages are retried a little on failures
//! worth retrying (429, 5xx, unreachable), questions are not (retrieval falls back to full text
//! at once). Every request is counted and timed (`embedding_requests_total`,
//! `embedding_request_seconds`).

mod index;
pub mod vector;
pub mod wire;

use std::{sync::Arc, time::Duration};

use serde_json::Value;

use crate::{metrics::Metrics, settings::Settings, settings::embeddings::EmbeddingSettings};
pub use wire::Purpose;
use wire::{Api, Purpose as P};

/// Tries of one batch of passages (the first and two retries).
const TRIES: u32 = 3;
/// Wait before the first retry; doubled before the next.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// Longest text sent for one passage, in characters (models cut longer input anyway).
const MAX_TEXT_CHARS: usize = 8_000;

/// Why an embeddings request failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("embeddings request failed (status {status:?}): {detail}")]
pub struct EmbedError {
    /// The HTTP status, when the API answered one.
    pub status: Option<u16>,
    /// Worth trying again (408, 429, 5xx, unreachable, timed out).
    pub retryable: bool,
    /// For the log only.
    pub detail: String,
}

impl EmbedError {
    fn new(status: Option<u16>, retryable: bool, detail: impl Into<String>) -> Self {
        let detail: String = detail.into();
        Self {
            status,
            retryable,
            detail: detail.chars().take(300).collect(),
        }
    }
}

/// The configured embeddings model and how to reach it.
pub struct Embedder {
    /// Built on first use (building one reads the system's CA certificates: not at startup).
    http: std::sync::OnceLock<reqwest::Client>,
    connect_timeout: Duration,
    api: Api,
    url: String,
    model: String,
    key: Option<String>,
    dimensions: Option<u32>,
    identity: String,
    /// Passages per request.
    pub batch: usize,
    timeout: Duration,
    query_timeout: Duration,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Embedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Embedder")
            .field("url", &self.url)
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

impl Embedder {
    /// The embedder of these settings, `None` when embeddings are off.
    pub fn from_settings(settings: &Settings, metrics: Arc<Metrics>) -> Option<Arc<Self>> {
        let e: &EmbeddingSettings = &settings.documents.embeddings;
        let api = Api::parse(e.provider()?)?;
        let p = &settings.providers;
        let base = e
            .base_url
            .clone()
            .filter(|u| !u.trim().is_empty())
            .unwrap_or_else(|| match api {
                Api::OpenAi => p
                    .openai_base_url
                    .clone()
                    .unwrap_or_else(|| "https://api.openai.com".into()),
                Api::Ollama => p
                    .ollama_url
                    .clone()
                    .unwrap_or_else(|| "http://127.0.0.1:11434".into()),
                Api::Gemini => "https://generativelanguage.googleapis.com".into(),
            });
        let key = e.api_key.clone().or_else(|| match api {
            Api::OpenAi => p.openai_api_key.clone(),
            Api::Gemini => p.gemini_api_key.clone(),
            Api::Ollama => None,
        });
        let model = e.model();
        Some(Arc::new(Self {
            http: std::sync::OnceLock::new(),
            connect_timeout: Duration::from_millis(p.connect_timeout_ms),
            url: api.url(&base, &model),
            api,
            identity: e.identity()?,
            model,
            key: key.map(|k| k.expose().to_string()),
            dimensions: e.dimensions,
            batch: e.batch.max(1),
            timeout: Duration::from_millis(e.timeout_ms.max(1)),
            query_timeout: Duration::from_millis(e.query_timeout_ms.max(1)),
            metrics,
        }))
    }

    fn http(&self) -> &reqwest::Client {
        self.http.get_or_init(|| {
            reqwest::Client::builder()
                .connect_timeout(self.connect_timeout)
                .pool_idle_timeout(Duration::from_secs(60))
                .build()
                .expect("HTTP client builds")
        })
    }

    /// What the vectors are made with (`provider:model[:dimensions]`), stored with each.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// The unit vectors of a batch of passages, retried on failures worth retrying.
    pub async fn passages(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let mut wait = FIRST_BACKOFF;
        let mut tries = 0;
        loop {
            tries += 1;
            match self.request(texts, P::Index, self.timeout).await {
                Err(e) if e.retryable && tries < TRIES => {
                    tracing::info!(error = %e, tries, "embeddings request failed; retrying");
                    tokio::time::sleep(wait).await;
                    wait *= 2;
                }
                other => return other,
            }
        }
    }

    /// The unit vector of a question: one try, within the query time limit.
    pub async fn question(&self, text: &str) -> Result<Vec<f32>, EmbedError> {
        let mut v = self
            .request(&[text.to_string()], P::Query, self.query_timeout)
            .await?;
        Ok(v.remove(0))
    }

    /// One request, counted and timed.
    async fn request(
        &self,
        texts: &[String],
        purpose: Purpose,
        timeout: Duration,
    ) -> Result<Vec<Vec<f32>>, EmbedError> {
        let started = std::time::Instant::now();
        let result = tokio::time::timeout(timeout, self.send(texts, purpose))
            .await
            .unwrap_or_else(|_| Err(EmbedError::new(None, true, "no answer in time")));
        let outcome = if result.is_ok() { "ok" } else { "error" };
        self.metrics
            .embedding_requests
            .with(&[purpose.label(), outcome])
            .inc();
        self.metrics
            .embedding_seconds
            .with(&[purpose.label()])
            .observe(started.elapsed());
        result
    }

    async fn send(&self, texts: &[String], purpose: Purpose) -> Result<Vec<Vec<f32>>, EmbedError> {
        let texts: Vec<String> = texts
            .iter()
            .map(|t| t.chars().take(MAX_TEXT_CHARS).collect())
            .collect();
        let body = self.api.body(&self.model, &texts, self.dimensions, purpose);
        let mut req = self.http().post(&self.url).json(&body);
        if let Some(key) = &self.key {
            req = match self.api {
                Api::Gemini => req.header("x-goog-api-key", key),
                _ => req.bearer_auth(key),
            };
        }
        let resp = req
            .send()
            .await
            .map_err(|e| EmbedError::new(None, true, format!("unreachable: {e}")))?;
        let status = resp.status().as_u16();
        let text = resp
            .text()
            .await
            .map_err(|e| EmbedError::new(Some(status), true, format!("answer cut: {e}")))?;
        if !(200..300).contains(&status) {
            let retryable = matches!(status, 408 | 409 | 429) || status >= 500;
            return Err(EmbedError::new(Some(status), retryable, text));
        }
        let answer: Value = serde_json::from_str(&text)
            .map_err(|e| EmbedError::new(Some(status), false, format!("not JSON: {e}")))?;
        let vectors = self
            .api
            .vectors(&answer, texts.len())
            .map_err(|why| EmbedError::new(Some(status), false, why))?;
        vectors
            .into_iter()
            .map(|v| {
                vector::normalised(v)
                    .ok_or_else(|| EmbedError::new(Some(status), false, "an empty or zero vector"))
            })
            .collect()
    }
}
