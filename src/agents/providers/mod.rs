//! Model providers, each streaming with its real wire format: OpenAI-compatible Chat
//! Completions, Anthropic Messages, Google Gemini `streamGenerateContent`, and the built-in
//! offline `local` provider.

mod anthropic;
mod gemini;
mod local;
mod openai;
pub mod sse;

use std::{pin::Pin, time::Duration};

use futures_util::{Stream, StreamExt};

use super::ProviderSettings;
use sse::SseParser;

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
}

/// What a streaming model says.
#[derive(Debug, Clone, PartialEq)]
pub enum ProviderEvent {
    Delta(String),
    Usage {
        prompt: Option<u64>,
        completion: Option<u64>,
    },
}

/// Why a provider request failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProviderError {
    #[error("rate limited by the provider")]
    RateLimited { retry_after: Option<Duration> },
    #[error("provider answered HTTP {status}: {message}")]
    Http { status: u16, message: String },
    #[error("could not reach the provider: {0}")]
    Connect(String),
    #[error("the provider timed out")]
    Timeout,
    #[error("the provider reported an error: {0}")]
    Api(String),
    #[error("the provider's stream broke: {0}")]
    Broken(String),
    #[error("provider not configured: {0}")]
    NotConfigured(String),
}

impl ProviderError {
    /// Worth retrying before the first token: 429, 5xx, connection problems.
    pub fn retryable(&self) -> bool {
        match self {
            ProviderError::RateLimited { .. }
            | ProviderError::Connect(_)
            | ProviderError::Timeout => true,
            ProviderError::Http { status, .. } => *status >= 500,
            _ => false,
        }
    }

    /// The `stream_error` code for this failure.
    pub fn code(&self) -> crate::contract::ErrorCode {
        use crate::contract::ErrorCode;
        match self {
            ProviderError::RateLimited { .. } => ErrorCode::RateLimited,
            ProviderError::Timeout => ErrorCode::Timeout,
            _ => ErrorCode::ProviderError,
        }
    }
}

pub type EventStream = Pin<Box<dyn Stream<Item = Result<ProviderEvent, ProviderError>> + Send>>;

/// A configured provider endpoint.
#[derive(Clone)]
pub struct Providers {
    http: reqwest::Client,
    settings: ProviderSettings,
}

impl Providers {
    pub fn new(settings: ProviderSettings, connect_timeout: Duration) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(connect_timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .build()
            .expect("HTTP client builds");
        Self { http, settings }
    }

    /// Whether a key (or, for self-hosted OpenAI-compatible servers, a base URL) is configured.
    pub fn available(&self, provider: &str) -> bool {
        let s = &self.settings;
        match provider {
            "local" => true,
            "openai" => s.openai_api_key.is_some() || s.openai_base_url.is_some(),
            "anthropic" => s.anthropic_api_key.is_some(),
            "gemini" => s.gemini_api_key.is_some(),
            _ => false,
        }
    }

    /// Start a streaming completion; the stream yields deltas and usage.
    pub async fn open(
        &self,
        provider: &str,
        req: &CompletionRequest,
    ) -> Result<EventStream, ProviderError> {
        match provider {
            "local" => Ok(local::stream(req)),
            "openai" => openai::open(&self.http, &self.settings, req).await,
            "anthropic" => anthropic::open(&self.http, &self.settings, req).await,
            "gemini" => gemini::open(&self.http, &self.settings, req).await,
            other => Err(ProviderError::NotConfigured(format!(
                "unknown provider {other:?}"
            ))),
        }
    }
}

/// Turn a non-2xx response into an error (429 with `Retry-After`).
pub(crate) async fn error_for(resp: reqwest::Response) -> ProviderError {
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|s| Duration::from_secs_f64(s.clamp(0.0, 120.0)));
    let body = resp.text().await.unwrap_or_default();
    let message = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| {
            v.pointer("/error/message")
                .or_else(|| v.pointer("/error"))
                .and_then(|m| m.as_str().map(str::to_string))
        })
        .unwrap_or_else(|| body.chars().take(200).collect());
    if status == 429 {
        ProviderError::RateLimited { retry_after }
    } else {
        ProviderError::Http { status, message }
    }
}

pub(crate) fn send_error(e: reqwest::Error) -> ProviderError {
    if e.is_timeout() {
        ProviderError::Timeout
    } else {
        ProviderError::Connect(e.to_string())
    }
}

/// Read an SSE body and map each event with `map`, which yields items or `None` to end the
/// stream. When the body ends without that, the stream is complete if `eof_ends` (Gemini), else
/// it broke mid-way.
pub(crate) fn sse_stream<F>(resp: reqwest::Response, eof_ends: bool, map: F) -> EventStream
where
    F: FnMut(sse::SseEvent) -> Option<Vec<Result<ProviderEvent, ProviderError>>> + Send + 'static,
{
    struct State<F> {
        body: Pin<Box<dyn Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
        parser: SseParser,
        ready: std::collections::VecDeque<Result<ProviderEvent, ProviderError>>,
        done: bool,
        map: F,
    }
    let state = State {
        body: Box::pin(resp.bytes_stream()),
        parser: SseParser::default(),
        ready: Default::default(),
        done: false,
        map,
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
                    match (st.map)(ev) {
                        Some(items) => st.ready.extend(items),
                        None => st.done = true,
                    }
                    continue;
                }
                match st.body.next().await {
                    Some(Ok(bytes)) => st.parser.feed(&bytes),
                    Some(Err(e)) => {
                        st.done = true;
                        return Some((Err(ProviderError::Broken(e.to_string())), st));
                    }
                    None => {
                        st.done = true;
                        if !eof_ends {
                            return Some((
                                Err(ProviderError::Broken(
                                    "the stream ended before it was complete".into(),
                                )),
                                st,
                            ));
                        }
                    }
                }
            }
        },
    ))
}
