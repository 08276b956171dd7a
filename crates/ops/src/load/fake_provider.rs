//! `emergence load fake-provider` (hidden): the OpenAI-compatible provider of the agent-stream
//! benchmark (issue #20, `bench/agentstream.py`), the Rust twin of `bench/peers/fake_provider.mjs`
//! with the same wire format and pacing, at a fraction of its CPU per chunk.
//!
//! `POST /v1/chat/completions` answers with a server-sent event stream of `chat.completion.chunk`
//! objects (a role chunk, the content chunks, a finish chunk, a usage chunk, `[DONE]`). Each answer
//! draws a pace of 30-80 tokens/s, sends `tokens_per_chunk` tokens per chunk after a 100-400 ms
//! first-token delay, and lasts about `answer` long. Every chunk's text starts with
//! `[seq/total@emit_us] ` (`CLOCK_MONOTONIC` microseconds taken as the chunk is handed to its
//! connection's task, so the hand-off to the socket write counts in the measured latency), so
//! a watcher on the same machine measures emit -> receipt latency and counts lost chunks.
//!
//! One task paces every stream with a 1 ms timing wheel (no timer per chunk); `GET /stats` says
//! how late chunks left against their schedule (the proof that the fake kept its pace),
//! `POST /stats/reset` clears the counters.

use std::{
    collections::BTreeMap,
    convert::Infallible,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::Context;
use axum::{
    Json, Router,
    body::{Body, Bytes},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use tokio::sync::mpsc;

use super::agentstream::monotonic_us;

/// How the fake answers.
#[derive(Debug, Clone)]
pub struct FakeConfig {
    pub listen: SocketAddr,
    /// Length of each answer.
    pub answer: Duration,
    pub tokens_per_chunk: u32,
}

const WORDS: [&str; 25] = [
    "the", "a", "of", "to", "and", "in", "is", "it", "that", "for", "on", "with", "as", "was",
    "at", "by", "an", "be", "this", "which", "or", "from", "but", "not", "are",
];
const HEAD: &str = r#"data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":0,"model":"fake-stream","choices":[{"index":0,"delta":{"content":""#;
const TAIL: &str = "\"},\"finish_reason\":null}]}\n\n";
const ROLE: &str = "data: {\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\"},\"finish_reason\":null}]}\n\n";
const FINISH: &str = "data: {\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion.chunk\",\"created\":0,\"model\":\"fake-stream\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n";

/// Counters since the last reset.
struct Stats {
    requests: u64,
    finished: u64,
    aborted: u64,
    chunks: u64,
    tokens: u64,
    active: i64,
    /// How late chunks left against their schedule, in ms.
    lateness: hdrhistogram::Histogram<u64>,
}

impl Default for Stats {
    fn default() -> Self {
        Self {
            requests: 0,
            finished: 0,
            aborted: 0,
            chunks: 0,
            tokens: 0,
            active: 0,
            lateness: hdrhistogram::Histogram::new(3).expect("3 significant digits is valid"),
        }
    }
}

#[derive(serde::Serialize)]
struct StatsView {
    requests: u64,
    finished: u64,
    aborted: u64,
    chunks: u64,
    tokens: u64,
    active: i64,
    lateness_p50_ms: Option<u64>,
    lateness_p99_ms: Option<u64>,
    lateness_max_ms: Option<u64>,
}

/// One answer being streamed: where its bytes go and where it is in its schedule.
struct Answer {
    tx: mpsc::UnboundedSender<Bytes>,
    i: u32,
    total: u32,
    interval_ms: f64,
    start_ms: f64,
}

impl Answer {
    fn due_ms(&self) -> f64 {
        self.start_ms + f64::from(self.i) * self.interval_ms
    }
}

#[derive(Clone)]
struct Fake {
    stats: Arc<Mutex<Stats>>,
    new: mpsc::UnboundedSender<Answer>,
    answer: Duration,
    tokens_per_chunk: u32,
}

/// Two uniform draws in [0, 1).
fn uniform2() -> (f64, f64) {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).expect("the OS random source works");
    let u = |s: &[u8]| {
        (u64::from_le_bytes(s.try_into().expect("8 bytes")) >> 11) as f64 / (1u64 << 53) as f64
    };
    (u(&b[..8]), u(&b[8..]))
}

fn now_ms() -> f64 {
    monotonic_us() as f64 / 1000.0
}

/// Serve until the process is stopped.
pub async fn serve(cfg: FakeConfig) -> anyhow::Result<()> {
    let stats = Arc::new(Mutex::new(Stats::default()));
    let (new, incoming) = mpsc::unbounded_channel();
    tokio::spawn(wheel(incoming, stats.clone(), cfg.tokens_per_chunk));
    let fake = Fake {
        stats,
        new,
        answer: cfg.answer,
        tokens_per_chunk: cfg.tokens_per_chunk,
    };
    let app = Router::new()
        .route(
            "/readyz",
            get(|| async { Json(serde_json::json!({"status": "ready"})) }),
        )
        .route("/stats", get(stats_view))
        .route("/stats/reset", post(reset))
        .route("/v1/models", get(models))
        .route("/v1/chat/completions", post(completions))
        .with_state(fake);
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("binding {}", cfg.listen))?;
    eprintln!(
        "fake provider on http://{}/v1 ({:?} answers)",
        listener.local_addr()?,
        cfg.answer
    );
    axum::serve(listener, app).await.context("serving")
}

async fn stats_view(axum::extract::State(f): axum::extract::State<Fake>) -> Json<StatsView> {
    let s = f.stats.lock().unwrap_or_else(|e| e.into_inner());
    let q = |q: f64| (!s.lateness.is_empty()).then(|| s.lateness.value_at_quantile(q));
    Json(StatsView {
        requests: s.requests,
        finished: s.finished,
        aborted: s.aborted,
        chunks: s.chunks,
        tokens: s.tokens,
        active: s.active,
        lateness_p50_ms: q(0.5),
        lateness_p99_ms: q(0.99),
        lateness_max_ms: (!s.lateness.is_empty()).then(|| s.lateness.max()),
    })
}

async fn reset(axum::extract::State(f): axum::extract::State<Fake>) -> StatusCode {
    let mut s = f.stats.lock().unwrap_or_else(|e| e.into_inner());
    let active = s.active;
    *s = Stats::default();
    // Answers still running stay counted as running.
    s.active = active;
    StatusCode::NO_CONTENT
}

async fn models() -> Json<serde_json::Value> {
    Json(serde_json::json!({"object": "list", "data": [{"id": "fake-stream", "object": "model"}]}))
}

/// Start one answer: a rate of 30-80 tokens/s, a 100-400 ms first-token delay.
async fn completions(axum::extract::State(f): axum::extract::State<Fake>) -> Response {
    let (r1, r2) = uniform2();
    let rate = 30.0 + r1 * 50.0;
    let tpc = f64::from(f.tokens_per_chunk);
    let total = ((rate * f.answer.as_secs_f64()) / tpc).round().max(1.0) as u32;
    let (tx, mut rx) = mpsc::unbounded_channel::<Bytes>();
    let _ = tx.send(Bytes::from_static(ROLE.as_bytes()));
    let answer = Answer {
        tx,
        i: 0,
        total,
        interval_ms: 1000.0 * tpc / rate,
        start_ms: now_ms() + 100.0 + r2 * 300.0,
    };
    {
        let mut s = f.stats.lock().unwrap_or_else(|e| e.into_inner());
        s.requests += 1;
        s.active += 1;
    }
    let _ = f.new.send(answer);
    let body = futures_util::stream::poll_fn(move |cx| {
        rx.poll_recv(cx).map(|b| b.map(Ok::<_, Infallible>))
    });
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(body),
    )
        .into_response()
}

/// The timing wheel: every millisecond, advance each answer that is due.
async fn wheel(
    mut incoming: mpsc::UnboundedReceiver<Answer>,
    stats: Arc<Mutex<Stats>>,
    tokens_per_chunk: u32,
) {
    let mut slots: BTreeMap<u64, Vec<Answer>> = BTreeMap::new();
    let mut cursor = now_ms() as u64;
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let schedule = |slots: &mut BTreeMap<u64, Vec<Answer>>, cursor: u64, a: Answer| {
        let slot = (a.due_ms().ceil() as u64).max(cursor + 1);
        slots.entry(slot).or_default().push(a);
    };
    let mut text = String::with_capacity(256);
    loop {
        tick.tick().await;
        while let Ok(a) = incoming.try_recv() {
            schedule(&mut slots, cursor, a);
        }
        let now = now_ms();
        cursor = now as u64;
        let Some((&first, _)) = slots.first_key_value() else {
            continue;
        };
        if first > cursor {
            continue;
        }
        let mut s = stats.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(entry) = slots.first_entry() {
            if *entry.key() > cursor {
                break;
            }
            for mut a in entry.remove() {
                if a.tx.is_closed() {
                    s.aborted += 1;
                    s.active -= 1;
                    continue;
                }
                if a.i < a.total {
                    let late = (now - a.due_ms()).round().max(0.0) as u64;
                    let _ = s.lateness.record(late);
                    text.clear();
                    text.push_str(HEAD);
                    let _ = std::fmt::Write::write_fmt(
                        &mut text,
                        format_args!("[{}/{}@{}] ", a.i, a.total, monotonic_us()),
                    );
                    for k in 0..tokens_per_chunk {
                        let w = (a.i * tokens_per_chunk + k) as usize % WORDS.len();
                        text.push_str(WORDS[w]);
                        text.push(' ');
                    }
                    text.push_str(TAIL);
                    let _ = a.tx.send(Bytes::copy_from_slice(text.as_bytes()));
                    s.chunks += 1;
                    s.tokens += u64::from(tokens_per_chunk);
                    a.i += 1;
                    schedule(&mut slots, cursor, a);
                } else {
                    let completion = a.total * tokens_per_chunk;
                    let usage = format!(
                        "data: {{\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion.chunk\",\"choices\":[],\"usage\":{{\"prompt_tokens\":20,\"completion_tokens\":{completion},\"total_tokens\":{}}}}}\n\n",
                        completion + 20
                    );
                    let _ = a.tx.send(Bytes::from_static(FINISH.as_bytes()));
                    let _ = a.tx.send(Bytes::from(usage));
                    let _ = a.tx.send(Bytes::from_static(b"data: [DONE]\n\n"));
                    s.finished += 1;
                    s.active -= 1;
                }
            }
        }
    }
}
