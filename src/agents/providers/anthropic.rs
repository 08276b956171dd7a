//! Anthropic Messages API. Streamed: `message_start` (usage, whose `input_tokens` gateways may
//! leave at 0), `content_block_delta` with `text_delta`, `ping`, `message_delta` (usage: output
//! and, through gateways, the real input count; `stop_reason`), `message_stop`, and `error`
//! events. Not streamed: one `message` object with `content[]` and `usage`.

use serde_json::{Value, json};

use super::{
    CompletionRequest, EventStream, Item, ProviderError, ProviderEvent, WireFormat, error,
    read_response, send_error, sse::SseEvent, str_at, usage,
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
            "content_block_delta" => {
                let text = str_at(&v, "/delta/text");
                Some(if text.is_empty() {
                    vec![] // empty text, or a thinking / signature delta: never answer text
                } else {
                    vec![Ok(ProviderEvent::Delta(text.to_string()))]
                })
            }
            "message_delta" => {
                let mut out: Vec<Item> = usage(v.get("usage"), "input_tokens", "output_tokens")
                    .into_iter()
                    .collect();
                out.extend(refusal(str_at(&v, "/delta/stop_reason")));
                Some(out)
            }
            "message_stop" => None,
            "error" => Some(vec![Err(error::from_error_value(&v, None))]),
            _ => Some(vec![]), // ping, content_block_start/stop
        }
    }

    fn complete(&mut self, v: &Value) -> Vec<Item> {
        let text: String = v
            .get("content")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|b| b.get("type").and_then(Value::as_str) == Some("text"))
            .filter_map(|b| b.get("text").and_then(Value::as_str))
            .collect();
        let mut out = Vec::new();
        if !text.is_empty() {
            out.push(Ok(ProviderEvent::Delta(text)));
        }
        out.extend(refusal(str_at(v, "/stop_reason")));
        out.extend(usage(v.get("usage"), "input_tokens", "output_tokens"));
        out
    }
}

fn refusal(stop_reason: &str) -> Option<Item> {
    (stop_reason == "refusal").then(|| {
        Err(ProviderError::new(
            AgentErrorClass::ContentFilter,
            "stop_reason refusal",
        ))
    })
}
