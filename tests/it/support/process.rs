//! The real `emergence` binary as a child process (for SIGKILL, SIGTERM and RSS/fd
//! measurements), with load-test limits off and a free loopback port.

use std::{
    process::{Child, Command, Stdio},
    time::Duration,
};

/// A free port on 127.0.0.1 (bound and released; the server binds it next).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The binary built with these tests.
pub const BUILT: &str = env!("CARGO_BIN_EXE_emergence");

/// Start `bin` serving on `port`, with the per-user and per-IP limits off and `env` on top. Its
/// stderr is shown when `show_logs`.
pub fn spawn_server(bin: &str, port: u16, env: &[(&str, &str)], show_logs: bool) -> Child {
    let mut cmd = Command::new(bin);
    cmd.arg("serve")
        .env("PORT", port.to_string())
        .env("EMERGENCE_HOST", "127.0.0.1")
        .env("EMERGENCE_SEND_RATE_PER_SEC", "0")
        .env("EMERGENCE_AUTH_RATE_PER_MIN", "0")
        .env("EMERGENCE_REGISTRATION", "open")
        .env("EMERGENCE_WS_CONNECT_RATE_PER_MIN", "0")
        .env("EMERGENCE_THREAD_RATE_PER_MIN", "0")
        .env("EMERGENCE_MEMBER_RATE_PER_MIN", "0")
        .env("EMERGENCE_WS_PER_USER", "0")
        .env("EMERGENCE_WS_PER_IP", "0")
        .env("EMERGENCE_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(if show_logs {
            Stdio::inherit()
        } else {
            Stdio::null()
        });
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().expect("the emergence binary starts")
}

/// Until `/readyz` says `"ready"` (listening and database up).
pub async fn wait_ready(port: u16) {
    let http = reqwest::Client::new();
    for _ in 0..400 {
        if let Ok(r) = http
            .get(format!("http://127.0.0.1:{port}/readyz"))
            .send()
            .await
            && r.status() == 200
            && r.text().await.unwrap_or_default().contains("\"ready\"")
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("instance on {port} never became ready");
}

/// Whatever happens in the test, the process does not outlive it.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The built binary serving its own fresh SQLite database on a free port, ready. Dropping it
/// kills the process, then removes the database.
pub struct RealServer {
    pub port: u16,
    pub process: KillOnDrop,
    _db: super::TestDb,
}

impl RealServer {
    pub fn pid(&self) -> u32 {
        self.process.0.id()
    }
}

/// Start the built binary (limits off, see [`spawn_server`]) on a fresh SQLite database.
pub async fn spawn_ready_on_sqlite() -> RealServer {
    let db = super::TestDb::sqlite();
    let port = free_port();
    let process = KillOnDrop(spawn_server(
        BUILT,
        port,
        &[("DATABASE_URL", &db.url())],
        false,
    ));
    wait_ready(port).await;
    RealServer {
        port,
        process,
        _db: db,
    }
}

/// Register `username` (password "correct horse battery") on the server at `base`; its token.
pub async fn register(http: &reqwest::Client, base: &str, username: &str) -> String {
    let user: serde_json::Value = http
        .post(format!("{base}/api/auth/register"))
        .json(&serde_json::json!({"username": username, "password": "correct horse battery"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    user["token"].as_str().expect("registered").to_string()
}

/// Create a thread (`body`: the request, e.g. `{"title": …}`) as the holder of `token`; its id.
pub async fn create_thread(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    body: serde_json::Value,
) -> String {
    let thread: serde_json::Value = http
        .post(format!("{base}/api/threads"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    thread["id"].as_str().expect("created").to_string()
}
