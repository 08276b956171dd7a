//! Anthropic Messages API with `stream: true`: `message_start` (input usage),
//! `content_block_delta` with `text_delta`, `message_delta` (output usage), `message_stop`, and
//! `error` events.

use serde_json::{Value, json};

use super::{
    CompletionRequest, EventStream, ProviderError, ProviderEvent, error_for, send_error, sse_stream,
};
use crate::agents::ProviderSettings;

pub async fn open(
    http: &reqwest::Client,
    s: &ProviderSettings,
    req: &CompletionRequest,
) -> Result<EventStream, ProviderError> {
    let key = s
        .anthropic_api_key
        .as_ref()
        .ok_or_else(|| ProviderError::NotConfigured("ANTHROPIC_API_KEY is not set".into()))?;
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
    if !resp.status().is_success() {
        return Err(error_for(resp).await);
    }
    Ok(sse_stream(resp, false, |ev| {
        let v: Value = serde_json::from_str(&ev.data).unwrap_or(Value::Null);
        let kind = ev
            .event
            .as_deref()
            .or_else(|| v.get("type").and_then(Value::as_str))
            .unwrap_or("");
        match kind {
            "message_start" => Some(vec![Ok(ProviderEvent::Usage {
                prompt: v
                    .pointer("/message/usage/input_tokens")
                    .and_then(Value::as_u64),
                completion: None,
            })]),
            "content_block_delta" => {
                let text = v
                    .pointer("/delta/text")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                Some(if text.is_empty() {
                    vec![]
                } else {
                    vec![Ok(ProviderEvent::Delta(text.to_string()))]
                })
            }
            "message_delta" => Some(vec![Ok(ProviderEvent::Usage {
                prompt: None,
                completion: v.pointer("/usage/output_tokens").and_then(Value::as_u64),
            })]),
            "message_stop" => None,
            "error" => {
                let msg = v
                    .pointer("/error/message")
                    .and_then(Value::as_str)
                    .unwrap_or("unknown error");
                let overloaded =
                    v.pointer("/error/type").and_then(Value::as_str) == Some("overloaded_error");
                Some(vec![Err(if overloaded {
                    ProviderError::Http {
                        status: 529,
                        message: msg.to_string(),
                    }
                } else {
                    ProviderError::Api(msg.to_string())
                })])
            }
            _ => Some(vec![]), // ping, content_block_start/stop
        }
    }))
}
