//! OpenAI-compatible Chat Completions (OpenAI, LiteLLM, OpenRouter, Ollama, vLLM, llama.cpp
//! server). Streamed: `data: {"choices":[{"delta":{"content":"..."}}]}` events (a first one
//! may carry only the role, or no choice at all), usage in a final chunk (with
//! `stream_options.include_usage`, with or without choices), `: comment` keep-alives, then
//! `data: [DONE]`. Not streamed: one `chat.completion` object.
//!
//! Reasoning comes as `delta.reasoning_content` (DeepSeek, vLLM, many gateways) or
//! `delta.reasoning` (OpenRouter, Ollama, newer vLLM) beside `delta.content`; its token count as
//! `usage.completion_tokens_details.reasoning_tokens` (part of `completion_tokens`).

use serde_json::{Value, json};

use super::{
    CompletionRequest, EventStream, Item, ProviderError, ProviderEvent, WireFormat, error,
    read_response, reasoning, send_error, sse::SseEvent, str_at, usage,
};
use crate::{contract::AgentErrorClass, settings::Secret};

pub async fn open(
    http: &reqwest::Client,
    base: &str,
    key: Option<&Secret>,
    req: &CompletionRequest,
) -> Result<EventStream, ProviderError> {
    let base = base.trim_end_matches('/');
    let mut messages = vec![json!({"role": "system", "content": req.system})];
    messages.extend(
        req.messages
            .iter()
            .map(|m| json!({"role": m.role, "content": m.content})),
    );
    let body = json!({
        "model": req.model,
        "messages": messages,
        "temperature": req.temperature,
        "max_tokens": req.max_tokens,
        "stream": true,
        "stream_options": {"include_usage": true},
    });
    let mut call = http.post(format!("{base}/chat/completions")).json(&body);
    if let Some(key) = key {
        call = call.bearer_auth(key.expose());
    }
    let resp = call.send().await.map_err(send_error)?;
    read_response::<OpenAi>(resp).await
}

#[derive(Default)]
pub(crate) struct OpenAi;

impl WireFormat for OpenAi {
    const EOF_ENDS: bool = false;

    fn event(&mut self, ev: SseEvent) -> Option<Vec<Item>> {
        if ev.data.trim() == "[DONE]" {
            return None;
        }
        if ev.data.trim().is_empty() {
            return Some(vec![]);
        }
        let v: Value = match serde_json::from_str(&ev.data) {
            Ok(v) => v,
            Err(e) => {
                return Some(vec![Err(ProviderError::new(
                    AgentErrorClass::BadResponse,
                    format!("an event that does not parse: {e}"),
                ))]);
            }
        };
        if v.get("error").is_some() || ev.event.as_deref() == Some("error") {
            return Some(vec![Err(error::from_error_value(&v, None))]);
        }
        Some(chunk(&v, "/choices/0/delta"))
    }

    fn complete(&mut self, v: &Value) -> Vec<Item> {
        let pointer = if v.pointer("/choices/0/message").is_some() {
            "/choices/0/message"
        } else {
            "/choices/0/delta"
        };
        chunk(v, pointer)
    }
}

/// The reasoning and text of the delta (or message) at `pointer`, a content-filter stop, and
/// usage wherever it is.
fn chunk(v: &Value, pointer: &str) -> Vec<Item> {
    let mut out = Vec::new();
    let thinking = str_at(v, &format!("{pointer}/reasoning_content"));
    let thinking = if thinking.is_empty() {
        str_at(v, &format!("{pointer}/reasoning"))
    } else {
        thinking
    };
    out.extend(reasoning(thinking));
    let text = str_at(v, &format!("{pointer}/content"));
    if !text.is_empty() {
        out.push(Ok(ProviderEvent::Delta(text.to_string())));
    }
    if str_at(v, "/choices/0/finish_reason") == "content_filter" {
        out.push(Err(ProviderError::new(
            AgentErrorClass::ContentFilter,
            "finish_reason content_filter",
        )));
    }
    out.extend(usage(v.get("usage"), "prompt_tokens", "completion_tokens"));
    if let Some(n) = v
        .pointer("/usage/completion_tokens_details/reasoning_tokens")
        .and_then(Value::as_u64)
        .filter(|n| *n > 0)
    {
        out.push(Ok(ProviderEvent::ReasoningTokens(n)));
    }
    out
}
