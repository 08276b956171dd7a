//! Local models found by themselves: at start and every `discovery_interval_ms`, the instance
//! asks Ollama (`GET {ollama_url}/api/tags`) and every configured OpenAI-compatible server
//! (`GET {url}/models`) which models they serve, and keeps the chat models (embedding models
//! are left out). Agents on the `local` provider, and agents whose provider has no key, then
//! answer with the first one instead of the offline stub (see `Agents::route`).

use std::{
    sync::{Arc, RwLock},
    time::Duration,
};

use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::ProviderSettings;

/// How long one probe may take: a local server answers at once or is not there.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// A chat model served on this machine (or a configured local address).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalModel {
    /// `ollama` or `openai-compatible`.
    pub provider: &'static str,
    /// The OpenAI-compatible base URL to call (`…/v1`).
    pub base_url: String,
    pub model: String,
}

/// What the last probe found, shared with the agents.
#[derive(Default)]
pub struct LocalModels {
    found: RwLock<Vec<LocalModel>>,
}

impl LocalModels {
    /// The first local chat model, if any.
    pub fn first(&self) -> Option<LocalModel> {
        self.found
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .first()
            .cloned()
    }

    pub fn all(&self) -> Vec<LocalModel> {
        self.found.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set(&self, models: Vec<LocalModel>) -> bool {
        let mut found = self.found.write().unwrap_or_else(|e| e.into_inner());
        let changed = *found != models;
        *found = models;
        changed
    }

    /// Probe once `after` is done, then every `interval` until `stop`; `on_change` runs after
    /// each probe that changed the list.
    pub fn watch(
        self: &Arc<Self>,
        providers: super::providers::Providers,
        settings: ProviderSettings,
        after: impl Future<Output = ()> + Send + 'static,
        stop: CancellationToken,
        on_change: impl Fn(&[LocalModel]) + Send + 'static,
    ) {
        if settings.ollama_url.is_none() && settings.local_urls.is_empty() {
            return;
        }
        let me = self.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = after => {}
            }
            let Some(http) = probe_client(&providers, &settings).await else {
                return;
            };
            loop {
                let models = probe_all(&http, &settings).await;
                if me.set(models.clone()) {
                    tracing::info!(
                        models = ?models.iter().map(|m| format!("{}:{}", m.provider, m.model)).collect::<Vec<_>>(),
                        "local models found"
                    );
                    on_change(&models);
                }
                if settings.discovery_interval_ms == 0 {
                    return;
                }
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(settings.discovery_interval_ms)) => {}
                }
            }
        });
    }
}

/// The client the probes use. Local servers are usually plain HTTP (Ollama's default is
/// `http://127.0.0.1:11434`): then a client without CA certificates does, which builds in
/// microseconds; the shared client reads the system's certificates (a stat and a PEM parse per
/// file, 2-3 ms of CPU here, on a cold start's path to readiness) and is built on first use,
/// off the async workers, only when a probe URL is HTTPS.
async fn probe_client(
    providers: &super::providers::Providers,
    settings: &ProviderSettings,
) -> Option<reqwest::Client> {
    let mut urls = settings.ollama_url.iter().chain(&settings.local_urls);
    if urls.all(|u| u.starts_with("http://")) {
        return reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .connect_timeout(PROBE_TIMEOUT)
            .build()
            .ok();
    }
    let providers = providers.clone();
    tokio::task::spawn_blocking(move || providers.http().clone())
        .await
        .ok()
}

/// Every chat model of every local server, Ollama first, each in the server's order.
pub async fn probe_all(http: &reqwest::Client, s: &ProviderSettings) -> Vec<LocalModel> {
    let mut out = Vec::new();
    if let Some(url) = &s.ollama_url {
        let url = url.trim_end_matches('/');
        if let Some(v) = get_json(http, &format!("{url}/api/tags")).await {
            out.extend(ollama_models(&v).into_iter().map(|model| LocalModel {
                provider: "ollama",
                base_url: format!("{url}/v1"),
                model,
            }));
        }
    }
    for url in &s.local_urls {
        let url = url.trim_end_matches('/');
        if let Some(v) = get_json(http, &format!("{url}/models")).await {
            out.extend(openai_models(&v).into_iter().map(|model| LocalModel {
                provider: "openai-compatible",
                base_url: url.to_string(),
                model,
            }));
        }
    }
    out
}

async fn get_json(http: &reqwest::Client, url: &str) -> Option<Value> {
    let resp = http.get(url).timeout(PROBE_TIMEOUT).send().await.ok()?;
    if !resp.status().is_success() {
        return None;
    }
    resp.json().await.ok()
}

/// Ollama's `/api/tags`: `{"models":[{"name","model","details":{"family","families",…}}]}`.
pub fn ollama_models(v: &Value) -> Vec<String> {
    v.get("models")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|m| {
            let families: Vec<&str> = m
                .pointer("/details/families")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .chain(m.pointer("/details/family"))
                .filter_map(Value::as_str)
                .collect();
            !families.iter().any(|f| f.contains("bert"))
        })
        .filter_map(|m| {
            m.get("name")
                .or_else(|| m.get("model"))
                .and_then(Value::as_str)
        })
        .filter(|name| is_chat_model(name))
        .map(str::to_string)
        .collect()
}

/// OpenAI's `/v1/models`: `{"object":"list","data":[{"id","object":"model",…}]}`.
pub fn openai_models(v: &Value) -> Vec<String> {
    v.get("data")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|m| m.get("id").and_then(Value::as_str))
        .filter(|id| is_chat_model(id))
        .map(str::to_string)
        .collect()
}

/// The chat models a provider connection offers (the admin UI's model picker): `GET /models`
/// (OpenAI and compatible gateways), `/api/tags` (Ollama), `/v1/models` (Anthropic) or
/// `/v1beta/models` (Gemini), with the connection's key. `None` when the provider does not
/// answer with a list.
pub async fn connection_models(
    http: &reqwest::Client,
    c: &super::registry::Connection,
) -> Option<Vec<String>> {
    let base = c.base_url.as_deref().map(|u| u.trim_end_matches('/'));
    let key = c.key.as_ref().map(|k| k.expose());
    let request = match c.kind.as_str() {
        "openai" => {
            let url = format!("{}/models", base.unwrap_or("https://api.openai.com/v1"));
            let r = http.get(url);
            match key {
                Some(k) => r.bearer_auth(k),
                None => r,
            }
        }
        "ollama" => http.get(format!(
            "{}/api/tags",
            base.unwrap_or("http://127.0.0.1:11434")
        )),
        "anthropic" => http
            .get(format!(
                "{}/v1/models",
                base.unwrap_or("https://api.anthropic.com")
            ))
            .header("x-api-key", key.unwrap_or_default())
            .header("anthropic-version", "2023-06-01"),
        "gemini" => http
            .get(format!(
                "{}/v1beta/models",
                base.unwrap_or("https://generativelanguage.googleapis.com")
            ))
            .header("x-goog-api-key", key.unwrap_or_default()),
        _ => return None,
    };
    let resp = request.timeout(PROBE_TIMEOUT).send().await.ok()?;
    if !resp.status().is_success() {
        return None;
    }
    let v: Value = resp.json().await.ok()?;
    Some(match c.kind.as_str() {
        "ollama" => ollama_models(&v),
        "gemini" => v
            .get("models")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|m| m.get("name").and_then(Value::as_str))
            .map(|n| n.trim_start_matches("models/"))
            .filter(|n| is_chat_model(n))
            .map(str::to_string)
            .collect(),
        _ => openai_models(&v),
    })
}

/// Embedding and reranking models cannot chat.
fn is_chat_model(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    !["embed", "rerank", "minilm", "bge-", "e5-"]
        .iter()
        .any(|p| n.contains(p))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn embedding_models_are_left_out() {
        let tags = json!({"models": [
            {"name": "nomic-embed-text:latest", "model": "nomic-embed-text:latest",
             "details": {"family": "nomic-bert", "families": ["nomic-bert"]}},
            {"name": "llama3.2:latest", "model": "llama3.2:latest",
             "details": {"family": "llama", "families": ["llama"]}},
        ]});
        assert_eq!(ollama_models(&tags), ["llama3.2:latest"]);
        let list = json!({"object": "list", "data": [
            {"id": "BAAI/bge-reranker-v2-m3", "object": "model"},
            {"id": "Qwen/Qwen2.5-7B-Instruct", "object": "model"},
        ]});
        assert_eq!(openai_models(&list), ["Qwen/Qwen2.5-7B-Instruct"]);
    }
}
