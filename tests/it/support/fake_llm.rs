//! A local fake of the three LLM providers and of the gateways in front of them, speaking their
//! real wire formats (from the providers' documented examples): OpenAI Chat Completions,
//! Anthropic Messages and Gemini `streamGenerateContent`. It answers on any path that ends
//! like the real API (`…/chat/completions`, `…/v1/messages`, `…:streamGenerateContent`), so a
//! gateway's base URL (`/api/v1` of OpenRouter, `/v1` of LiteLLM) works as configured.
//! The model name picks the behaviour, in every format:
//!
//! * `ok`: five chunks and usage; `slow-N-MS`: N chunks `cI ` every MS ms;
//! * `json`: one non-streamed completion (`Content-Type: application/json`), as gateways send
//!   when they ignore `stream: true`; `json-array`: Gemini's array of responses;
//! * `role-first`: a first chunk with the role only; `empty-choices`: a first chunk with no
//!   choice / candidate / text at all (Azure's `prompt_filter_results`);
//! * `usage-with-choices`: usage inside the last chunk that still has choices;
//! * `ping`: keep-alives between chunks (`event: ping`, `: comment` lines);
//! * `usage-delta`: the prompt count only at the end (Anthropic: `input_tokens: 0` in
//!   `message_start`, the real count in `message_delta`);
//! * `ratelimit-once`: 429 with `Retry-After: 1`, then `ok`; `ratelimit`: always 429, no
//!   `Retry-After`; `error-event`: two chunks, then the provider's error event;
//! * `disconnect`: two chunks, then the connection drops mid-stream;
//! * `hang`: headers, then silence (`hang-summary`: only for summary requests);
//!   `fail-500`: always HTTP 500 with upstream junk in the body;
//! * `slow-gateway-429` / `slow-gateway-500`: a gateway that retries internally and answers
//!   each failed try after 5 s; `html`: a 200 with an HTML page; `missing`: 404 model not found;
//! * `filtered`: no text, the format's content-filter stop (`finish_reason: "content_filter"`,
//!   `stop_reason: "refusal"`, `finishReason: "SAFETY"`).
//!
//! * `think`: reasoning first, in the format's real shape (OpenAI-compatible
//!   `delta.reasoning_content` with `completion_tokens_details.reasoning_tokens`; Anthropic a
//!   `thinking` block with `thinking_delta`s and a `signature_delta`, then a `redacted_thinking`
//!   block; Gemini parts with `"thought": true` and `thoughtsTokenCount`), then the text;
//!   `think-alt`: OpenAI-compatible `delta.reasoning` (OpenRouter, Ollama); `think-json`: one
//!   non-streamed completion with its reasoning; `think-slow-N-MS`: N reasoning chunks `rI `
//!   every MS ms, then the text.
//!
//! A request whose system prompt is the summariser's (`agents::summary::SUMMARY_PROMPT`) gets
//! [`FakeLlm::SUMMARY`] as its answer, whatever the model.
//!
//! `GET …/models` lists one model as vLLM does.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::{
    Router,
    body::{Body, Bytes},
    extract::State,
    http::{HeaderMap, StatusCode, Uri, header},
    response::{IntoResponse, Response},
};
use futures_util::stream;
use serde_json::{Value, json};

mod thinking;
use thinking::{is_summary_request, thought, thoughts, thoughts_end};

#[derive(Clone, Copy, PartialEq)]
enum Wire {
    OpenAi,
    Anthropic,
    Gemini,
}

/// Upstream junk a gateway puts in its 500s: an object repr, an internal URL, its own name.
pub const LEAKY_500: &str = "litellm.InternalServerError: <openai.OpenAI object at 0x7f3a2c1b9d50> \
     while calling http://10.1.2.3:8000/v1/chat/completions (Traceback: File \"router.py\", line 42)";

/// One request: its path and its credential (`Authorization`, `x-api-key` or `x-goog-api-key`).
pub type Call = (String, Option<String>);

#[derive(Clone, Default)]
pub struct FakeLlm {
    /// Requests received, per model.
    pub requests: Arc<Mutex<HashMap<String, usize>>>,
    /// The last request bodies.
    pub bodies: Arc<Mutex<Vec<Value>>>,
    /// The path and authorization of every request.
    pub calls: Arc<Mutex<Vec<Call>>>,
    /// Streams being answered right now, and the most ever at once.
    pub active: Arc<AtomicUsize>,
    pub max_active: Arc<AtomicUsize>,
}

/// Counts one stream as running while it lives (its body is being sent).
struct Running(Arc<AtomicUsize>);

impl Running {
    fn start(fake: &FakeLlm) -> Running {
        let now = fake.active.fetch_add(1, Ordering::SeqCst) + 1;
        fake.max_active.fetch_max(now, Ordering::SeqCst);
        Running(fake.active.clone())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl FakeLlm {
    /// Start on a free port; returns the base URL `http://127.0.0.1:PORT`.
    pub async fn start() -> (FakeLlm, String) {
        let fake = FakeLlm::default();
        let app = Router::new().fallback(route).with_state(fake.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (fake, url)
    }

    /// The most streams that were ever answered at the same time.
    pub fn max_concurrent(&self) -> usize {
        self.max_active.load(Ordering::SeqCst)
    }

    /// Streams being answered right now.
    pub fn concurrent(&self) -> usize {
        self.active.load(Ordering::SeqCst)
    }

    pub fn count(&self, model: &str) -> usize {
        self.requests
            .lock()
            .unwrap()
            .get(model)
            .copied()
            .unwrap_or(0)
    }

    /// The full text a model's stream sends when it succeeds.
    pub fn full_text(model: &str) -> String {
        chunks(model).concat()
    }

    /// The reasoning a `think*` model sends before its text.
    pub fn full_reasoning(model: &str) -> String {
        thoughts(model).concat()
    }

    /// What the fake answers to a summary request.
    pub const SUMMARY: &str = "Summary: the early turns settled the plan.";
}

fn chunks(model: &str) -> Vec<String> {
    if model == "summary" {
        return vec![FakeLlm::SUMMARY.to_string()];
    }
    if let Some((n, _)) = slow(model) {
        return (0..n).map(|i| format!("c{i} ")).collect();
    }
    ["Hello", " from", " the", " fake", " provider."]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

fn slow(model: &str) -> Option<(usize, u64)> {
    let rest = model.strip_prefix("slow-")?;
    let (n, ms) = rest.split_once('-')?;
    Some((n.parse().ok()?, ms.parse().ok()?))
}

fn record(fake: &FakeLlm, model: &str, body: &Value, path: &str, headers: &HeaderMap) -> usize {
    fake.bodies.lock().unwrap().push(body.clone());
    let auth = ["authorization", "x-api-key", "x-goog-api-key"]
        .iter()
        .find_map(|h| headers.get(*h))
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    fake.calls.lock().unwrap().push((path.to_string(), auth));
    let mut r = fake.requests.lock().unwrap();
    let n = r.entry(model.to_string()).or_default();
    *n += 1;
    *n
}

/// Any path that ends like one of the three APIs.
async fn route(State(fake): State<FakeLlm>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let path = uri.path().to_string();
    if path.ends_with("/models") {
        // vLLM's model list (`GET /v1/models`).
        return json_response(
            StatusCode::OK,
            json!({"object":"list","data":[{"id":"Qwen/Qwen2.5-7B-Instruct","object":"model","created":1700000000,"owned_by":"vllm","root":"Qwen/Qwen2.5-7B-Instruct","parent":null,"max_model_len":32768}]}),
        );
    }
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let (wire, model) = if path.ends_with("/chat/completions") {
        (
            Wire::OpenAi,
            body["model"].as_str().unwrap_or("ok").to_string(),
        )
    } else if path.ends_with("/v1/messages") {
        (
            Wire::Anthropic,
            body["model"].as_str().unwrap_or("ok").to_string(),
        )
    } else if let Some(action) = path.split("/models/").nth(1).filter(|a| a.contains(':')) {
        (
            Wire::Gemini,
            action.split(':').next().unwrap_or("ok").to_string(),
        )
    } else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let n = record(&fake, &model, &body, &path, &headers);
    if is_summary_request(&body) {
        if model == "hang-summary" {
            return sse(&fake, wire, "hang".into());
        }
        return sse(&fake, wire, "summary".into());
    }
    respond(&fake, wire, model, n).await
}

fn json_response(status: StatusCode, v: Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        v.to_string(),
    )
        .into_response()
}

/// The error body of each format for `status`.
fn error_body(wire: Wire, status: u16, message: &str) -> Value {
    match wire {
        Wire::OpenAi => {
            json!({"error": {"message": message, "type": "server_error", "code": null}})
        }
        Wire::Anthropic => {
            json!({"type": "error", "error": {"type": if status == 429 {"rate_limit_error"} else {"api_error"}, "message": message}})
        }
        Wire::Gemini => {
            json!({"error": {"code": status, "message": message, "status": if status == 429 {"RESOURCE_EXHAUSTED"} else {"INTERNAL"}}})
        }
    }
}

async fn respond(fake: &FakeLlm, wire: Wire, model: String, n: usize) -> Response {
    match model.as_str() {
        "ratelimit-once" if n == 1 => {
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [
                    (header::RETRY_AFTER, "1"),
                    (header::CONTENT_TYPE, "application/json"),
                ],
                error_body(wire, 429, "slow down").to_string(),
            )
                .into_response();
        }
        "ratelimit" => {
            return json_response(
                StatusCode::TOO_MANY_REQUESTS,
                error_body(wire, 429, "Rate limit reached for requests"),
            );
        }
        "fail-500" => {
            return json_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                error_body(wire, 500, LEAKY_500),
            );
        }
        "slow-gateway-429" | "slow-gateway-500" => {
            tokio::time::sleep(Duration::from_secs(5)).await;
            let status = if model.ends_with("429") { 429 } else { 500 };
            let code = StatusCode::from_u16(status).unwrap();
            return json_response(code, error_body(wire, status, LEAKY_500));
        }
        "missing" => {
            return json_response(
                StatusCode::NOT_FOUND,
                json!({"error": {"message": "The model `missing` does not exist", "type": "invalid_request_error", "code": "model_not_found"}}),
            );
        }
        "html" => {
            return (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "text/html")],
                "<html><body>Gateway login</body></html>",
            )
                .into_response();
        }
        "json" | "json-array" | "think-json" => {
            return json_response(StatusCode::OK, completion(wire, &model));
        }
        _ => {}
    }
    sse(fake, wire, model)
}

/// One non-streamed completion in the format's shape.
fn completion(wire: Wire, model: &str) -> Value {
    let text = FakeLlm::full_text("ok");
    let thinking = FakeLlm::full_reasoning(model);
    match wire {
        Wire::OpenAi if model == "think-json" => {
            json!({"id":"chatcmpl-1","object":"chat.completion","created":1700000000,"model":model,
            "choices":[{"index":0,"message":{"role":"assistant","content":text,"reasoning_content":thinking},"finish_reason":"stop"}],
            "usage":{"prompt_tokens":25,"completion_tokens":12,"total_tokens":37,"completion_tokens_details":{"reasoning_tokens":7}}})
        }
        Wire::OpenAi => {
            json!({"id":"chatcmpl-1","object":"chat.completion","created":1700000000,"model":model,
            "choices":[{"index":0,"message":{"role":"assistant","content":text},"finish_reason":"stop"}],
            "usage":{"prompt_tokens":25,"completion_tokens":5,"total_tokens":30}})
        }
        Wire::Anthropic if model == "think-json" => {
            json!({"id":"msg_1","type":"message","role":"assistant","model":model,
            "content":[{"type":"thinking","thinking":thinking,"signature":"EqQBCgIYAhIM"},{"type":"redacted_thinking","data":"EmwKAhgBEgy3"},{"type":"text","text":text}],
            "stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":25,"output_tokens":12}})
        }
        Wire::Anthropic => json!({"id":"msg_1","type":"message","role":"assistant","model":model,
            "content":[{"type":"text","text":text}],"stop_reason":"end_turn","stop_sequence":null,
            "usage":{"input_tokens":25,"output_tokens":5}}),
        Wire::Gemini if model == "think-json" => {
            json!({"candidates":[{"content":{"parts":[{"text":thinking,"thought":true},{"text":text}],"role":"model"},"finishReason":"STOP","index":0}],
            "usageMetadata":{"promptTokenCount":25,"candidatesTokenCount":5,"thoughtsTokenCount":7,"totalTokenCount":37}})
        }
        Wire::Gemini => {
            let parts: Vec<Value> = chunks("ok").iter().enumerate().map(|(i, t)| {
                let mut r = json!({"candidates":[{"content":{"parts":[{"text":t}],"role":"model"},"index":0}],"usageMetadata":{"promptTokenCount":25,"candidatesTokenCount":i + 1,"totalTokenCount":26 + i}});
                if i == 4 { r["candidates"][0]["finishReason"] = json!("STOP"); }
                r
            }).collect();
            if model == "json-array" {
                Value::Array(parts)
            } else {
                json!({"candidates":[{"content":{"parts":[{"text":text}],"role":"model"},"finishReason":"STOP","index":0}],
                    "usageMetadata":{"promptTokenCount":25,"candidatesTokenCount":5,"totalTokenCount":30}})
            }
        }
    }
}

fn data(v: Value) -> String {
    format!("data: {v}\n\n")
}

fn event(name: &str, v: Value) -> String {
    format!("event: {name}\ndata: {v}\n\n")
}

/// The events before the text.
fn head(wire: Wire, model: &str) -> Vec<String> {
    let input = if model == "usage-delta" { 0 } else { 25 };
    match wire {
        Wire::Anthropic => {
            let mut h = vec![
                event(
                    "message_start",
                    json!({"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","content":[],"model":model,"stop_reason":null,"usage":{"input_tokens":input,"output_tokens":1}}}),
                ),
                event("ping", json!({"type": "ping"})),
            ];
            // A thinking model opens its thinking block first (and its text block after it).
            if !model.starts_with("think") {
                h.insert(
                    1,
                    event(
                        "content_block_start",
                        json!({"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}),
                    ),
                );
            }
            if model == "empty-choices" {
                h.push(event("content_block_delta", json!({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":""}})));
            }
            h
        }
        Wire::OpenAi => match model {
            "empty-choices" => vec![data(
                json!({"id":"","object":"","created":0,"model":"","choices":[],"prompt_filter_results":[{"prompt_index":0,"content_filter_results":{}}]}),
            )],
            "role-first" => vec![data(
                json!({"id":"chatcmpl-1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"role":"assistant"},"finish_reason":null}]}),
            )],
            _ => vec![data(
                json!({"id":"chatcmpl-1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}),
            )],
        },
        Wire::Gemini => match model {
            "role-first" => vec![data(
                json!({"candidates":[{"content":{"role":"model"},"index":0}]}),
            )],
            "empty-choices" => vec![data(
                json!({"candidates":[],"usageMetadata":{"promptTokenCount":25}}),
            )],
            _ => vec![],
        },
    }
}

/// One text chunk (`last`: the final one).
fn delta(wire: Wire, model: &str, text: &str, last: bool) -> String {
    let ping = match (wire, model) {
        (Wire::Anthropic, "ping") => event("ping", json!({"type":"ping"})),
        (_, "ping") => ": OPENROUTER PROCESSING\n\n".into(),
        _ => String::new(),
    };
    let chunk = match wire {
        Wire::OpenAi => data(
            json!({"id":"chatcmpl-1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":text},"finish_reason":null}],"usage":null}),
        ),
        Wire::Anthropic => event(
            "content_block_delta",
            json!({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":text}}),
        ),
        Wire::Gemini => {
            let mut v = json!({"candidates":[{"content":{"parts":[{"text":text}],"role":"model"},"index":0}]});
            if model == "usage-delta" {
                v["usageMetadata"] = json!({"promptTokenCount": 0});
            }
            if last && model == "usage-with-choices" {
                v["candidates"][0]["finishReason"] = json!("STOP");
                v["usageMetadata"] =
                    json!({"promptTokenCount":25,"candidatesTokenCount":5,"totalTokenCount":30});
            }
            data(v)
        }
    };
    ping + &chunk
}

/// The events after the text.
fn tail(wire: Wire, model: &str) -> Vec<String> {
    match (wire, model) {
        (_, "disconnect") | (_, "hang") => vec![],
        (Wire::OpenAi, "error-event") => vec![data(
            json!({"error":{"message":"The server had an error","type":"server_error"}}),
        )],
        (Wire::Anthropic, "error-event") => vec![event(
            "error",
            json!({"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}),
        )],
        (Wire::Gemini, "error-event") => vec![data(
            json!({"error":{"code":500,"message":"Internal error","status":"INTERNAL"}}),
        )],
        (Wire::OpenAi, "filtered") => vec![
            data(
                json!({"id":"chatcmpl-1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{},"finish_reason":"content_filter"}]}),
            ),
            "data: [DONE]\n\n".into(),
        ],
        (Wire::Anthropic, "filtered") => vec![
            event(
                "message_delta",
                json!({"type":"message_delta","delta":{"stop_reason":"refusal","stop_sequence":null},"usage":{"output_tokens":0}}),
            ),
            event("message_stop", json!({"type":"message_stop"})),
        ],
        (Wire::Gemini, "filtered") => vec![data(
            json!({"candidates":[{"finishReason":"SAFETY","index":0,"safetyRatings":[{"category":"HARM_CATEGORY_HARASSMENT","probability":"HIGH","blocked":true}]}],"usageMetadata":{"promptTokenCount":25,"totalTokenCount":25}}),
        )],
        (Wire::OpenAi, "usage-with-choices") => vec![
            data(
                json!({"id":"chatcmpl-1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":{"prompt_tokens":25,"completion_tokens":5,"total_tokens":30}}),
            ),
            "data: [DONE]\n\n".into(),
        ],
        (Wire::OpenAi, m) if m.starts_with("think") => vec![
            data(
                json!({"id":"chatcmpl-1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":null}),
            ),
            data(
                json!({"id":"chatcmpl-1","object":"chat.completion.chunk","choices":[],"usage":{"prompt_tokens":25,"completion_tokens":12,"total_tokens":37,"completion_tokens_details":{"reasoning_tokens":7}}}),
            ),
            "data: [DONE]\n\n".into(),
        ],
        (Wire::OpenAi, _) => vec![
            data(
                json!({"id":"chatcmpl-1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":null}),
            ),
            data(
                json!({"id":"chatcmpl-1","object":"chat.completion.chunk","choices":[],"usage":{"prompt_tokens":25,"completion_tokens":5,"total_tokens":30}}),
            ),
            "data: [DONE]\n\n".into(),
        ],
        (Wire::Anthropic, _) => {
            let usage = if model == "usage-delta" {
                json!({"input_tokens":25,"output_tokens":5})
            } else {
                json!({"output_tokens":5})
            };
            vec![
                event(
                    "content_block_stop",
                    json!({"type":"content_block_stop","index":0}),
                ),
                event(
                    "message_delta",
                    json!({"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":usage}),
                ),
                event("message_stop", json!({"type":"message_stop"})),
            ]
        }
        (Wire::Gemini, "usage-with-choices") => vec![],
        (Wire::Gemini, m) if m.starts_with("think") => vec![data(
            json!({"candidates":[{"content":{"parts":[{"text":""}],"role":"model"},"finishReason":"STOP","index":0}],"usageMetadata":{"promptTokenCount":25,"candidatesTokenCount":5,"thoughtsTokenCount":7,"totalTokenCount":37}}),
        )],
        (Wire::Gemini, _) => vec![data(
            json!({"candidates":[{"content":{"parts":[{"text":""}],"role":"model"},"finishReason":"STOP","index":0}],"usageMetadata":{"promptTokenCount":25,"candidatesTokenCount":5,"totalTokenCount":30}}),
        )],
    }
}

fn sse(fake: &FakeLlm, wire: Wire, model: String) -> Response {
    let parts = chunks(&model);
    let delay = slow(&model)
        .or_else(|| model.strip_prefix("think-").and_then(slow))
        .map(|(_, ms)| ms)
        .unwrap_or(5);
    let failing = matches!(model.as_str(), "error-event" | "disconnect");
    let sent: Vec<String> = match model.as_str() {
        "filtered" => vec![],
        _ if failing => parts[..2].to_vec(),
        _ => parts.clone(),
    };
    let thinking = thoughts(&model);
    let mut deltas: Vec<String> = thinking
        .iter()
        .enumerate()
        .map(|(i, t)| thought(wire, &model, t, i == 0))
        .collect();
    if !thinking.is_empty() {
        // The end of the reasoning rides with the first text chunk.
        let end = thoughts_end(wire);
        deltas.extend(sent.iter().enumerate().map(|(i, t)| {
            let d = delta(wire, &model, t, i + 1 == sent.len());
            if i == 0 { end.clone() + &d } else { d }
        }));
    } else {
        deltas.extend(
            sent.iter()
                .enumerate()
                .map(|(i, t)| delta(wire, &model, t, i + 1 == sent.len())),
        );
    }
    let head: Vec<Result<Bytes, std::io::Error>> = head(wire, &model)
        .into_iter()
        .map(|s| Ok(Bytes::from(s)))
        .collect();
    let tail = tail(wire, &model);
    let running = Running::start(fake);
    let hang = model == "hang";
    let disconnect = model == "disconnect";
    let body = stream::unfold(
        (
            head.into_iter(),
            deltas.into_iter(),
            tail.into_iter(),
            false,
        ),
        move |(mut head, mut deltas, mut tail, ended)| async move {
            if ended {
                return None;
            }
            if let Some(h) = head.next() {
                return Some((h, (head, deltas, tail, false)));
            }
            if hang {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                return None;
            }
            if let Some(d) = deltas.next() {
                tokio::time::sleep(Duration::from_millis(delay)).await;
                return Some((Ok(Bytes::from(d)), (head, deltas, tail, false)));
            }
            if disconnect {
                tokio::time::sleep(Duration::from_millis(20)).await;
                return Some((
                    Err(std::io::Error::other("connection dropped")),
                    (head, deltas, tail, true),
                ));
            }
            tail.next()
                .map(|t| (Ok(Bytes::from(t)), (head, deltas, tail, false)))
        },
    );
    // The stream counts as running until its body is finished or dropped (client went away).
    let body = futures_util::StreamExt::map(body, move |item| {
        let _ = &running;
        item
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(body))
        .unwrap()
}
