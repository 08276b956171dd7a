//! Google Gemini `models/{model}:streamGenerateContent?alt=sse`: each event is a
//! `GenerateContentResponse` with `candidates[0].content.parts[].text` and `usageMetadata`
//! (cumulative); the stream ends with the body. Without `alt=sse` honoured, the answer is a
//! JSON array of the same objects; a `generateContent` answer is one of them.
//!
//! Thinking models send their thought summaries as parts with `"thought": true` (reasoning,
//! never answer text) and count them apart, in `usageMetadata.thoughtsTokenCount`: they are
//! added to the completion count, as Google bills them.

use serde_json::{Value, json};

use super::{
    CompletionRequest, EventStream, Item, ProviderError, ProviderEvent, WireFormat, error,
    read_response, reasoning, send_error, sse::SseEvent, str_at,
};
use crate::{agents::ProviderSettings, contract::AgentErrorClass};

/// Finish reasons and block reasons that mean a safety or policy filter stopped the answer.
const FILTERED: [&str; 6] = [
    "SAFETY",
    "PROHIBITED_CONTENT",
    "BLOCKLIST",
    "SPII",
    "RECITATION",
    "OTHER_BLOCKED",
];

pub async fn open(
    http: &reqwest::Client,
    s: &ProviderSettings,
    req: &CompletionRequest,
) -> Result<EventStream, ProviderError> {
    let key = s.gemini_api_key.as_ref().ok_or_else(|| {
        ProviderError::new(AgentErrorClass::Misconfigured, "GEMINI_API_KEY is not set")
    })?;
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
    read_response::<Gemini>(resp).await
}

#[derive(Default)]
pub(crate) struct Gemini;

impl WireFormat for Gemini {
    const EOF_ENDS: bool = true;

    fn event(&mut self, ev: SseEvent) -> Option<Vec<Item>> {
        if ev.data.trim().is_empty() {
            return Some(vec![]);
        }
        Some(match serde_json::from_str::<Value>(&ev.data) {
            Ok(v) if v.get("error").is_some() => vec![Err(error::from_error_value(&v, None))],
            Ok(v) => self.complete(&v),
            Err(e) => vec![Err(ProviderError::new(
                AgentErrorClass::BadResponse,
                format!("an event that does not parse: {e}"),
            ))],
        })
    }

    fn complete(&mut self, v: &Value) -> Vec<Item> {
        let mut out = Vec::new();
        if let Some(parts) = v
            .pointer("/candidates/0/content/parts")
            .and_then(Value::as_array)
        {
            let of = |thought: bool| -> String {
                parts
                    .iter()
                    .filter(|p| {
                        (p.get("thought").and_then(Value::as_bool) == Some(true)) == thought
                    })
                    .filter_map(|p| p.get("text").and_then(Value::as_str))
                    .collect()
            };
            out.extend(reasoning(&of(true)));
            let text = of(false);
            if !text.is_empty() {
                out.push(Ok(ProviderEvent::Delta(text)));
            }
        }
        let finish = str_at(v, "/candidates/0/finishReason");
        let blocked = str_at(v, "/promptFeedback/blockReason");
        if FILTERED.contains(&finish) || !blocked.is_empty() {
            out.push(Err(ProviderError::new(
                AgentErrorClass::ContentFilter,
                format!("finishReason {finish:?}, blockReason {blocked:?}"),
            )));
        }
        out.extend(gemini_usage(v.get("usageMetadata")));
        out
    }
}

/// Usage from `usageMetadata`: thoughts count as completion tokens, and are reported apart.
fn gemini_usage(u: Option<&Value>) -> Vec<Item> {
    let Some(u) = u.filter(|u| u.is_object()) else {
        return Vec::new();
    };
    let count = |k: &str| u.get(k).and_then(Value::as_u64);
    let thoughts = count("thoughtsTokenCount").filter(|n| *n > 0);
    let prompt = count("promptTokenCount");
    let completion = match (count("candidatesTokenCount"), thoughts) {
        (None, None) => None,
        (c, t) => Some(c.unwrap_or(0) + t.unwrap_or(0)),
    };
    let mut out = Vec::new();
    if prompt.is_some() || completion.is_some() {
        out.push(Ok(ProviderEvent::Usage { prompt, completion }));
    }
    out.extend(thoughts.map(|n| Ok(ProviderEvent::ReasoningTokens(n))));
    out
}
