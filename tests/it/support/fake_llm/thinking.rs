//! The fake's reasoning ("thinking") in each format's real shape, and how it recognises a
//! summary request (issue #18).

use serde_json::{Value, json};

use super::{Wire, data, event, slow};

/// The reasoning chunks of a `think*` model (none for the others).
pub(super) fn thoughts(model: &str) -> Vec<String> {
    if let Some((n, _)) = model.strip_prefix("think-").and_then(slow) {
        return (0..n).map(|i| format!("r{i} ")).collect();
    }
    if model.starts_with("think") {
        return ["Let me", " think", " about it."]
            .iter()
            .map(|s| s.to_string())
            .collect();
    }
    Vec::new()
}

/// One reasoning chunk in the format's real shape (`first`: opens the thinking block).
pub(super) fn thought(wire: Wire, model: &str, text: &str, first: bool) -> String {
    match wire {
        Wire::OpenAi if model == "think-alt" => data(
            json!({"id":"chatcmpl-1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"reasoning":text},"finish_reason":null}]}),
        ),
        Wire::OpenAi => data(
            json!({"id":"chatcmpl-1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":null,"reasoning_content":text},"finish_reason":null}]}),
        ),
        Wire::Anthropic => {
            let open = if first {
                event(
                    "content_block_start",
                    json!({"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":"","signature":""}}),
                )
            } else {
                String::new()
            };
            open + &event(
                "content_block_delta",
                json!({"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":text}}),
            )
        }
        Wire::Gemini => data(
            json!({"candidates":[{"content":{"parts":[{"text":text,"thought":true}],"role":"model"},"index":0}]}),
        ),
    }
}

/// What closes the reasoning: Anthropic's signature, the thinking block's end and a redacted
/// block; nothing in the other formats.
pub(super) fn thoughts_end(wire: Wire) -> String {
    match wire {
        Wire::Anthropic => [
            event(
                "content_block_delta",
                json!({"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds"}}),
            ),
            event("content_block_stop", json!({"type":"content_block_stop","index":0})),
            event(
                "content_block_start",
                json!({"type":"content_block_start","index":1,"content_block":{"type":"redacted_thinking","data":"EmwKAhgBEgy3va3pzix/LafPsn4aDFIT2Xlxh0L5L8rLVyIwxtE3rAFBa8cr3qpP"}}),
            ),
            event("content_block_stop", json!({"type":"content_block_stop","index":1})),
            event(
                "content_block_start",
                json!({"type":"content_block_start","index":2,"content_block":{"type":"text","text":""}}),
            ),
        ]
        .concat(),
        _ => String::new(),
    }
}

/// Whether a request is the summariser's (its system prompt).
pub(super) fn is_summary_request(body: &Value) -> bool {
    let system = body["system"]
        .as_str()
        .or_else(|| body["messages"][0]["content"].as_str())
        .or_else(|| body["systemInstruction"]["parts"][0]["text"].as_str())
        .unwrap_or("");
    system.starts_with("You summarise conversations")
}
