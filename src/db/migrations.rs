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
//! Databases created before sqlx ran the migrations kept their own ledger,
//! `emergence_migrations (version, applied_at)`. It is read on every start: its versions are
//! recorded in `_sqlx_migrations` (with the embedded files' checksums) before the migrator runs,
//! so such a database upgrades in place. The old table is left as it is (an older binary can
//! still start on the database).

use sqlx::{
    Row,
    migrate::{MigrateError, Migrator},
};

use super::StoreError;

static SQLITE: Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES: Migrator = sqlx::migrate!("migrations/postgres");

/// The newest version in the ledger the server kept before sqlx ran its migrations (the same
/// query on both engines, run once the table is known to exist).
const LEGACY_VERSION: &str = "SELECT max(version) FROM emergence_migrations";

pub async fn run_sqlite(pool: &sqlx::SqlitePool) -> Result<(), StoreError> {
    let legacy: i64 = sqlx::query(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'emergence_migrations'",
    )
    .fetch_one(pool)
    .await?
    .try_get(0)?;
    if legacy > 0 {
        let version = sqlx::query(LEGACY_VERSION)
            .fetch_one(pool)
            .await?
            .try_get(0)?;
        if let Some(version) = adoptable(&SQLITE, version)? {
            SQLITE
                .skip(pool, Some(version))
                .await
                .map_err(migrate_error)?;
        }
    }
    SQLITE.run(pool).await.map_err(migrate_error)
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

    #[test]
    fn a_legacy_version_this_binary_does_not_know_is_refused() {
        assert_eq!(adoptable(&SQLITE, None).unwrap(), None);
        assert_eq!(adoptable(&SQLITE, Some(1)).unwrap(), Some(1));
        assert!(adoptable(&SQLITE, Some(9_999)).is_err());
    }
}
