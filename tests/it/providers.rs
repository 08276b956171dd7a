//! Agents against what real providers and gateways send, in each of the three wire formats:
//! non-streamed JSON, role-only and empty first chunks, usage in every placement, keep-alives,
//! error events mid-stream, 429s without `Retry-After`, and a gateway that takes 5 s to answer
//! each failed try. The real binary runs with its default retry settings and its JSON log in a
//! file: each case asserts what the user sees and the one log line operators get.

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::{Value, json};

use crate::support::{
    TestDb, WsClient,
    fake_llm::FakeLlm,
    process::{BUILT, KillOnDrop, create_thread, free_port, register, wait_ready},
};

const WIRES: [(&str, &str); 3] = [("o", "openai"), ("a", "anthropic"), ("g", "gemini")];

/// Models that answer the full text with usage 25 prompt / 5 completion tokens.
const ANSWERING: [&str; 7] = [
    "ok",
    "json",
    "role-first",
    "empty-choices",
    "usage-with-choices",
    "ping",
    "usage-delta",
];

/// Failing models: the class users see and whether retries happen (they are fast here).
const FAILING: [(&str, &str, &str); 8] = [
    ("error-event", "provider_error", "unavailable"),
    ("ratelimit", "rate_limited", "rate_limited"),
    ("fail-500", "provider_error", "unavailable"),
    ("missing", "provider_error", "model_not_found"),
    ("html", "provider_error", "bad_response"),
    ("filtered", "provider_error", "content_filter"),
    ("disconnect", "provider_error", "connection_lost"),
    ("hang", "timeout", "timed_out"),
];

/// The server's settings file: every wire × model as an agent `{w}-{model}`, with `extra`
/// provider settings.
fn config(url: &str, models: &[&str], extra: &str) -> String {
    let mut toml = format!(
        "[providers]\n{extra}openai_base_url = \"{url}/v1\"\nopenai_api_key = \"sk-test-openai-secret\"\n\
         anthropic_base_url = \"{url}\"\nanthropic_api_key = \"sk-ant-test-secret\"\n\
         gemini_base_url = \"{url}\"\ngemini_api_key = \"gemini-test-secret\"\nollama_url = \"\"\n"
    );
    for (w, provider) in WIRES {
        for m in models {
            toml.push_str(&format!(
                "\n[[agent]]\nid = \"{w}-{m}\"\nname = \"{w}-{m}\"\nprovider = \"{provider}\"\nmodel = \"{m}\"\n"
            ));
        }
    }
    toml
}

/// The built binary on its own SQLite database, settings from `toml`, JSON log into a file.
struct Server {
    port: u16,
    log: PathBuf,
    db: TestDb,
    _process: KillOnDrop,
}

async fn serve(toml: &str) -> Server {
    let db = TestDb::sqlite();
    let dir = db.sqlite_dir().unwrap().clone();
    let config = dir.join("emergence.toml");
    std::fs::write(&config, toml).unwrap();
    let log = dir.join("server.log");
    let port = free_port();
    let process = KillOnDrop(
        Command::new(BUILT)
            .arg("serve")
            .env("PORT", port.to_string())
            .env("EMERGENCE_HOST", "127.0.0.1")
            .env("DATABASE_URL", db.url())
            .env("EMERGENCE_REGISTRATION", "open")
            .env("EMERGENCE_CONFIG", &config)
            .env("EMERGENCE_SEND_RATE_PER_SEC", "0")
            .env("EMERGENCE_AUTH_RATE_PER_MIN", "0")
            .env("EMERGENCE_LOG", "info")
            .env("EMERGENCE_LOG_FORMAT", "json")
            .env_remove("OPENAI_API_KEY")
            .env_remove("ANTHROPIC_API_KEY")
            .env_remove("GEMINI_API_KEY")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("the emergence binary starts"),
    );
    wait_ready(port).await;
    Server {
        port,
        log,
        db,
        _process: process,
    }
}

/// The server's JSON log lines about stream `stream_id`.
fn log_lines(path: &Path, stream_id: &str) -> Vec<Value> {
    BufReader::new(std::fs::File::open(path).unwrap())
        .lines()
        .map_while(Result::ok)
        .filter_map(|l| serde_json::from_str::<Value>(&l).ok())
        .filter(|v| v["stream_id"] == stream_id)
        .collect()
}

/// What one client saw of one stream.
#[derive(Debug, Default)]
struct Seen {
    stream_id: String,
    model: Value,
    text: String,
    end: Option<Value>,
    error: Option<Value>,
    retries: Vec<Value>,
    elapsed: Duration,
}

/// Ask `agent` and follow its stream to the end.
async fn ask(ws: &mut WsClient, thread: &str, agent: &str) -> Seen {
    let started = Instant::now();
    ws.send(json!({"type":"send","thread":thread,"client_id":format!("q-{agent}"),"body":"hello","agent":agent}))
        .await;
    let mut seen = Seen::default();
    loop {
        let f = ws
            .recv_within(Duration::from_secs(30))
            .await
            .expect("stream frames keep coming");
        let mine = f["stream_id"] == seen.stream_id.as_str();
        match f["type"].as_str().unwrap() {
            "stream_start" if seen.stream_id.is_empty() && f["agent"]["id"] == agent => {
                seen.stream_id = f["stream_id"].as_str().unwrap().into();
                seen.model = f["agent"]["model"].clone();
            }
            "stream_chunk" if mine => seen.text.push_str(f["delta"].as_str().unwrap()),
            "stream_retry" if mine => seen.retries.push(f),
            "stream_end" if mine => {
                seen.end = Some(f);
                break;
            }
            "stream_error" if mine => {
                seen.error = Some(f);
                break;
            }
            _ => {}
        }
    }
    seen.elapsed = started.elapsed();
    seen
}

/// The prompt and completion tokens stored with an answer.
async fn usage(db: &TestDb, stream_id: &str) -> (Option<i64>, Option<i64>) {
    let pool = sqlx::SqlitePool::connect(&db.url()).await.unwrap();
    let row: (Option<i64>, Option<i64>) =
        sqlx::query_as("SELECT prompt_tokens, completion_tokens FROM messages WHERE client_id = ?")
            .bind(format!("agent-{stream_id}"))
            .fetch_one(&pool)
            .await
            .unwrap();
    pool.close().await;
    row
}

/// The one `provider call failed` line of a stream, with the fields operators need.
fn failure_line(server: &Server, seen: &Seen) -> Value {
    let lines = log_lines(&server.log, &seen.stream_id);
    let failed: Vec<&Value> = lines
        .iter()
        .filter(|l| l["message"] == "provider call failed")
        .collect();
    assert_eq!(failed.len(), 1, "one line per failed call: {lines:?}");
    let line = failed[0].clone();
    for field in [
        "agent",
        "provider",
        "model",
        "phase",
        "retries",
        "elapsed_ms",
        "error_class",
    ] {
        assert!(!line[field].is_null(), "{field} in {line}");
    }
    let text = line.to_string();
    for secret in [
        "sk-test-openai-secret",
        "sk-ant-test-secret",
        "gemini-test-secret",
        "hello",
    ] {
        assert!(
            !text.contains(secret),
            "never the key nor the prompt: {text}"
        );
    }
    line
}

/// What users read never carries upstream text.
fn assert_clean(error: &Value) {
    let text = error.to_string();
    for leak in [
        "litellm",
        "0x7f",
        "10.1.2.3",
        "http://",
        "Traceback",
        "object at",
        "127.0.0.1",
    ] {
        assert!(!text.contains(leak), "{leak} reached the user: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_wire_format_survives_what_gateways_send_and_each_failure_logs_one_line() {
    let (_fake, url) = FakeLlm::start().await;
    let failing: Vec<&str> = FAILING.iter().map(|(m, _, _)| *m).collect();
    let models: Vec<&str> = ANSWERING
        .iter()
        .copied()
        .chain(["json-array"])
        .chain(failing)
        .collect();
    // A hung provider is given up after 1.5 s instead of 30 s; retries keep their defaults.
    let extra = "first_token_timeout_ms = 1500\nidle_timeout_ms = 1500\n";
    let server = serve(&config(&url, &models, extra)).await;
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{}", server.port);
    let token = register(&http, &base, "alice").await;
    let thread = create_thread(&http, &base, &token, json!({"title": "gateways"})).await;
    let mut ws = WsClient::connect(&format!("ws://127.0.0.1:{}/ws?token={token}", server.port))
        .await
        .unwrap();
    ws.subscribe(&thread, None).await;

    for (w, _) in WIRES {
        let answering = ANSWERING
            .iter()
            .copied()
            .chain((w == "g").then_some("json-array"));
        for m in answering {
            let agent = format!("{w}-{m}");
            let seen = ask(&mut ws, &thread, &agent).await;
            assert!(seen.error.is_none(), "{agent}: {:?}", seen.error);
            assert_eq!(seen.text, FakeLlm::full_text("ok"), "{agent}");
            assert_eq!(seen.model, m, "{agent}: the model that really answers");
            let end = seen.end.as_ref().unwrap();
            assert_eq!(end["message"]["body"], seen.text, "{agent}");
            assert_eq!(
                usage(&server.db, &seen.stream_id).await,
                (Some(25), Some(5)),
                "{agent}: usage read from where this format puts it"
            );
        }
        for (m, code, class) in FAILING {
            let agent = format!("{w}-{m}");
            let seen = ask(&mut ws, &thread, &agent).await;
            let error = seen
                .error
                .as_ref()
                .unwrap_or_else(|| panic!("{agent} ends in stream_error"));
            assert_eq!(
                (error["code"].as_str(), error["error_class"].as_str()),
                (Some(code), Some(class)),
                "{agent}: {error}"
            );
            assert_clean(error);
            let line = failure_line(&server, &seen);
            assert_eq!(line["agent"], agent.as_str());
            assert_eq!(line["model"], m);
            assert_eq!(line["error_class"], class);
            let retried = matches!(m, "ratelimit" | "fail-500");
            assert_eq!(
                line["retries"],
                if retried { 2 } else { 0 },
                "{agent}: 2 retries for 429 and 5xx, none for other 4xx: {line}"
            );
            assert_eq!(seen.retries.len(), if retried { 2 } else { 0 }, "{agent}");
            for (i, r) in seen.retries.iter().enumerate() {
                assert_eq!(r["attempt"], i + 1);
                assert_eq!(r["error_class"], class);
                assert!(r["retry_in_ms"].as_u64().unwrap() > 0);
            }
            match m {
                "error-event" | "disconnect" => {
                    assert_eq!(line["phase"], "mid_stream");
                    assert_eq!(seen.text, "Hello from", "the partial text stays");
                }
                "hang" => assert_eq!(line["phase"], "first_token"),
                "html" => assert_eq!(
                    (line["phase"].as_str(), line["status"].as_u64()),
                    (Some("connect"), Some(200))
                ),
                "fail-500" => {
                    assert_eq!(line["status"], 500);
                    assert!(
                        line["detail"]
                            .as_str()
                            .unwrap()
                            .contains("InternalServerError"),
                        "operators get the detail: {line}"
                    );
                }
                "ratelimit" => assert_eq!(line["status"], 429),
                "filtered" => assert_eq!(line["phase"], "first_token"),
                "missing" => assert_eq!(line["status"], 404),
                _ => {}
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_gateways_429_reaches_the_user_as_rate_limited_within_10_s_and_its_500_without_upstream_text()
 {
    let (fake, url) = FakeLlm::start().await;
    let server = serve(&config(&url, &["slow-gateway-429", "slow-gateway-500"], "")).await;
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{}", server.port);
    let mut tasks = Vec::new();
    for (w, _) in WIRES {
        for m in ["slow-gateway-429", "slow-gateway-500"] {
            // One user per question: at most three answers run at once per user.
            let token = register(&http, &base, &format!("u-{w}-{}", &m[13..])).await;
            let thread = create_thread(&http, &base, &token, json!({"title": "slow"})).await;
            let port = server.port;
            tasks.push(tokio::spawn(async move {
                let mut ws = WsClient::connect(&format!("ws://127.0.0.1:{port}/ws?token={token}"))
                    .await
                    .unwrap();
                ws.subscribe(&thread, None).await;
                (
                    format!("{w}-{m}"),
                    ask(&mut ws, &thread, &format!("{w}-{m}")).await,
                )
            }));
        }
    }
    for t in tasks {
        let (agent, seen) = t.await.unwrap();
        let error = seen
            .error
            .as_ref()
            .unwrap_or_else(|| panic!("{agent} fails"));
        assert!(
            seen.elapsed < Duration::from_secs(10),
            "{agent}: {:?}",
            seen.elapsed
        );
        assert_clean(error);
        let line = failure_line(&server, &seen);
        if agent.ends_with("429") {
            assert_eq!(error["code"], "rate_limited", "{agent}: {error}");
            assert_eq!(line["status"], 429);
        } else {
            assert_eq!(error["code"], "provider_error", "{agent}: {error}");
            assert_eq!(
                error["message"],
                "The model's provider is unavailable right now."
            );
            assert_eq!(line["status"], 500);
        }
        assert_eq!(
            line["retries"], 0,
            "no retry fits in the budget after a 5 s try: {line}"
        );
        assert!(line["elapsed_ms"].as_u64().unwrap() >= 5000, "{line}");
        eprintln!(
            "slow gateway {agent}: {} after {:?}",
            error["code"], seen.elapsed
        );
    }
    assert_eq!(fake.count("slow-gateway-429"), 3, "one try per wire");
}
