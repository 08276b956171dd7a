//! OpenAI-compatible Chat Completions with `stream: true` (OpenAI, OpenRouter, Ollama, vLLM,
//! llama.cpp server): `data: {"choices":[{"delta":{"content":"..."}}]}` events, a final usage
//! chunk (`stream_options.include_usage`), then `data: [DONE]`.

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
    let base = s
        .openai_base_url
        .as_deref()
        .unwrap_or("https://api.openai.com/v1")
        .trim_end_matches('/');
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
    if let Some(key) = &s.openai_api_key {
        call = call.bearer_auth(key.expose());
    }
    let resp = call.send().await.map_err(send_error)?;
    if !resp.status().is_success() {
        return Err(error_for(resp).await);
    }
    Ok(sse_stream(resp, false, |ev| {
        if ev.data.trim() == "[DONE]" {
            return None;
        }
        let v: Value = match serde_json::from_str(&ev.data) {
            Ok(v) => v,
            Err(e) => return Some(vec![Err(ProviderError::Broken(format!("bad event: {e}")))]),
        };
        if let Some(err) = v.get("error") {
            let msg = err
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("unknown error");
            return Some(vec![Err(ProviderError::Api(msg.to_string()))]);
        }
        let mut out = Vec::new();
        if let Some(text) = v
            .pointer("/choices/0/delta/content")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
        {
            out.push(Ok(ProviderEvent::Delta(text.to_string())));
        }
        if let Some(u) = v.get("usage").filter(|u| !u.is_null()) {
            out.push(Ok(ProviderEvent::Usage {
                prompt: u.get("prompt_tokens").and_then(Value::as_u64),
                completion: u.get("completion_tokens").and_then(Value::as_u64),
            }));
        }
        Some(out)
    }))
}
