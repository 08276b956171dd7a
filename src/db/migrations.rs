//! Schema migrations, one directory per backend (`migrations/sqlite`, `migrations/postgres`),
//! embedded by `sqlx::migrate!` and applied by sqlx's migrator at start-up (and by
//! `emergence migrate`). sqlx keeps its ledger in `_sqlx_migrations` (version, checksum) and,
//! on PostgreSQL, holds an advisory lock so that instances starting together migrate once.
//!
//! Adding a migration: create `migrations/<backend>/NNNN_what_it_does.sql` for both backends
//! with the next number (`0002_...`); nothing else. `build.rs` makes cargo notice the new file.
//! A file once released is never edited: sqlx refuses to start on a database whose applied
//! migration's checksum differs from the file's.
//!
//! A new SQLite database (nothing in it yet) is not migrated step by step: it gets the schema
//! the migrations end with, `migrations/sqlite-fresh.sql`, and every migration is recorded as
//! applied, in one transaction. Each `ALTER TABLE` makes SQLite parse its whole schema again;
//! step by step that was most of a cold start (docs/performance.md, (4)). The file is generated
//! from the migrations (`UPDATE_SQLITE_SCHEMA=1 cargo test --lib fresh_schema`) and a test
//! checks that both ways give the same database; a file behind the newest migration is not used.
//!
//! A new SQLite *file* is not even made by running that schema: it is written from a template,
//! `migrations/sqlite-fresh.db`, the database the fresh schema and its ledger make, in WAL mode
//! (generated with the schema, and checked by the same test). SQLite's parsing of the schema's
//! statements and the file's creation were most of what remained of a cold start.
//!
//! Databases created before sqlx ran the migrations kept their own ledger,
//! `emergence_migrations (version, applied_at)`. It is read on every start: its versions are
//! recorded in `_sqlx_migrations` (with the embedded files' checksums) before the migrator runs,
//! so such a database upgrades in place. The old table is left as it is (an older binary can
//! still start on the database).

use std::{io::Write, path::Path};

use sqlx::{
    Row,
    migrate::{Migrate, MigrateError, Migrator},
};

use super::StoreError;

static SQLITE: Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES: Migrator = sqlx::migrate!("migrations/postgres");

/// The newest version in the ledger the server kept before sqlx ran its migrations (the same
/// query on both engines, run once the table is known to exist).
const LEGACY_VERSION: &str = "SELECT max(version) FROM emergence_migrations";

pub async fn run_sqlite(pool: &sqlx::SqlitePool) -> Result<(), StoreError> {
    // One connection for every step: a connection handed back goes back to the pool
    // asynchronously, so each step's own checkout would often open a new connection (a thread,
    // and SQLite parsing the whole schema again) on a cold start's path to readiness.
    let mut conn = pool.acquire().await?;
    if fresh_sqlite(&mut conn).await? {
        return Ok(());
    }
    let legacy: i64 = sqlx::query(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'emergence_migrations'",
    )
    .fetch_one(&mut *conn)
    .await?
    .try_get(0)?;
    if legacy > 0 {
        let version = sqlx::query(LEGACY_VERSION)
            .fetch_one(&mut *conn)
            .await?
            .try_get(0)?;
        if let Some(version) = adoptable(&SQLITE, version)? {
            SQLITE
                .run_direct(Some(version), &mut *conn, true)
                .await
                .map_err(migrate_error)?;
        }
    }
    // `run`/`skip` on the connection itself, as sqlx offers it for a borrowed connection
    // (`run(&mut *conn)` is refused in a `Send` future: "`Acquire` is not general enough").
    SQLITE
        .run_direct(None, &mut *conn, false)
        .await
        .map_err(migrate_error)
}

/// The schema the SQLite migrations end with (generated: see the module's comment).
const SQLITE_FRESH: &str = include_str!("../../migrations/sqlite-fresh.sql");

/// The newest migration `SQLITE_FRESH` includes, from its `-- version: N` line.
fn fresh_version() -> Option<i64> {
    SQLITE_FRESH
        .lines()
        .find_map(|l| l.strip_prefix("-- version: "))
        .and_then(|v| v.trim().parse().ok())
}

/// The database file `SQLITE_FRESH` and its ledger make, with WAL mode set in its header
/// (generated: see the module's comment).
const SQLITE_TEMPLATE: &[u8] = include_bytes!("../../migrations/sqlite-fresh.db");

/// Create the SQLite database at `path` from the template when neither it nor a WAL of it
/// exists; `false` when nothing was done (the file exists, or the file system refused, in
/// which case SQLite creates the file as before). Written to a temporary file, synced and then
/// linked into place, so a crash leaves either no database or the whole template, and two
/// processes starting together cannot replace each other's file.
pub fn create_sqlite_from_template(path: &Path) -> bool {
    let wal = super::backup::sibling(path, "-wal");
    if path.symlink_metadata().is_ok() || wal.symlink_metadata().is_ok() {
        return false;
    }
    let tmp = super::backup::sibling(path, &format!(".new-{}", std::process::id()));
    let written = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        file.write_all(SQLITE_TEMPLATE)?;
        file.sync_all()?;
        std::fs::hard_link(&tmp, path)
    })();
    let _ = std::fs::remove_file(&tmp);
    if let Err(e) = written {
        if e.kind() != std::io::ErrorKind::AlreadyExists {
            tracing::info!(error = %e, path = %path.display(), "the database is created without its template");
        }
        return false;
    }
    // The new name is durable before anything is written to the database through it.
    if let Some(dir) = path.parent() {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
    }
    true
}

/// A database made from the template records when it was made, not when the template was.
pub async fn stamp_template(pool: &sqlx::SqlitePool) -> Result<(), StoreError> {
    sqlx::query("UPDATE _sqlx_migrations SET installed_on = CURRENT_TIMESTAMP")
        .execute(pool)
        .await?;
    Ok(())
}

/// Give an empty SQLite database the final schema and record every migration, in one
/// transaction; `false` (nothing done) when the database is not empty.
async fn fresh_sqlite(conn: &mut sqlx::SqliteConnection) -> Result<bool, StoreError> {
    let newest = SQLITE.iter().map(|m| m.version).max();
    if fresh_version() != newest {
        return Ok(false);
    }
    give_schema(conn, SQLITE_FRESH).await
}

/// In one transaction, when the database is empty: run `schema` and record every migration as
/// applied (`false` when it was not empty). Also how the template is made (the tests).
async fn give_schema(
    conn: &mut sqlx::SqliteConnection,
    schema: impl sqlx::SqlSafeStr,
) -> Result<bool, StoreError> {
    let mut tx = sqlx::Connection::begin_with(conn, "BEGIN IMMEDIATE").await?;
    let objects: i64 = sqlx::query("SELECT count(*) FROM sqlite_master")
        .fetch_one(&mut *tx)
        .await?
        .try_get(0)?;
    if objects > 0 {
        return Ok(false);
    }
    sqlx::raw_sql(schema).execute(&mut *tx).await?;
    let table = &SQLITE.table_name;
    tx.ensure_migrations_table(table)
        .await
        .map_err(migrate_error)?;
    for m in SQLITE
        .iter()
        .filter(|m| !m.migration_type.is_down_migration())
    {
        tx.skip(table, m).await.map_err(migrate_error)?;
    }
    tx.commit().await?;
    Ok(true)
}

/// On a failure the pool is dropped with the attempt, so sqlx's advisory lock (released only
/// when a run succeeds) ends with its connection.
pub async fn run_postgres(pool: &sqlx::PgPool) -> Result<(), StoreError> {
    let legacy: bool = sqlx::query("SELECT to_regclass('emergence_migrations') IS NOT NULL")
        .fetch_one(pool)
        .await?
        .try_get(0)?;
    if legacy {
        let version = sqlx::query(LEGACY_VERSION)
            .fetch_one(pool)
            .await?
            .try_get(0)?;
        if let Some(version) = adoptable(&POSTGRES, version)? {
            POSTGRES
                .skip(pool, Some(version))
                .await
                .map_err(migrate_error)?;
        }
    }
    POSTGRES.run(pool).await.map_err(migrate_error)
}

/// The legacy ledger's newest version, to record (with every older one) in `_sqlx_migrations`
/// with the embedded files' checksums, so the migrator does not apply them again. Recording is
/// idempotent: `Migrator::skip` takes the migrator's lock and records only versions missing.
fn adoptable(migrator: &Migrator, version: Option<i64>) -> Result<Option<i64>, StoreError> {
    match version {
        Some(v) if !migrator.version_exists(v) => Err(StoreError::Other(anyhow::anyhow!(
            "the database was migrated to version {v} by a newer server than this one"
        ))),
        other => Ok(other),
    }
}

fn migrate_error(e: MigrateError) -> StoreError {
    match e {
        MigrateError::Execute(e) => StoreError::from(e),
        other => StoreError::Other(anyhow::Error::new(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_backends_have_the_same_migrations() {
        let list = |m: &Migrator| {
            m.iter()
                .map(|m| (m.version, m.description.to_string()))
                .collect::<Vec<_>>()
        };
        assert_eq!(list(&SQLITE), list(&POSTGRES));
        assert!(SQLITE.version_exists(1));
    }

    async fn memory_pool() -> sqlx::SqlitePool {
        sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(1)
            .connect("sqlite::memory:")
            .await
            .unwrap()
    }

    async fn strings(pool: &sqlx::SqlitePool, sql: &str) -> Vec<String> {
        sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(sql.to_string()))
            .fetch_all(pool)
            .await
            .unwrap()
    }

    /// What a database holds, as SQL: every object in creation order, then every row of every
    /// ordinary table (FTS5's shadow tables follow from their virtual tables).
    async fn dump(pool: &sqlx::SqlitePool) -> String {
        let own = "name NOT LIKE 'sqlite_%' AND name != '_sqlx_migrations'";
        let shadow = "SELECT name FROM pragma_table_list WHERE type = 'shadow'";
        let mut out = String::new();
        let objects = format!(
            "SELECT sql FROM sqlite_master WHERE sql IS NOT NULL AND {own} \
             AND name NOT IN ({shadow}) ORDER BY rowid"
        );
        for sql in strings(pool, &objects).await {
            out.push_str(&sql);
            out.push_str(";\n");
        }
        let tables = format!(
            "SELECT name FROM pragma_table_list WHERE type = 'table' AND schema = 'main' AND {own} \
             ORDER BY name"
        );
        for table in strings(pool, &tables).await {
            let columns = strings(
                pool,
                &format!("SELECT name FROM pragma_table_info('{table}') ORDER BY cid"),
            )
            .await;
            let values: Vec<String> = columns.iter().map(|c| format!("quote(\"{c}\")")).collect();
            let rows = format!(
                "SELECT 'INSERT INTO \"{table}\" VALUES(' || {} || ');' FROM \"{table}\" ORDER BY rowid",
                values.join(" || ',' || ")
            );
            for row in strings(pool, &rows).await {
                out.push_str(&row);
                out.push('\n');
            }
        }
        out
    }

    /// The ledger as text: version, description, success and checksum of every row.
    async fn ledger(pool: &sqlx::SqlitePool) -> Vec<String> {
        strings(
            pool,
            "SELECT version || ' ' || description || ' ' || success || ' ' || hex(checksum) \
             FROM _sqlx_migrations ORDER BY version",
        )
        .await
    }

    #[tokio::test]
    async fn fresh_schema_is_what_the_migrations_make() {
        let stepwise = memory_pool().await;
        SQLITE.run(&stepwise).await.unwrap();
        let newest = SQLITE.iter().map(|m| m.version).max().unwrap();
        let want = format!(
            "-- The schema the SQLite migrations end with, for a new database (src/db/migrations.rs).\n\
             -- Generated by `UPDATE_SQLITE_SCHEMA=1 cargo test --lib fresh_schema`; do not edit.\n\
             -- version: {newest}\n{}",
            dump(&stepwise).await
        );
        if std::env::var_os("UPDATE_SQLITE_SCHEMA").is_some() {
            let path = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/sqlite-fresh.sql");
            std::fs::write(path, &want).unwrap();
            // The template: the file a server makes of an empty database (the new schema and
            // the ledger in one transaction), in WAL mode, checkpointed and closed.
            let dir = scratch_dir();
            let out = dir.join("template.db");
            let options = sqlx::sqlite::SqliteConnectOptions::new()
                .filename(&out)
                .create_if_missing(true)
                .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal);
            let file = sqlx::sqlite::SqlitePoolOptions::new()
                .max_connections(1)
                .connect_with(options)
                .await
                .unwrap();
            let mut conn = file.acquire().await.unwrap();
            let schema = sqlx::AssertSqlSafe(want.clone());
            assert!(give_schema(&mut conn, schema).await.unwrap());
            drop(conn);
            // A file made from the template is stamped when it is made (`stamp_template`); a
            // fixed time here makes the template the same bytes every time it is generated.
            sqlx::query("UPDATE _sqlx_migrations SET installed_on = '1970-01-01 00:00:00'")
                .execute(&file)
                .await
                .unwrap();
            sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                .execute(&file)
                .await
                .unwrap();
            file.close().await;
            let bytes = std::fs::read(&out).unwrap();
            let path = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/sqlite-fresh.db");
            std::fs::write(path, bytes).unwrap();
            std::fs::remove_dir_all(dir).unwrap();
            return;
        }
        assert!(
            SQLITE_FRESH == want,
            "migrations/sqlite-fresh.sql is not what the migrations make: \
             run UPDATE_SQLITE_SCHEMA=1 cargo test --lib fresh_schema"
        );
        let fresh = memory_pool().await;
        assert!(
            fresh_sqlite(&mut fresh.acquire().await.unwrap())
                .await
                .unwrap(),
            "an empty database"
        );
        assert_eq!(dump(&fresh).await, dump(&stepwise).await);
        assert_eq!(ledger(&fresh).await, ledger(&stepwise).await);
        // The migrator accepts the ledger (same checksums, nothing left to apply), and a
        // database that is not empty is never given the schema again.
        run_sqlite(&fresh).await.unwrap();
        assert!(
            !fresh_sqlite(&mut fresh.acquire().await.unwrap())
                .await
                .unwrap()
        );
        assert_eq!(ledger(&fresh).await, ledger(&stepwise).await);
    }

    fn scratch_dir() -> std::path::PathBuf {
        let dir =
            std::env::temp_dir().join(format!("emergence-migrations-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// The template is the database the migrations make, in WAL mode; a file made from it is
    /// complete for the migrator, and a file is only ever made where none (and no WAL) exists.
    #[tokio::test]
    async fn the_template_is_what_the_migrations_make() {
        assert_eq!(&SQLITE_TEMPLATE[..16], b"SQLite format 3\0");
        assert_eq!(
            (SQLITE_TEMPLATE[18], SQLITE_TEMPLATE[19]),
            (2, 2),
            "the template is in WAL mode"
        );
        let stepwise = memory_pool().await;
        SQLITE.run(&stepwise).await.unwrap();
        let dir = scratch_dir();
        let path = dir.join("db").join("emergence.db");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        assert!(create_sqlite_from_template(&path), "a new file");
        assert!(
            !create_sqlite_from_template(&path),
            "never over an existing file"
        );
        assert_eq!(std::fs::read(&path).unwrap(), SQLITE_TEMPLATE);
        let leftovers: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers, [std::ffi::OsString::from("emergence.db")]);
        let pool = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(1)
            .connect(&format!("sqlite://{}", path.display()))
            .await
            .unwrap();
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(mode, "wal");
        assert_eq!(
            dump(&pool).await,
            dump(&stepwise).await,
            "migrations/sqlite-fresh.db is not what the migrations make: \
             run UPDATE_SQLITE_SCHEMA=1 cargo test --lib fresh_schema"
        );
        assert_eq!(ledger(&pool).await, ledger(&stepwise).await);
        stamp_template(&pool).await.unwrap();
        run_sqlite(&pool).await.unwrap();
        assert_eq!(ledger(&pool).await, ledger(&stepwise).await);
        pool.close().await;

        // A WAL left without its database is not given a template to replay onto.
        let orphan = dir.join("orphan.db");
        std::fs::write(dir.join("orphan.db-wal"), b"").unwrap();
        assert!(!create_sqlite_from_template(&orphan));
        assert!(!orphan.exists());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_legacy_version_this_binary_does_not_know_is_refused() {
        assert_eq!(adoptable(&SQLITE, None).unwrap(), None);
        assert_eq!(adoptable(&SQLITE, Some(1)).unwrap(), Some(1));
        assert!(adoptable(&SQLITE, Some(9_999)).is_err());
    }
}
