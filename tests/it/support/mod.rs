//! Test support: `spawn_app()` starts the real server (via `Application::build`) on port 0 with
//! its own database — a temporary SQLite file, or a fresh PostgreSQL database that is dropped
//! afterwards — and returns a `TestApp` with typed helpers.
#![allow(dead_code)]

pub mod accounts;
pub mod cluster;
pub mod documents;
pub mod embedder;
pub mod fake_llm;
pub mod fake_ollama;
pub mod fault_proxy;
pub mod heavy;
pub mod oidc;
pub mod pgbouncer;
pub mod process;
pub mod prometheus;
pub mod s3;
pub mod scrape;
pub mod ws;

use std::{path::PathBuf, time::Duration};

use emergence::{Application, Settings, startup::ShutdownHandle, state::AppState};
use emergence_client::{
    contract::{
        ServerFrame,
        http::{NewAccount, NewMember, NewThread},
    },
    reqwest::Method,
};
use serde_json::Value;

pub use heavy::heavy;
pub use ws::WsClient;

pub const PG_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// A running server and what it needs.
pub struct TestApp {
    pub address: String,
    pub port: u16,
    pub state: AppState,
    pub http: reqwest::Client,
    /// The typed client (`crates/client`) over `http`: every helper below goes through it.
    pub client: emergence_client::Client,
    pub database_url: String,
    shutdown: ShutdownHandle,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    _db: TestDb,
}

/// A test's own database, removed when dropped.
pub enum TestDb {
    Sqlite(PathBuf),
    Postgres(String),
    /// Owned by someone else (another instance of a cluster test).
    Shared(String),
}

impl TestDb {
    pub fn sqlite() -> TestDb {
        let dir = std::env::temp_dir().join(format!("emergence-test-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        TestDb::Sqlite(dir)
    }

    pub async fn postgres() -> TestDb {
        let name = format!("emergence_t_{}", uuid::Uuid::new_v4().simple());
        let client = connect_admin().await;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&client)
            .await
            .unwrap();
        client.close().await;
        TestDb::Postgres(name)
    }

    pub fn url(&self) -> String {
        match self {
            TestDb::Sqlite(dir) => format!("sqlite://{}/emergence.db", dir.display()),
            TestDb::Postgres(name) => format!("postgres://postgres@127.0.0.1:5432/{name}"),
            TestDb::Shared(url) => url.clone(),
        }
    }

    /// For fault-injection tests: the same database reached through `proxy_port`.
    pub fn url_via(&self, proxy_port: u16) -> String {
        match self {
            TestDb::Postgres(name) => format!("postgres://postgres@127.0.0.1:{proxy_port}/{name}"),
            TestDb::Sqlite(_) | TestDb::Shared(_) => self.url(),
        }
    }

    /// The PostgreSQL database's name.
    pub fn pg_name(&self) -> Option<&str> {
        match self {
            TestDb::Postgres(name) => Some(name),
            _ => None,
        }
    }

    pub fn sqlite_dir(&self) -> Option<&PathBuf> {
        match self {
            TestDb::Sqlite(d) => Some(d),
            _ => None,
        }
    }
}

async fn connect_admin() -> sqlx::PgPool {
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(PG_ADMIN_URL)
        .await
        .expect("PostgreSQL at 127.0.0.1:5432 (trust auth) is needed for these tests")
}

impl Drop for TestDb {
    fn drop(&mut self) {
        match self {
            TestDb::Shared(_) => {}
            TestDb::Sqlite(dir) => {
                let _ = std::fs::remove_dir_all(dir);
            }
            TestDb::Postgres(name) => {
                let name = name.clone();
                // Drop runs outside async: use a small runtime on a thread of its own.
                let _ = std::thread::spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .unwrap();
                    rt.block_on(async {
                        if let Ok(pool) = sqlx::PgPool::connect(PG_ADMIN_URL).await {
                            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                            )))
                            .execute(&pool)
                            .await;
                            pool.close().await;
                        }
                    });
                })
                .join();
            }
        }
    }
}

/// Settings for tests: port 0, loopback, quiet logs, limits as in production unless changed.
pub fn test_settings(database_url: &str) -> Settings {
    let mut s = Settings::default();
    s.server.host = "127.0.0.1".into();
    s.server.port = 0;
    s.server.shutdown_deadline_ms = 5_000;
    s.database.url = emergence::settings::Secret::new(database_url);
    s.log.level = std::env::var("TEST_LOG").unwrap_or_else(|_| "off".into());
    // Tests register users freely (the contract's "test tools run with open").
    s.auth.registration = emergence::db::accounts::Registration::Open;
    // Never probe a real Ollama on the machine running the tests.
    s.providers.ollama_url = None;
    s
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(configure: impl FnOnce(&mut Settings)) -> TestApp {
    spawn_on(TestDb::sqlite(), configure).await
}

pub async fn spawn_pg_app_with(configure: impl FnOnce(&mut Settings)) -> TestApp {
    spawn_on(TestDb::postgres().await, configure).await
}

pub async fn spawn_on(db: TestDb, configure: impl FnOnce(&mut Settings)) -> TestApp {
    let url = db.url();
    let mut settings = test_settings(&url);
    configure(&mut settings);
    start(settings, db, true).await
}

/// Start with explicit settings; `wait_db` waits until the database is up, otherwise until the
/// first connection attempt has ended.
pub async fn start(settings: Settings, db: TestDb, wait_db: bool) -> TestApp {
    init_logs();
    let database_url = settings.database.url.expose().to_string();
    let app = Application::build(settings).await.expect("app builds");
    let port = app.port();
    let state = app.state().clone();
    let shutdown = app.shutdown_handle();
    let task = tokio::spawn(app.run_until_stopped());
    if !wait_db {
        // Past `starting`: the first connection attempt has ended, so `/readyz` tells the
        // database's real state (tests of a down database read `degraded` there).
        for _ in 0..400 {
            if state.db.first_attempt_ended() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    } else {
        assert!(
            state.db.wait_up(Duration::from_secs(20)).await,
            "database did not come up"
        );
        for _ in 0..200 {
            if state.auth.has_key() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    // Pooled connections idle for less than the server's keep-alive limit (it closes an idle
    // connection after `server.header_read_timeout_ms`, 5 s): reusing one the server is closing
    // at that instant loses the request (docs/protocol.md, "Connections").
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_idle_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let address = format!("http://127.0.0.1:{port}");
    let client = emergence_client::Client::with_http(address.parse().unwrap(), http.clone());
    TestApp {
        address,
        port,
        state,
        http,
        client,
        database_url,
        shutdown,
        task: Some(task),
        _db: db,
    }
}

fn init_logs() {
    if let Ok(level) = std::env::var("TEST_LOG") {
        let s = emergence::settings::LogSettings {
            level,
            format: "pretty".into(),
        };
        emergence::telemetry::init(&s);
    }
}

/// A registered user.
#[derive(Debug, Clone)]
pub struct TestUser {
    pub id: String,
    pub username: String,
    pub token: String,
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub fn ws_url(&self) -> String {
        format!("ws://127.0.0.1:{}/ws", self.port)
    }

    pub fn db(&self) -> &TestDb {
        &self._db
    }

    /// Drain and stop the server (as SIGTERM does); waits for it to finish.
    pub async fn stop(&mut self) {
        self.shutdown.shutdown();
        if let Some(t) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(15), t).await;
        }
    }

    pub fn trigger_shutdown(&self) {
        self.shutdown.shutdown();
    }

    pub async fn wait_stopped(&mut self) {
        if let Some(t) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(15), t).await;
        }
    }

    /// Hand the database to another app (restart tests).
    pub fn take_db(&mut self) -> TestDb {
        std::mem::replace(
            &mut self._db,
            TestDb::Sqlite(
                std::env::temp_dir().join(format!("emergence-none-{}", uuid::Uuid::new_v4())),
            ),
        )
    }

    /// The typed client, signed in as `token` when given.
    pub fn client_as(&self, token: Option<&str>) -> emergence_client::Client {
        match token {
            Some(t) => self.client.with_token(t),
            None => self.client.clone(),
        }
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> reqwest::Response {
        self.client_as(token)
            .request(Method::POST, path)
            .json(&body)
            .send()
            .await
            .expect("request")
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> reqwest::Response {
        self.client_as(token)
            .request(Method::GET, path)
            .send()
            .await
            .expect("request")
    }

    pub async fn register(&self, username: &str) -> TestUser {
        let account = NewAccount {
            username: username.into(),
            password: accounts::PASSWORD.into(),
            invite: None,
        };
        let session = self
            .client
            .register(&account)
            .await
            .unwrap_or_else(|e| panic!("register {username}: {e}"));
        TestUser {
            id: session.user.id,
            username: username.into(),
            token: session.token,
        }
    }

    pub async fn create_thread(&self, user: &TestUser, title: &str) -> String {
        let thread = NewThread {
            title: title.into(),
            agents: None,
        };
        let created = self
            .client_as(Some(&user.token))
            .create_thread(&thread)
            .await;
        created.expect("create thread").id
    }

    pub async fn add_member(&self, owner: &TestUser, thread: &str, username: &str) {
        let member = NewMember {
            username: username.into(),
        };
        self.client_as(Some(&owner.token))
            .add_member(thread, &member)
            .await
            .expect("add member");
    }

    pub async fn messages(&self, user: &TestUser, thread: &str, query: &str) -> Vec<Value> {
        let r = self
            .get(
                &format!("/api/threads/{thread}/messages{query}"),
                Some(&user.token),
            )
            .await;
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        v["messages"].as_array().unwrap().clone()
    }

    /// An authenticated WebSocket that has received its `welcome`.
    pub async fn ws(&self, user: &TestUser) -> WsClient {
        let mut ws = WsClient::connect(&format!("{}?token={}", self.ws_url(), user.token))
            .await
            .expect("ws connects");
        let welcome = ws.recv_frame(ws::WAIT).await.expect("welcome");
        assert!(
            matches!(welcome, ServerFrame::Welcome { .. }),
            "{welcome:?}"
        );
        ws
    }

    /// A metric's value: the sum of the samples whose `name{labels}` starts with `prefix` (a
    /// name sums every label set, `name{labels}` one of them).
    pub async fn metric(&self, prefix: &str) -> f64 {
        scrape::Scrape::of(self).await.sum_prefixed(prefix)
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.shutdown();
    }
}
