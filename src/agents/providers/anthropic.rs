//! Anthropic Messages API. Streamed: `message_start` (usage, whose `input_tokens` gateways may
//! leave at 0), `content_block_delta` with `text_delta`, `ping`, `message_delta` (usage: output
//! and, through gateways, the real input count; `stop_reason`), `message_stop`, and `error`
//! events. Not streamed: one `message` object with `content[]` and `usage`.
//!
//! Extended thinking: a `content_block_start` of type `thinking` (its `thinking` text, usually
//! empty), then `thinking_delta` events (reasoning) and a `signature_delta` (an opaque
//! signature, dropped); a `redacted_thinking` block carries encrypted data only, so nothing of it
//! is shown. Thinking tokens are part of `output_tokens`.

use serde_json::{Value, json};

use super::{
    CompletionRequest, EventStream, Item, ProviderError, ProviderEvent, WireFormat, error,
    read_response, reasoning, send_error, sse::SseEvent, str_at, usage,
};
use crate::{agents::ProviderSettings, contract::AgentErrorClass};

pub async fn open(
    http: &reqwest::Client,
    s: &ProviderSettings,
    req: &CompletionRequest,
) -> Result<EventStream, ProviderError> {
    let key = s.anthropic_api_key.as_ref().ok_or_else(|| {
        ProviderError::new(
            AgentErrorClass::Misconfigured,
            "ANTHROPIC_API_KEY is not set",
        )
    })?;
    let base = s
        .anthropic_base_url
        .as_deref()
        .unwrap_or("https://api.anthropic.com")
        .trim_end_matches('/');
    let body = json!({
        "model": req.model,
        "system": req.system,
        "messages": req.messages.iter().map(|m| json!({"role": m.role, "content": m.content})).collect::<Vec<_>>(),
        "max_tokens": req.max_tokens,
        "temperature": req.temperature,
        "stream": true,
    });
    let resp = http
        .post(format!("{base}/v1/messages"))
        .header("x-api-key", key.expose())
        .header("anthropic-version", "2023-06-01")
        .json(&body)
        .send()
        .await
        .map_err(send_error)?;
    read_response::<Anthropic>(resp).await
}

#[derive(Default)]
pub(crate) struct Anthropic;

impl WireFormat for Anthropic {
    const EOF_ENDS: bool = false;

    fn event(&mut self, ev: SseEvent) -> Option<Vec<Item>> {
        let v: Value = serde_json::from_str(&ev.data).unwrap_or(Value::Null);
        let kind = ev
            .event
            .as_deref()
            .or_else(|| v.get("type").and_then(Value::as_str))
            .unwrap_or("");
        match kind {
            "message_start" => Some(
                usage(v.pointer("/message/usage"), "input_tokens", "output_tokens")
                    .into_iter()
                    .collect(),
            ),
            "content_block_start" => Some(
                match str_at(&v, "/content_block/type") {
                    "thinking" => reasoning(str_at(&v, "/content_block/thinking")),
                    "text" => text(str_at(&v, "/content_block/text")),
                    _ => None, // redacted_thinking, tool_use
                }
                .into_iter()
                .collect(),
            ),
            "content_block_delta" => Some(
                match str_at(&v, "/delta/type") {
                    "thinking_delta" => reasoning(str_at(&v, "/delta/thinking")),
                    // signature_delta: opaque; never answer text.
                    "signature_delta" => None,
                    _ => text(str_at(&v, "/delta/text")),
                }
                .into_iter()
                .collect(),
            ),
            "message_delta" => {
                let mut out: Vec<Item> = usage(v.get("usage"), "input_tokens", "output_tokens")
                    .into_iter()
                    .collect();
                out.extend(refusal(str_at(&v, "/delta/stop_reason")));
                Some(out)
            }
            "message_stop" => None,
            "error" => Some(vec![Err(error::from_error_value(&v, None))]),
            _ => Some(vec![]), // ping, content_block_stop
        }
    }

    fn complete(&mut self, v: &Value) -> Vec<Item> {
        let blocks = |kind: &str, field: &str| -> String {
            v.get("content")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter(|b| b.get("type").and_then(Value::as_str) == Some(kind))
                .filter_map(|b| b.get(field).and_then(Value::as_str))
                .collect()
        };
        let text = blocks("text", "text");
        let mut out: Vec<Item> = reasoning(&blocks("thinking", "thinking"))
            .into_iter()
            .collect();
        if !text.is_empty() {
            out.push(Ok(ProviderEvent::Delta(text)));
        }
        out.extend(refusal(str_at(v, "/stop_reason")));
        out.extend(usage(v.get("usage"), "input_tokens", "output_tokens"));
        out
    }
}

/// An answer-text event when `t` is not empty.
fn text(t: &str) -> Option<Item> {
    (!t.is_empty()).then(|| Ok(ProviderEvent::Delta(t.to_string())))
}

fn refusal(stop_reason: &str) -> Option<Item> {
    (stop_reason == "refusal").then(|| {
        Err(ProviderError::new(
            AgentErrorClass::ContentFilter,
            "stop_reason refusal",
        ))
    })
}
