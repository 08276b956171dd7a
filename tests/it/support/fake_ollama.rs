//! A local fake of Ollama, speaking its real shapes (Ollama's API docs and its OpenAI
//! compatibility layer): `GET /api/tags` (`{"models":[{"name","model","modified_at","size",
//! "digest","details":{…}}]}`), `GET /v1/models` (`{"object":"list","data":[…]}`) and
//! `POST /v1/chat/completions`, whose chunks repeat `"role":"assistant"` beside every piece of
//! content, carry `"system_fingerprint":"fp_ollama"`, end with an empty delta and
//! `finish_reason: "stop"`, then (with `stream_options.include_usage`) a usage chunk without
//! choices, then `data: [DONE]`.

use std::sync::{Arc, Mutex};

use axum::{
    Json, Router,
    body::Body,
    extract::State,
    http::{HeaderMap, header},
    response::Response,
    routing::{get, post},
};
use serde_json::{Value, json};

/// What the fake Ollama answers: the text of every completion.
pub const OLLAMA_TEXT: [&str; 4] = ["Hi", " from", " a local", " model."];

#[derive(Clone, Default)]
pub struct FakeOllama {
    /// The models `ollama list` would show.
    pub models: Arc<Mutex<Vec<Value>>>,
    /// Every completion request: its body and whether it carried an Authorization header.
    pub requests: Arc<Mutex<Vec<(Value, bool)>>>,
}

/// An `/api/tags` entry as Ollama writes it.
pub fn tag(name: &str, family: &str) -> Value {
    json!({
        "name": name,
        "model": name,
        "modified_at": "2025-05-10T08:06:48.639712648-07:00",
        "size": 2019393189u64,
        "digest": "a80c4f17acd55265feec403c7aef86be0c25983ab279d83f3bcd3abbcb5b8b72",
        "details": {
            "parent_model": "",
            "format": "gguf",
            "family": family,
            "families": [family],
            "parameter_size": "3.2B",
            "quantization_level": "Q4_K_M"
        }
    })
}

impl FakeOllama {
    /// Start on a free port with `models`; returns the base URL `http://127.0.0.1:PORT`.
    pub async fn start(models: Vec<Value>) -> (FakeOllama, String) {
        let fake = FakeOllama::default();
        *fake.models.lock().unwrap() = models;
        let app = Router::new()
            .route("/api/tags", get(tags))
            .route("/v1/models", get(openai_models))
            .route("/v1/chat/completions", post(chat))
            .with_state(fake.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (fake, url)
    }

    pub fn set_models(&self, models: Vec<Value>) {
        *self.models.lock().unwrap() = models;
    }
}

async fn tags(State(fake): State<FakeOllama>) -> Json<Value> {
    Json(json!({"models": fake.models.lock().unwrap().clone()}))
}

async fn openai_models(State(fake): State<FakeOllama>) -> Json<Value> {
    let data: Vec<Value> = fake
        .models
        .lock()
        .unwrap()
        .iter()
        .map(|m| json!({"id": m["name"], "object": "model", "created": 1746889608, "owned_by": "library"}))
        .collect();
    Json(json!({"object": "list", "data": data}))
}

async fn chat(
    State(fake): State<FakeOllama>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    fake.requests
        .lock()
        .unwrap()
        .push((body.clone(), headers.contains_key(header::AUTHORIZATION)));
    let model = body["model"].as_str().unwrap_or("").to_string();
    let chunk = |delta: Value, finish: Value| {
        json!({"id":"chatcmpl-476","object":"chat.completion.chunk","created":1746889608,"model":model,
               "system_fingerprint":"fp_ollama","choices":[{"index":0,"delta":delta,"finish_reason":finish}]})
    };
    let text = OLLAMA_TEXT.concat();
    if body["stream"] != true {
        let v = json!({"id":"chatcmpl-476","object":"chat.completion","created":1746889608,"model":model,
            "system_fingerprint":"fp_ollama","choices":[{"index":0,"message":{"role":"assistant","content":text},"finish_reason":"stop"}],
            "usage":{"prompt_tokens":31,"completion_tokens":4,"total_tokens":35}});
        return Response::builder()
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(v.to_string()))
            .unwrap();
    }
    let mut sse = String::new();
    for t in OLLAMA_TEXT {
        sse.push_str(&format!(
            "data: {}\n\n",
            chunk(json!({"role":"assistant","content":t}), Value::Null)
        ));
    }
    sse.push_str(&format!(
        "data: {}\n\n",
        chunk(json!({"role":"assistant","content":""}), json!("stop"))
    ));
    if body["stream_options"]["include_usage"] == true {
        sse.push_str(&format!(
            "data: {}\n\n",
            json!({"id":"chatcmpl-476","object":"chat.completion.chunk","created":1746889608,"model":model,
                   "system_fingerprint":"fp_ollama","choices":[],"usage":{"prompt_tokens":31,"completion_tokens":4,"total_tokens":35}})
        ));
    }
    sse.push_str("data: [DONE]\n\n");
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .body(Body::from(sse))
        .unwrap()
}
