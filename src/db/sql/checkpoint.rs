//! SQLite's WAL checkpoints, run by a task of their own instead of inside a commit.
//!
//! By default SQLite checkpoints in the commit that pushes the WAL past its threshold: that
//! commit copies the WAL into the database file and `fsync`s both, so on a disk where an `fsync`
//! takes 50–70 ms the message writer stalled for 50–100 ms every 4,000 pages (every 0.35 s at
//! 1,500 single-message commits per second), and every message queued behind it waited (docs/performance.md, "Round six"). Here every pool
//! connection has automatic checkpoints off, and this task checkpoints on its own connection
//! with `PASSIVE`, which neither waits for nor blocks the writer or the readers.
//!
//! A passive checkpoint cannot reset the WAL while commits keep arriving, so under a load
//! without pauses the WAL would grow; past [`Bounds::restart_frames`] the task first catches up
//! with passive passes (as long as they gain on the writer), then runs one `RESTART` that
//! blocks the writer only for the frames left and waits at most 50 ms for it (trying again next
//! tick when busy), and the file is cut back to `journal_size_limit` when SQLite restarts it.

use std::time::Duration;

use sqlx::{Connection, sqlite::SqliteConnectOptions};
use tokio_util::sync::CancellationToken;

/// When the task checkpoints.
#[derive(Clone, Copy)]
pub(super) struct Bounds {
    /// How often the task looks at the WAL. A pass with nothing new to copy costs no `fsync`.
    pub every: Duration,
    /// WAL frames (pages) past which a `RESTART` checkpoint bounds the file.
    pub restart_frames: i64,
}

/// Every 500 ms; a `RESTART` past 64 MiB of WAL at 4 KiB pages.
pub(super) const BOUNDS: Bounds = Bounds {
    every: Duration::from_millis(500),
    restart_frames: 16_384,
};

/// What the WAL file is cut back to when SQLite restarts it (`journal_size_limit`), in bytes.
pub(super) const JOURNAL_SIZE_LIMIT: &str = "67108864";

/// Checkpoint the database of `options` within `bounds` until `stop`, on a connection of its own.
pub(super) fn spawn(options: SqliteConnectOptions, bounds: Bounds, stop: CancellationToken) {
    tokio::spawn(async move {
        // Its `RESTART` waits for the writer and the readers at most this long before it
        // settles for a passive pass (and tries again next time), unless the WAL is far past
        // its bound.
        let options = options.busy_timeout(SHORT_WAIT);
        let mut conn = match sqlx::SqliteConnection::connect_with(&options).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "sqlite checkpointer: cannot open its connection; SQLite will not checkpoint until restart");
                return;
            }
        };
        let mut tick = tokio::time::interval(bounds.every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tick.tick() => {}
            }
            if let Err(e) = pass(&mut conn, bounds.restart_frames).await {
                tracing::warn!(error = %e, "sqlite checkpoint failed; retrying");
            }
        }
        let _ = conn.close().await;
    });
}

/// One checkpoint: passive, or, when the WAL has grown past its bound, passive passes until
/// little is left to copy and then one `RESTART`, which blocks the writers only for that little.
async fn pass(conn: &mut sqlx::SqliteConnection, restart_frames: i64) -> Result<(), sqlx::Error> {
    let mut log = passive(conn).await?;
    if log <= restart_frames {
        return Ok(());
    }
    let started = std::time::Instant::now();
    // A pass copies what was in the WAL when it began; what came during it (the growth of
    // `log`) is the next pass's work. Each pass is shorter, down to the cost of its two syncs,
    // unless the writers outrun the copying (a slow disk: a sync of 100 ms while commits that
    // do not sync go on): then a pass grows the WAL by as much as the one before or more, and
    // further passes would only let it grow, so the `RESTART` below stops the writers for the
    // rest. Also when the WAL is already far past its bound.
    let mut grew = i64::MAX;
    for _ in 0..CATCH_UP_PASSES {
        if log > 4 * restart_frames {
            break;
        }
        let before = log;
        log = passive(conn).await?;
        let growth = log - before;
        if growth <= CATCH_UP_FRAMES || growth >= grew {
            break;
        }
        grew = growth;
    }
    let caught_up = started.elapsed();
    let patient = log > 4 * restart_frames;
    if patient {
        sqlx::query("PRAGMA busy_timeout = 5000")
            .execute(&mut *conn)
            .await?;
    }
    let restarted = sqlx::query_as::<_, (i64, i64, i64)>("PRAGMA wal_checkpoint(RESTART)")
        .fetch_one(&mut *conn)
        .await;
    if patient {
        sqlx::query("PRAGMA busy_timeout = 50")
            .execute(&mut *conn)
            .await?;
    }
    let (busy, _, _) = restarted?;
    let (catch_up_ms, restart_ms) = (
        caught_up.as_millis() as u64,
        (started.elapsed() - caught_up).as_millis() as u64,
    );
    if busy == 0 {
        tracing::info!(
            frames = log,
            catch_up_ms,
            restart_ms,
            "sqlite WAL past its bound: checkpointed and restarted"
        );
    } else {
        // Tried again on the next tick (every 500 ms) while readers hold the WAL: not worth a
        // line each time at the default level.
        tracing::debug!(
            frames = log,
            catch_up_ms,
            restart_ms,
            "sqlite WAL past its bound: restart busy, retried on the next tick"
        );
    }
    Ok(())
}

/// How long the `RESTART` waits for the writer and the readers (the writer waits for it); the
/// `busy_timeout` set back after a patient one says the same.
const SHORT_WAIT: Duration = Duration::from_millis(50);

/// Passive passes at most before the `RESTART`, and the growth during one pass that is little
/// enough to stop at.
const CATCH_UP_PASSES: usize = 8;
const CATCH_UP_FRAMES: i64 = 1_024;

/// Copy what the WAL holds without waiting for anyone; the WAL's length in frames.
async fn passive(conn: &mut sqlx::SqliteConnection) -> Result<i64, sqlx::Error> {
    // (busy, frames in the WAL, frames copied to the database)
    let (_, log, _): (i64, i64, i64) = sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)")
        .fetch_one(&mut *conn)
        .await?;
    Ok(log)
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use sqlx::{
        Executor,
        sqlite::{SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
    };

    use super::*;

    /// Write `rows` rows of 4 KiB back to back, with or without the checkpointer; the WAL's
    /// largest size seen (bytes) and the database file's size at the end.
    async fn write_rows(checkpointer: bool, rows: usize) -> (u64, u64) {
        let dir = std::env::temp_dir().join(format!("emergence-ckpt-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.db");
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
            .unwrap()
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5))
            .pragma("wal_autocheckpoint", "0")
            .pragma("journal_size_limit", JOURNAL_SIZE_LIMIT);
        let pool = SqlitePoolOptions::new()
            .max_connections(2)
            .connect_with(options.clone())
            .await
            .unwrap();
        pool.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, b BLOB)")
            .await
            .unwrap();
        let stop = CancellationToken::new();
        if checkpointer {
            let bounds = Bounds {
                every: Duration::from_millis(20),
                restart_frames: 256,
            };
            spawn(options, bounds, stop.clone());
        }
        let wal = dir.join("t.db-wal");
        let mut largest = 0;
        for _ in 0..rows {
            sqlx::query("INSERT INTO t (b) VALUES (?)")
                .bind(vec![7u8; 4096])
                .execute(&pool)
                .await
                .unwrap();
            largest = largest.max(std::fs::metadata(&wal).map_or(0, |m| m.len()));
        }
        let db = std::fs::metadata(&path).unwrap().len();
        stop.cancel();
        pool.close().await;
        let _ = std::fs::remove_dir_all(&dir);
        (largest, db)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_checkpointer_copies_the_wal_and_keeps_it_bounded_under_constant_writes() {
        // Without it (automatic checkpoints off, as on every pool connection), nothing reaches
        // the database file and the WAL holds every row (two pages each): over 48 MiB.
        let (unbounded, db) = write_rows(false, 8_000).await;
        assert!(unbounded > 48 << 20, "the WAL holds every row: {unbounded}");
        assert!(
            db < 64 << 10,
            "nothing is copied without a checkpoint: {db}"
        );
        // With it, rows reach the database file while the writes go on, and the WAL is
        // restarted past its bound (256 frames, 1 MiB) however closely the writes follow. How
        // far past depends on the disk: commits that do not sync go on while a passive pass
        // syncs (a few MiB on a quiet disk; 15 MiB when every sync takes 300 ms, seen with
        // `strace --seccomp-bpf -f -e inject=fsync,fdatasync:delay_enter=300000`), so the
        // bound is a fraction of what the rows take, not a size.
        let (wal, db) = write_rows(true, 8_000).await;
        assert!(db > 16 << 20, "checkpoints copied the rows: {db}");
        assert!(
            wal < unbounded / 2,
            "the WAL stays bounded: {wal} (without checkpoints: {unbounded})"
        );
    }
}
