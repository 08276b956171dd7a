//! A local fake of the three LLM providers, speaking their real streaming wire formats (from
//! the providers' documented SSE examples): OpenAI Chat Completions, Anthropic Messages and
//! Gemini `streamGenerateContent`. The model name picks the behaviour:
//!
//! * `ok`: five chunks and usage; `slow-N-MS`: N chunks `cI ` every MS ms;
//! * `ratelimit-once`: 429 with `Retry-After: 1`, then `ok`;
//! * `error-event`: two chunks, then the provider's error event;
//! * `disconnect`: two chunks, then the connection drops mid-stream;
//! * `hang`: headers, then silence; `fail-500`: always HTTP 500.

use std::{
    collections::HashMap,
    convert::Infallible,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::{
    Json, Router,
    body::{Body, Bytes},
    extract::{Path, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::post,
};
use futures_util::stream;
use serde_json::{Value, json};

#[derive(Clone, Copy, PartialEq)]
enum Wire {
    OpenAi,
    Anthropic,
    Gemini,
}

#[derive(Clone, Default)]
pub struct FakeLlm {
    /// Requests received, per model.
    pub requests: Arc<Mutex<HashMap<String, usize>>>,
    /// The last request bodies.
    pub bodies: Arc<Mutex<Vec<Value>>>,
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
        let app = Router::new()
            .route("/v1/chat/completions", post(openai))
            .route("/v1/messages", post(anthropic))
            .route("/v1beta/models/{action}", post(gemini))
            .with_state(fake.clone());
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
}

fn chunks(model: &str) -> Vec<String> {
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

fn record(fake: &FakeLlm, model: &str, body: &Value) -> usize {
    fake.bodies.lock().unwrap().push(body.clone());
    let mut r = fake.requests.lock().unwrap();
    let n = r.entry(model.to_string()).or_default();
    *n += 1;
    *n
}

async fn openai(State(fake): State<FakeLlm>, Json(body): Json<Value>) -> Response {
    let model = body["model"].as_str().unwrap_or("ok").to_string();
    respond(&fake, Wire::OpenAi, model, body).await
}

async fn anthropic(State(fake): State<FakeLlm>, Json(body): Json<Value>) -> Response {
    let model = body["model"].as_str().unwrap_or("ok").to_string();
    respond(&fake, Wire::Anthropic, model, body).await
}

async fn gemini(
    State(fake): State<FakeLlm>,
    Path(action): Path<String>,
    Json(body): Json<Value>,
) -> Response {
    let model = action.split(':').next().unwrap_or("ok").to_string();
    respond(&fake, Wire::Gemini, model, body).await
}

async fn respond(fake: &FakeLlm, wire: Wire, model: String, body: Value) -> Response {
    let n = record(fake, &model, &body);
    match model.as_str() {
        "ratelimit-once" if n == 1 => {
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [(header::RETRY_AFTER, "1")],
                Json(json!({"error": {"message": "slow down"}})),
            )
                .into_response();
        }
        "fail-500" => {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                Json(json!({"error": {"message": "boom"}})),
            )
                .into_response();
        }
        _ => {}
    }
    let parts = chunks(&model);
    let delay = slow(&model).map(|(_, ms)| ms).unwrap_or(5);
    let mut events: Vec<Result<Bytes, std::io::Error>> = Vec::new();
    let mut push = |s: String| events.push(Ok(Bytes::from(s)));
    match wire {
        Wire::Anthropic => push(format!(
            "event: message_start\ndata: {}\n\nevent: content_block_start\ndata: {}\n\nevent: ping\ndata: {{\"type\": \"ping\"}}\n\n",
            json!({"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","content":[],"model":model,"stop_reason":null,"usage":{"input_tokens":25,"output_tokens":1}}}),
            json!({"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}})
        )),
        Wire::OpenAi => push(format!(
            "data: {}\n\n",
            json!({"id":"chatcmpl-1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]})
        )),
        Wire::Gemini => {}
    }
    let failing = matches!(model.as_str(), "error-event" | "disconnect");
    let sent: Vec<String> = if failing {
        parts[..2].to_vec()
    } else {
        parts.clone()
    };
    let mut deltas = Vec::new();
    for text in &sent {
        deltas.push(match wire {
            Wire::OpenAi => format!("data: {}\n\n", json!({"id":"chatcmpl-1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":text},"finish_reason":null}]})),
            Wire::Anthropic => format!("event: content_block_delta\ndata: {}\n\n", json!({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":text}})),
            Wire::Gemini => format!("data: {}\n\n", json!({"candidates":[{"content":{"parts":[{"text":text}],"role":"model"},"index":0}]})),
        });
    }
    let tail: Vec<String> = match (wire, model.as_str()) {
        (_, "disconnect") | (_, "hang") => vec![],
        (Wire::OpenAi, "error-event") => vec![format!(
            "data: {}\n\n",
            json!({"error":{"message":"The server had an error","type":"server_error"}})
        )],
        (Wire::Anthropic, "error-event") => vec![format!(
            "event: error\ndata: {}\n\n",
            json!({"type":"error","error":{"type":"api_error","message":"Internal server error"}})
        )],
        (Wire::Gemini, "error-event") => vec![format!(
            "data: {}\n\n",
            json!({"error":{"code":500,"message":"Internal error","status":"INTERNAL"}})
        )],
        (Wire::OpenAi, _) => vec![
            format!(
                "data: {}\n\n",
                json!({"id":"chatcmpl-1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]})
            ),
            format!(
                "data: {}\n\n",
                json!({"id":"chatcmpl-1","object":"chat.completion.chunk","choices":[],"usage":{"prompt_tokens":25,"completion_tokens":5,"total_tokens":30}})
            ),
            "data: [DONE]\n\n".into(),
        ],
        (Wire::Anthropic, _) => vec![
            format!(
                "event: content_block_stop\ndata: {}\n\n",
                json!({"type":"content_block_stop","index":0})
            ),
            format!(
                "event: message_delta\ndata: {}\n\n",
                json!({"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":5}})
            ),
            format!(
                "event: message_stop\ndata: {}\n\n",
                json!({"type":"message_stop"})
            ),
        ],
        (Wire::Gemini, _) => vec![format!(
            "data: {}\n\n",
            json!({"candidates":[{"content":{"parts":[{"text":""}],"role":"model"},"finishReason":"STOP","index":0}],"usageMetadata":{"promptTokenCount":25,"candidatesTokenCount":5,"totalTokenCount":30}})
        )],
    };
    let head = events;
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
    let _: Option<Infallible> = None;
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
