//! Local models found by themselves, against a fake Ollama speaking its real shapes, and the
//! gateway and local-server examples of docs/agents.md loaded as written and answering.

use std::{collections::HashMap, time::Duration};

use emergence::settings::{Env, Settings};
use serde_json::{Value, json};

use crate::{
    agents::follow_stream,
    support::{
        TestApp, TestDb,
        fake_llm::FakeLlm,
        fake_ollama::{FakeOllama, OLLAMA_TEXT, tag},
        spawn_app_with, start, test_settings,
    },
};

/// The agents as `GET /api/agents` shows them: id -> (provider, model).
async fn agents(app: &TestApp, token: &str) -> HashMap<String, (String, String)> {
    let list: Value = app
        .get("/api/agents", Some(token))
        .await
        .json()
        .await
        .unwrap();
    list["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            let s = |k: &str| a[k].as_str().unwrap().to_string();
            (s("id"), (s("provider"), s("model")))
        })
        .collect()
}

/// Until `anima` is shown on `provider` / `model` (discovery runs in the background).
async fn wait_for_anima(app: &TestApp, token: &str, provider: &str, model: &str) {
    for _ in 0..100 {
        if agents(app, token).await["anima"] == (provider.to_string(), model.to_string()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "anima never used {provider}/{model}: {:?}",
        agents(app, token).await
    );
}

#[tokio::test]
async fn the_default_personas_answer_with_the_first_local_chat_model_ollama_offers() {
    let (ollama, url) = FakeOllama::start(vec![
        tag("nomic-embed-text:latest", "nomic-bert"),
        tag("llama3.2:latest", "llama"),
        tag("qwen2.5:7b", "qwen2"),
    ])
    .await;
    let app = spawn_app_with(move |s| {
        s.providers.ollama_url = Some(url);
        s.providers.discovery_interval_ms = 200;
    })
    .await;
    let alice = app.register("alice").await;
    // Found at start: the first chat model, not the embedding model listed before it.
    wait_for_anima(&app, &alice.token, "ollama", "llama3.2:latest").await;
    assert_eq!(
        agents(&app, &alice.token).await["neo"],
        ("ollama".into(), "llama3.2:latest".into())
    );
    let thread = app.create_thread(&alice, "local").await;
    let mut ws = app.ws(&alice).await;
    ws.subscribe(&thread, None).await;
    ws.send(json!({"type":"send","thread":thread,"client_id":"q","body":"Are you local?","agent":"anima"}))
        .await;
    let start = ws.recv_type("stream_start").await;
    assert_eq!(
        start["agent"]["model"], "llama3.2:latest",
        "the UI learns the model that answers"
    );
    let stream_id = start["stream_id"].as_str().unwrap().to_string();
    let seen = crate::agents::follow_known(&mut ws, &stream_id, "").await;
    assert_eq!(seen.text, OLLAMA_TEXT.concat());
    assert_eq!(seen.end.unwrap()["message"]["body"], OLLAMA_TEXT.concat());
    let requests = ollama.requests.lock().unwrap().clone();
    let (body, authorized) = &requests[0];
    assert_eq!(body["model"], "llama3.2:latest");
    assert_eq!(body["stream"], true);
    assert!(!authorized, "no key is sent to a local server");
    assert!(body["messages"].to_string().contains("Are you local?"));
    // Probed again: the model is gone, the personas go back to the offline agent.
    ollama.set_models(vec![tag("nomic-embed-text:latest", "nomic-bert")]);
    wait_for_anima(&app, &alice.token, "local", "offline").await;
    // And a new model is found without a restart.
    ollama.set_models(vec![tag("gemma3:4b", "gemma3")]);
    wait_for_anima(&app, &alice.token, "ollama", "gemma3:4b").await;
}

/// Environment for the examples: keys as an operator would give them.
struct ExampleEnv;

impl Env for ExampleEnv {
    fn var(&self, key: &str) -> Option<String> {
        match key {
            "OPENAI_API_KEY" => Some("sk-example-openai".into()),
            "ANTHROPIC_API_KEY" => Some("sk-example-anthropic".into()),
            _ => None,
        }
    }
}

/// The ```toml blocks of docs/agents.md that start with `# example: NAME`.
fn documented_examples() -> Vec<(String, String)> {
    let docs =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/agents.md")).unwrap();
    docs.split("```toml\n")
        .skip(1)
        .filter_map(|block| {
            let block = block.split("```").next()?;
            let name = block.lines().next()?.strip_prefix("# example: ")?;
            Some((name.to_string(), block.to_string()))
        })
        .collect()
}

#[tokio::test]
async fn the_documented_gateway_and_local_server_examples_answer() {
    let examples = documented_examples();
    let names: Vec<&str> = examples.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["litellm", "openrouter", "ollama", "vllm", "llama.cpp"]
    );
    for (name, toml) in examples {
        let (fake, fake_url) = FakeLlm::start().await;
        let (ollama, ollama_url) = FakeOllama::start(vec![tag("llama3.2:latest", "llama")]).await;
        // The example as written, its hosts replaced by the fakes.
        let mut text = toml.clone();
        for host in [
            "http://127.0.0.1:4000",
            "https://openrouter.ai",
            "http://127.0.0.1:8000",
            "http://127.0.0.1:8080",
        ] {
            text = text.replace(host, &fake_url);
        }
        text = text.replace("http://127.0.0.1:11434", &ollama_url);
        let db = TestDb::sqlite();
        let path = db.sqlite_dir().unwrap().join("example.toml");
        std::fs::write(&path, &text).unwrap();
        let loaded =
            Settings::load(Some(path), &ExampleEnv).unwrap_or_else(|e| panic!("{name}: {e:#}"));
        let mut settings = test_settings(&db.url());
        settings.agents = loaded.agents.clone();
        settings.providers = loaded.providers.clone();
        if name != "ollama" {
            // Never probe a real Ollama on the machine running the tests.
            settings.providers.ollama_url = None;
        }
        settings.limits.send_rate_per_sec = 0;
        let app = start(settings, db, true).await;
        let alice = app.register("alice").await;
        let shown = agents(&app, &alice.token).await;
        let thread = app.create_thread(&alice, &name).await;
        let mut ws = app.ws(&alice).await;
        ws.subscribe(&thread, None).await;
        let ids: Vec<String> = loaded.agents.iter().map(|a| a.id.clone()).collect();
        if name == "vllm" {
            // No agent defined: the default personas use the model the server lists.
            wait_for_anima(
                &app,
                &alice.token,
                "openai-compatible",
                "Qwen/Qwen2.5-7B-Instruct",
            )
            .await;
        } else {
            for a in &loaded.agents {
                assert_eq!(
                    shown[&a.id],
                    (a.provider.clone(), a.model.clone()),
                    "{name}: {}",
                    a.id
                );
            }
        }
        for (i, id) in ids.iter().enumerate() {
            ws.send(json!({"type":"send","thread":thread,"client_id":format!("q{i}"),"body":"hi","agent":id}))
                .await;
            let seen = follow_stream(&mut ws).await;
            assert!(seen.end.is_some(), "{name}/{id}: {:?}", seen.error);
            let want = if name == "ollama" {
                OLLAMA_TEXT.concat()
            } else {
                FakeLlm::full_text("ok")
            };
            assert_eq!(seen.text, want, "{name}/{id}");
        }
        let calls = fake.calls.lock().unwrap().clone();
        let paths: Vec<&str> = calls.iter().map(|(p, _)| p.as_str()).collect();
        let auths: Vec<Option<&str>> = calls.iter().map(|(_, a)| a.as_deref()).collect();
        match name.as_str() {
            "litellm" => {
                assert_eq!(paths, ["/v1/chat/completions", "/v1/messages"]);
                assert_eq!(
                    auths,
                    [
                        Some("Bearer sk-example-openai"),
                        Some("sk-example-anthropic")
                    ]
                );
            }
            "openrouter" => {
                assert_eq!(paths, ["/api/v1/chat/completions"]);
                assert_eq!(auths, [Some("Bearer sk-example-openai")]);
            }
            "ollama" => {
                assert!(paths.is_empty());
                assert_eq!(ollama.requests.lock().unwrap()[0].0["model"], "llama3.2");
            }
            "vllm" => {
                // The three default personas, each through the server's listed model.
                assert_eq!(paths, ["/v1/chat/completions"; 3]);
                for body in fake.bodies.lock().unwrap().iter() {
                    assert_eq!(body["model"], "Qwen/Qwen2.5-7B-Instruct");
                }
            }
            "llama.cpp" => assert_eq!(paths, ["/v1/chat/completions"]),
            other => panic!("an example without a check: {other}"),
        }
    }
}
