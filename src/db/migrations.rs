//! Schema migrations, one ordered list per backend, applied at start-up (and by `emergence migrate`).
//! PostgreSQL takes an advisory lock so instances starting together migrate once.

use sqlx::{Executor, Row};

use super::{StoreError, now_ms};

const SQLITE: &[(i64, &str)] = &[(1, include_str!("../../migrations/sqlite/0001_init.sql"))];
const POSTGRES: &[(i64, &str)] = &[(1, include_str!("../../migrations/postgres/0001_init.sql"))];

const LEDGER: &str = "CREATE TABLE IF NOT EXISTS emergence_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)";

pub async fn run_sqlite(pool: &sqlx::SqlitePool) -> Result<(), StoreError> {
    let mut conn = pool.acquire().await?;
    conn.execute(LEDGER).await?;
    for (version, sql) in SQLITE {
        let done = sqlx::query("SELECT 1 FROM emergence_migrations WHERE version = $1")
            .bind(version)
            .fetch_optional(&mut *conn)
            .await?
            .is_some();
        if done {
            continue;
        }
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        tx.execute(*sql).await?;
        sqlx::query("INSERT INTO emergence_migrations (version, applied_at) VALUES ($1, $2)")
            .bind(version)
            .bind(now_ms())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        tracing::info!(version, backend = "sqlite", "migration applied");
    }
    Ok(())
}

pub async fn run_postgres(pool: &sqlx::PgPool) -> Result<(), StoreError> {
    let mut conn = pool.acquire().await?;
    // One migrator at a time across instances.
    sqlx::query("SELECT pg_advisory_lock(7405726)")
        .execute(&mut *conn)
        .await?;
    let result = async {
        conn.execute(LEDGER).await?;
        for (version, sql) in POSTGRES {
            let done = sqlx::query("SELECT count(*) FROM emergence_migrations WHERE version = $1")
                .bind(version)
                .fetch_one(&mut *conn)
                .await?
                .try_get::<i64, _>(0)?
                > 0;
            if done {
                continue;
            }
            let mut tx = sqlx::Connection::begin(&mut *conn).await?;
            tx.execute(*sql).await?;
            sqlx::query("INSERT INTO emergence_migrations (version, applied_at) VALUES ($1, $2)")
                .bind(version)
                .bind(now_ms())
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            tracing::info!(version, backend = "postgres", "migration applied");
        }
        Ok::<(), StoreError>(())
    }
    .await;
    let _ = sqlx::query("SELECT pg_advisory_unlock(7405726)")
        .execute(&mut *conn)
        .await;
    result
}
