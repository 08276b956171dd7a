//! Model providers, each with its real wire format: OpenAI-compatible Chat Completions (OpenAI,
//! gateways such as LiteLLM and OpenRouter, Ollama, vLLM, llama.cpp), Anthropic Messages, Google
//! Gemini `streamGenerateContent`, and the built-in offline `local` provider.
//!
//! Every answer is read by its Content-Type: an SSE stream is read event by event, and a plain
//! JSON completion (gateways and servers that ignore `stream: true`) becomes one chunk with its
//! usage; anything else is refused as `bad_response`.

mod anthropic;
pub mod error;
mod gemini;
mod local;
mod openai;
pub mod sse;

use std::{pin::Pin, time::Duration};

use futures_util::{Stream, StreamExt};
use serde_json::Value;

use super::ProviderSettings;
use crate::contract::AgentErrorClass;
pub use error::ProviderError;
use sse::{SseEvent, SseParser};

/// One turn of the conversation sent to a model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatMessage {
    /// `user` or `assistant`.
    pub role: &'static str,
    pub content: String,
}

/// What to ask a model.
#[derive(Debug, Clone)]
pub struct CompletionRequest {
    pub model: String,
    pub system: String,
    pub messages: Vec<ChatMessage>,
    pub temperature: f32,
    pub max_tokens: u32,
    /// Passages of the thread's documents the answer may cite as `[n]` (also in `system`;
    /// the offline provider answers from them).
    pub passages: Vec<crate::documents::retrieval::Numbered>,
    /// The requester's memory items, most relevant first (also in `system`; the offline
    /// provider mentions the first).
    pub memories: Vec<String>,
}

/// What a streaming model says.
#[derive(Debug, Clone, PartialEq)]
pub enum ProviderEvent {
    /// Answer text.
    Delta(String),
    /// Reasoning ("thinking") text: shown folded, stored apart, never part of the answer.
    Reasoning(String),
    /// Tokens the model spent reasoning, as the provider reported them (already counted in
    /// `completion`).
    ReasoningTokens(u64),
    Usage {
        prompt: Option<u64>,
        completion: Option<u64>,
    },
}

pub type Item = Result<ProviderEvent, ProviderError>;
pub type EventStream = Pin<Box<dyn Stream<Item = Item> + Send>>;

/// Where one call goes: a provider, a model and, for a local server found on this machine, its
/// OpenAI-compatible base URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// `local`, `openai`, `anthropic`, `gemini`, `ollama` or `openai-compatible`.
    pub provider: String,
    pub model: String,
    pub base_url: Option<String>,
    /// A provider connection defined by an admin (issue #18): its kind, base URL and key
    /// replace the settings'.
    pub connection: Option<std::sync::Arc<crate::agents::registry::Connection>>,
}

/// The configured provider endpoints.
#[derive(Clone)]
pub struct Providers {
    /// Built on first use: building a client reads the system's CA certificates (about 20 ms
    /// here), which at startup held up the listener and readiness.
    http: std::sync::Arc<std::sync::OnceLock<reqwest::Client>>,
    connect_timeout: Duration,
    settings: ProviderSettings,
}

impl Providers {
    pub fn new(settings: ProviderSettings, connect_timeout: Duration) -> Self {
        Self {
            http: Default::default(),
            connect_timeout,
            settings,
        }
    }

    pub fn http(&self) -> &reqwest::Client {
        self.http.get_or_init(|| {
            reqwest::Client::builder()
                .connect_timeout(self.connect_timeout)
                .pool_idle_timeout(Duration::from_secs(60))
                .build()
                .expect("HTTP client builds")
        })
    }

    /// Whether a key (or, for self-hosted OpenAI-compatible servers, a base URL) is configured.
    pub fn available(&self, provider: &str) -> bool {
        let s = &self.settings;
        match provider {
            "local" => true,
            "openai" => s.openai_api_key.is_some() || s.openai_base_url.is_some(),
            "anthropic" => s.anthropic_api_key.is_some(),
            "gemini" => s.gemini_api_key.is_some(),
            "ollama" => s.ollama_url.is_some(),
            _ => false,
        }
    }

    /// The configured secret of a provider, so that logs can be scrubbed of it.
    pub fn key_of(&self, provider: &str) -> Option<&str> {
        let s = &self.settings;
        match provider {
            "openai" => s.openai_api_key.as_ref(),
            "anthropic" => s.anthropic_api_key.as_ref(),
            "gemini" => s.gemini_api_key.as_ref(),
            _ => None,
        }
        .map(|k| k.expose())
    }

    /// Start a completion; the stream yields deltas and usage.
    pub async fn open(
        &self,
        route: &Route,
        req: &CompletionRequest,
    ) -> Result<EventStream, ProviderError> {
        let s = &self.settings;
        let mut req = req.clone();
        req.model = route.model.clone();
        if let Some(c) = &route.connection {
            return self.open_connection(c, &req).await;
        }
        match route.provider.as_str() {
            "local" => Ok(local::stream(&req)),
            "openai" => {
                let base = s
                    .openai_base_url
                    .as_deref()
                    .unwrap_or("https://api.openai.com/v1");
                openai::open(self.http(), base, s.openai_api_key.as_ref(), &req).await
            }
            "ollama" | "openai-compatible" => {
                let ollama = s
                    .ollama_url
                    .as_deref()
                    .map(|u| format!("{}/v1", u.trim_end_matches('/')));
                let base = route.base_url.clone().or(ollama).ok_or_else(|| {
                    ProviderError::new(
                        AgentErrorClass::Misconfigured,
                        "no base URL for this local server",
                    )
                })?;
                openai::open(self.http(), &base, None, &req).await
            }
            "anthropic" => anthropic::open(self.http(), s, &req).await,
            "gemini" => gemini::open(self.http(), s, &req).await,
            other => Err(ProviderError::new(
                AgentErrorClass::Misconfigured,
                format!("unknown provider {other:?}"),
            )),
        }
    }
}

impl Providers {
    /// Start a completion on a connection an admin defined: its base URL and key, in the wire
    /// format of its kind (Ollama speaks the OpenAI one under `/v1`).
    async fn open_connection(
        &self,
        c: &crate::agents::registry::Connection,
        req: &CompletionRequest,
    ) -> Result<EventStream, ProviderError> {
        let base = c.base_url.as_deref().map(|u| u.trim_end_matches('/'));
        match c.kind.as_str() {
            "openai" => {
                let base = base.unwrap_or("https://api.openai.com/v1");
                openai::open(self.http(), base, c.key.as_ref(), req).await
            }
            "ollama" => {
                let base = format!("{}/v1", base.unwrap_or("http://127.0.0.1:11434"));
                openai::open(self.http(), &base, c.key.as_ref(), req).await
            }
            "anthropic" | "gemini" => {
                let mut s = self.settings.clone();
                if c.kind == "anthropic" {
                    s.anthropic_base_url = base.map(str::to_string);
                    s.anthropic_api_key = c.key.clone();
                    anthropic::open(self.http(), &s, req).await
                } else {
                    s.gemini_base_url = base.map(str::to_string);
                    s.gemini_api_key = c.key.clone();
                    gemini::open(self.http(), &s, req).await
                }
            }
            other => Err(ProviderError::new(
                AgentErrorClass::Misconfigured,
                format!("unknown connection kind {other:?}"),
            )),
        }
    }
}

/// How a wire format reads its events and its non-streamed completion.
pub(crate) trait WireFormat: Default + Send + 'static {
    /// Whether the end of the body ends the stream (Gemini) rather than breaking it.
    const EOF_ENDS: bool;
    /// Map one SSE event to items, or `None` when the stream is complete.
    fn event(&mut self, ev: SseEvent) -> Option<Vec<Item>>;
    /// Map one non-streamed completion (a JSON object) to items.
    fn complete(&mut self, v: &Value) -> Vec<Item>;
}

/// Read an answer by its status and Content-Type.
pub(crate) async fn read_response<W: WireFormat>(
    resp: reqwest::Response,
) -> Result<EventStream, ProviderError> {
    let status = resp.status().as_u16();
    if !resp.status().is_success() {
        let headers = resp.headers().clone();
        let body = resp.text().await.unwrap_or_default();
        return Err(ProviderError::from_response(status, &headers, &body));
    }
    let content_type = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
    match content_type.as_deref() {
        Some("text/event-stream") | None => Ok(sse_stream(resp, W::EOF_ENDS, W::default())),
        Some(ct) if ct == "application/json" || ct.ends_with("+json") => {
            let body = resp.bytes().await.map_err(send_error)?;
            let v: Value = serde_json::from_slice(&body).map_err(|e| {
                bad_response(status, format!("a JSON answer that does not parse: {e}"))
            })?;
            let mut wire = W::default();
            let items: Vec<Item> = match &v {
                Value::Array(parts) => parts.iter().flat_map(|p| wire.complete(p)).collect(),
                v if v.get("error").is_some() => vec![Err(error::from_error_value(v, None))],
                v => wire.complete(v),
            };
            Ok(Box::pin(futures_util::stream::iter(items)))
        }
        Some(other) => Err(bad_response(
            status,
            format!("the answer's Content-Type is {other:?}, neither a stream nor JSON"),
        )),
    }
}

fn bad_response(status: u16, detail: String) -> ProviderError {
    ProviderError {
        status: Some(status),
        ..ProviderError::new(AgentErrorClass::BadResponse, detail)
    }
}

pub(crate) fn send_error(e: reqwest::Error) -> ProviderError {
    if e.is_timeout() {
        ProviderError::timeout()
    } else {
        // reqwest's text names the URL: the detail only reaches the log.
        ProviderError::new(
            AgentErrorClass::Unavailable,
            format!("could not reach the provider: {e}"),
        )
    }
}

/// The text of a JSON string field, or "".
pub(crate) fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

/// A reasoning event when `text` is not empty.
pub(crate) fn reasoning(text: &str) -> Option<Item> {
    (!text.is_empty()).then(|| Ok(ProviderEvent::Reasoning(text.to_string())))
}

/// A usage event when a count is present.
pub(crate) fn usage(v: Option<&Value>, prompt: &str, completion: &str) -> Option<Item> {
    let u = v.filter(|u| u.is_object())?;
    let prompt = u.get(prompt).and_then(Value::as_u64);
    let completion = u.get(completion).and_then(Value::as_u64);
    (prompt.is_some() || completion.is_some())
        .then_some(Ok(ProviderEvent::Usage { prompt, completion }))
}

/// Read an SSE body and map each event with `wire`. When the body ends without the format's
/// end marker, the stream is complete if `eof_ends` (Gemini), else it broke mid-way.
fn sse_stream<W: WireFormat>(resp: reqwest::Response, eof_ends: bool, wire: W) -> EventStream {
    struct State<W> {
        body: Pin<Box<dyn Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
        parser: SseParser,
        ready: std::collections::VecDeque<Item>,
        done: bool,
        wire: W,
    }
    let state = State {
        body: Box::pin(resp.bytes_stream()),
        parser: SseParser::default(),
        ready: Default::default(),
        done: false,
        wire,
    };
    Box::pin(futures_util::stream::unfold(
        state,
        move |mut st| async move {
            loop {
                if let Some(item) = st.ready.pop_front() {
                    return Some((item, st));
                }
                if st.done {
                    return None;
                }
                if let Some(ev) = st.parser.next_event() {
                    match st.wire.event(ev) {
                        Some(items) => st.ready.extend(items),
                        None => st.done = true,
                    }
                    continue;
                }
                match st.body.next().await {
                    Some(Ok(bytes)) => st.parser.feed(&bytes),
                    Some(Err(e)) => {
                        st.done = true;
                        let e = ProviderError::new(AgentErrorClass::ConnectionLost, e.to_string());
                        return Some((Err(e), st));
                    }
                    None => {
                        st.done = true;
                        if !eof_ends {
                            let e = ProviderError::new(
                                AgentErrorClass::ConnectionLost,
                                "the stream ended before it was complete",
                            );
                            return Some((Err(e), st));
                        }
                    }
                }
            }
        },
    ))
}
