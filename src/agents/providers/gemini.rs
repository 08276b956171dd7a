//! Google Gemini `models/{model}:streamGenerateContent?alt=sse`: each event is a
//! `GenerateContentResponse` with `candidates[0].content.parts[].text` and `usageMetadata`; the
//! stream ends with the body.

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
        .gemini_api_key
        .as_ref()
        .ok_or_else(|| ProviderError::NotConfigured("GEMINI_API_KEY is not set".into()))?;
    let base = s
        .gemini_base_url
        .as_deref()
        .unwrap_or("https://generativelanguage.googleapis.com")
        .trim_end_matches('/');
    let contents: Vec<Value> = req
        .messages
        .iter()
        .map(|m| json!({"role": if m.role == "assistant" { "model" } else { "user" }, "parts": [{"text": m.content}]}))
        .collect();
    let body = json!({
        "systemInstruction": {"parts": [{"text": req.system}]},
        "contents": contents,
        "generationConfig": {"temperature": req.temperature, "maxOutputTokens": req.max_tokens},
    });
    let resp = http
        .post(format!(
            "{base}/v1beta/models/{}:streamGenerateContent?alt=sse",
            req.model
        ))
        .header("x-goog-api-key", key.expose())
        .json(&body)
        .send()
        .await
        .map_err(send_error)?;
    if !resp.status().is_success() {
        return Err(error_for(resp).await);
    }
    Ok(sse_stream(resp, true, |ev| {
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
        if let Some(parts) = v
            .pointer("/candidates/0/content/parts")
            .and_then(Value::as_array)
        {
            let text: String = parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect();
            if !text.is_empty() {
                out.push(Ok(ProviderEvent::Delta(text)));
            }
        }
        if let Some(u) = v.get("usageMetadata") {
            out.push(Ok(ProviderEvent::Usage {
                prompt: u.get("promptTokenCount").and_then(Value::as_u64),
                completion: u.get("candidatesTokenCount").and_then(Value::as_u64),
            }));
        }
        Some(out)
    }))
}
