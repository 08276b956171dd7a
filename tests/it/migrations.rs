//! Migrations through sqlx: a new database gets sqlx's ledger, and a database created by the
//! server's earlier home-made loop (its own `emergence_migrations` ledger) starts with this
//! binary, keeps its data, and has its applied migrations recorded for sqlx, on SQLite and
//! PostgreSQL alike.

use std::str::FromStr;

use serde_json::{Value, json};
use sha2::{Digest, Sha384};
use sqlx::{AssertSqlSafe, Row};

use crate::support::{TestApp, TestDb, spawn_on};

const PASSWORD: &str = "correct horse battery";

/// A plain connection to the test database, beside the server's.
enum Raw {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

impl Raw {
    async fn open(db: &TestDb) -> Raw {
        let url = db.url();
        if url.starts_with("sqlite:") {
            let options = sqlx::sqlite::SqliteConnectOptions::from_str(&url)
                .unwrap()
                .create_if_missing(true);
            Raw::Sqlite(sqlx::SqlitePool::connect_with(options).await.unwrap())
        } else {
            Raw::Postgres(sqlx::PgPool::connect(&url).await.unwrap())
        }
    }

    fn backend(&self) -> &'static str {
        match self {
            Raw::Sqlite(_) => "sqlite",
            Raw::Postgres(_) => "postgres",
        }
    }

    /// The first migration's file, as embedded in the server.
    fn init_sql(&self) -> &'static str {
        match self {
            Raw::Sqlite(_) => include_str!("../../migrations/sqlite/0001_init.sql"),
            Raw::Postgres(_) => include_str!("../../migrations/postgres/0001_init.sql"),
        }
    }

    /// Every migration of this backend's directory, as sqlx records it once applied:
    /// `(version, success, SHA-384 of the file)`, by version.
    fn expected_ledger(&self) -> Vec<(i64, bool, Vec<u8>)> {
        let dir = match self {
            Raw::Sqlite(_) => "sqlite",
            Raw::Postgres(_) => "postgres",
        };
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("migrations")
            .join(dir);
        let mut ledger: Vec<(i64, bool, Vec<u8>)> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "sql"))
            .map(|p| {
                let name = p.file_name().unwrap().to_string_lossy().to_string();
                let version = name.split('_').next().unwrap().parse().unwrap();
                (
                    version,
                    true,
                    Sha384::digest(std::fs::read(&p).unwrap()).to_vec(),
                )
            })
            .collect();
        ledger.sort();
        ledger
    }

    async fn exec(&self, sql: String) {
        let sql = sqlx::raw_sql(AssertSqlSafe(sql));
        match self {
            Raw::Sqlite(p) => sql.execute(p).await.map(|_| ()),
            Raw::Postgres(p) => sql.execute(p).await.map(|_| ()),
        }
        .unwrap();
    }

    /// Whether a table exists.
    async fn has_table(&self, name: &str) -> bool {
        match self {
            Raw::Sqlite(p) => {
                sqlx::query("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = $1")
                    .bind(name)
                    .fetch_one(p)
                    .await
                    .unwrap()
                    .get::<i64, _>(0)
                    > 0
            }
            Raw::Postgres(p) => sqlx::query("SELECT to_regclass($1) IS NOT NULL")
                .bind(name)
                .fetch_one(p)
                .await
                .unwrap()
                .get::<bool, _>(0),
        }
    }

    /// sqlx's ledger: (version, success, checksum).
    /// The ledger as it must be: migration 1 with `first`'s checksum, then every later file of
    /// `migrations/<backend>/` applied once, in order.
    async fn assert_ledger(&self, first: &[u8], what: &str) {
        let ledger = self.sqlx_ledger().await;
        assert_eq!(
            ledger.first(),
            Some(&(1, true, first.to_vec())),
            "{}: {what}",
            self.backend()
        );
        assert_eq!(
            ledger,
            self.expected_ledger(),
            "{}: every later migration applied once, with its file's checksum",
            self.backend()
        );
    }

    async fn sqlx_ledger(&self) -> Vec<(i64, bool, Vec<u8>)> {
        let sql = "SELECT version, success, checksum FROM _sqlx_migrations ORDER BY version";
        match self {
            Raw::Sqlite(p) => sqlx::query(sql)
                .fetch_all(p)
                .await
                .unwrap()
                .iter()
                .map(|r| (r.get(0), r.get(1), r.get(2)))
                .collect(),
            Raw::Postgres(p) => sqlx::query(sql)
                .fetch_all(p)
                .await
                .unwrap()
                .iter()
                .map(|r| (r.get(0), r.get(1), r.get(2)))
                .collect(),
        }
    }

    async fn close(self) {
        match self {
            Raw::Sqlite(p) => p.close().await,
            Raw::Postgres(p) => p.close().await,
        }
    }
}

/// Create the schema the way the server did before sqlx ran its migrations: its own ledger
/// table, then each migration and its ledger row in one transaction.
async fn migrate_the_old_way(raw: &Raw) {
    raw.exec(
        "CREATE TABLE IF NOT EXISTS emergence_migrations \
         (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)"
            .into(),
    )
    .await;
    raw.exec(format!(
        "BEGIN; {} INSERT INTO emergence_migrations (version, applied_at) VALUES (1, {}); COMMIT;",
        raw.init_sql(),
        emergence::db::now_ms()
    ))
    .await;
}

/// A user `alice` (password [`PASSWORD`]) with a thread holding two messages.
async fn seed(raw: &Raw) {
    let hash = emergence::auth::password::Hasher::new(1)
        .hash(PASSWORD.into())
        .await
        .unwrap();
    assert!(
        hash.chars()
            .all(|c| c.is_ascii_alphanumeric() || "$=+/,-".contains(c)),
        "safe to inline"
    );
    raw.exec(format!(
        "INSERT INTO users (id, username, username_key, password_hash, created_at) \
         VALUES ('u-alice', 'Alice', 'alice', '{hash}', 1);
         INSERT INTO threads (id, title, owner_id, agents, created_at, last_seq, last_activity) \
         VALUES ('t-old', 'from before', 'u-alice', '[]', 2, 2, 3);
         INSERT INTO thread_members (thread_id, user_id, added_at) VALUES ('t-old', 'u-alice', 2);
         INSERT INTO messages (id, thread_id, seq, client_id, author_kind, author_id, author_name, \
         body, created_at) VALUES \
         ('m1', 't-old', 1, 'c1', 'user', 'u-alice', 'Alice', 'first', 2), \
         ('m2', 't-old', 2, 'c2', 'user', 'u-alice', 'Alice', 'second', 3);"
    ))
    .await;
}

async fn login(app: &TestApp) -> String {
    let r = app
        .post(
            "/api/auth/login",
            None,
            json!({"username": "alice", "password": PASSWORD}),
        )
        .await;
    assert_eq!(r.status(), 200, "the old account still logs in");
    let v: Value = r.json().await.unwrap();
    // The oldest account of a database from before roles is its admin, and active.
    assert_eq!(v["user"]["role"], "admin", "{v}");
    assert_eq!(v["user"]["status"], "active", "{v}");
    v["token"].as_str().unwrap().to_string()
}

async fn bodies(app: &TestApp, token: &str) -> Vec<(i64, String)> {
    let r = app
        .get("/api/threads/t-old/messages?after_seq=0", Some(token))
        .await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    v["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let body = m["body"].as_str().unwrap().to_string();
            (m["seq"].as_i64().unwrap(), body)
        })
        .collect()
}

async fn the_old_ledger_is_adopted(db: TestDb) {
    let raw = Raw::open(&db).await;
    migrate_the_old_way(&raw).await;
    seed(&raw).await;

    let mut app = spawn_on(db, |_| {}).await;
    let token = login(&app).await;
    assert_eq!(
        bodies(&app, &token).await,
        vec![(1, "first".to_string()), (2, "second".to_string())],
        "the data is kept"
    );
    let r = app
        .post(
            "/api/threads/t-old/messages",
            Some(&token),
            json!({"client_id": "c3", "body": "after the upgrade"}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["seq"], 3, "the sequence goes on");

    let checksum = Sha384::digest(raw.init_sql()).to_vec();
    raw.assert_ledger(
        &checksum,
        "migration 1 recorded for sqlx with its file's checksum, not applied again",
    )
    .await;
    assert!(raw.has_table("emergence_migrations").await, "left in place");

    // A second start on the upgraded database changes nothing.
    app.stop().await;
    let app = spawn_on(app.take_db(), |_| {}).await;
    let token = login(&app).await;
    assert_eq!(bodies(&app, &token).await.len(), 3);
    raw.assert_ledger(&checksum, "unchanged by a second start")
        .await;
    raw.close().await;
}

async fn a_new_database_gets_the_sqlx_ledger(db: TestDb) {
    let raw = Raw::open(&db).await;
    let app = spawn_on(db, |_| {}).await;
    let checksum = Sha384::digest(raw.init_sql()).to_vec();
    raw.assert_ledger(&checksum, "a new database").await;
    assert!(!raw.has_table("emergence_migrations").await);
    app.register("bob").await;
    raw.close().await;
}

#[tokio::test]
async fn a_sqlite_database_migrated_by_the_old_loop_upgrades_in_place_and_keeps_its_data() {
    the_old_ledger_is_adopted(TestDb::sqlite()).await;
}

#[tokio::test]
async fn a_postgres_database_migrated_by_the_old_loop_upgrades_in_place_and_keeps_its_data() {
    the_old_ledger_is_adopted(TestDb::postgres().await).await;
}

#[tokio::test]
async fn a_new_sqlite_database_is_migrated_by_sqlx() {
    a_new_database_gets_the_sqlx_ledger(TestDb::sqlite()).await;
}

#[tokio::test]
async fn a_new_postgres_database_is_migrated_by_sqlx() {
    a_new_database_gets_the_sqlx_ledger(TestDb::postgres().await).await;
}
