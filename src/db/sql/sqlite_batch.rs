//! SQLite's group-commit statements (idempotency lookup, seq reservation, insert) in a few fixed,
//! padded shapes, so each is parsed and planned once per connection, not once per batch.
//!
//! SQLite has no array parameters: a batch's keys and rows go in a `VALUES` list of bound
//! parameters. A list whose length follows the batch gives a new statement text per batch size,
//! which SQLite parses and plans anew every time (6 % of the server's cycles under the persist
//! bench, session 24). Here a chunk of n rows takes the statement of the next power of two rows
//! (at most [`MAX_ROWS`]); its unused rows are bound to NULL, which no join matches and the
//! insert filters out. Fixed 128-row statements without padding measured 7 % slower (each
//! statement pays its own statement journal and worker round trip).

use std::sync::LazyLock;

use sqlx::{Row, SqliteConnection};

use super::{Result, dialect::INSERT_MESSAGES, message_row};
use crate::db::{Message, MessageMeta, NewMessage};

/// Most rows (keys, threads, messages) in one statement; the shapes are 1, 2, 4, … this many.
pub(super) const MAX_ROWS: usize = 256;
/// The columns of [`INSERT_MESSAGES`].
const INSERT_COLUMNS: usize = 14;

/// The idempotency lookup's column list, the columns [`message_row`] reads.
pub(super) const STORED_CLIENT_IDS: &str = "SELECT id, thread_id, seq, client_id, \
     author_kind, author_id, author_name, body, created_at, status, prompt_tokens, \
     completion_tokens, meta FROM ";

/// A statement text per shape: `make` completes the statement around a `VALUES` list of `rows`
/// rows of `params` parameters each.
fn shapes(params: usize, make: impl Fn(&str) -> String) -> Vec<String> {
    let row = format!("({})", vec!["?"; params].join(", "));
    (0..=MAX_ROWS.trailing_zeros())
        .map(|p| make(&vec![row.as_str(); 1 << p].join(", ")))
        .collect()
}

/// The keys' stored messages: the keys drive the join (`CROSS JOIN` keeps them outer), each a
/// search of the `(thread_id, client_id)` index.
static LOOKUP: LazyLock<Vec<String>> = LazyLock::new(|| {
    shapes(2, |values| {
        format!(
            "{STORED_CLIENT_IDS}(VALUES {values}) AS k CROSS JOIN messages \
             ON thread_id = k.column1 AND client_id = k.column2"
        )
    })
});

/// Each thread's `last_seq` grows by its count; a deleted or missing thread is left out.
static RESERVE: LazyLock<Vec<String>> = LazyLock::new(|| {
    shapes(2, |values| {
        format!(
            "UPDATE threads SET last_seq = last_seq + k.column2, last_activity = ? \
             FROM (VALUES {values}) AS k WHERE threads.id = k.column1 \
             AND threads.deleted_at IS NULL RETURNING threads.id, threads.last_seq"
        )
    })
});

/// The rows whose `id` is NULL are padding and are not inserted.
static INSERT: LazyLock<Vec<String>> = LazyLock::new(|| {
    shapes(INSERT_COLUMNS, |values| {
        format!("{INSERT_MESSAGES}SELECT * FROM (VALUES {values}) WHERE column1 IS NOT NULL")
    })
});

/// The statement of `shapes` for `rows` rows, and how many rows of padding it needs.
fn shape(shapes: &'static [String], rows: usize) -> (&'static str, usize) {
    let padded = rows.next_power_of_two();
    debug_assert!(rows > 0 && padded <= MAX_ROWS);
    (&shapes[padded.trailing_zeros() as usize], padded - rows)
}

/// The stored messages among these `(thread, client id)` keys.
pub(super) async fn stored_client_ids(
    conn: &mut SqliteConnection,
    keys: &[(&str, &str)],
    persistent: bool,
) -> Result<Vec<Message>> {
    let mut found = Vec::new();
    for chunk in keys.chunks(MAX_ROWS) {
        let (sql, padding) = shape(&LOOKUP, chunk.len());
        let mut query = sqlx::query(sql).persistent(persistent);
        for (thread, client_id) in chunk {
            query = query.bind(*thread).bind(*client_id);
        }
        for _ in 0..padding * 2 {
            query = query.bind(None::<&str>);
        }
        for row in &query.fetch_all(&mut *conn).await? {
            found.push(message_row(row)?);
        }
    }
    Ok(found)
}

/// Reserve `count` seqs in each thread; returns each thread's new `last_seq`. SQLite has one
/// writer at a time (the batch holds the write lock from `BEGIN IMMEDIATE`): there is no lock
/// order to keep.
pub(super) async fn reserve_seqs(
    conn: &mut SqliteConnection,
    counts: &[(&str, i64)],
    now: i64,
    persistent: bool,
) -> Result<Vec<(String, i64)>> {
    let mut reserved = Vec::with_capacity(counts.len());
    for chunk in counts.chunks(MAX_ROWS) {
        let (sql, padding) = shape(&RESERVE, chunk.len());
        let mut query = sqlx::query(sql).persistent(persistent).bind(now);
        for (thread, count) in chunk {
            query = query.bind(*thread).bind(*count);
        }
        for _ in 0..padding * 2 {
            query = query.bind(None::<&str>);
        }
        for row in &query.fetch_all(&mut *conn).await? {
            reserved.push((row.try_get(0)?, row.try_get(1)?));
        }
    }
    Ok(reserved)
}

/// Insert these new messages with their seqs.
pub(super) async fn insert_rows(
    conn: &mut SqliteConnection,
    rows: &[(&NewMessage, i64)],
    persistent: bool,
) -> Result<()> {
    for chunk in rows.chunks(MAX_ROWS) {
        let (sql, padding) = shape(&INSERT, chunk.len());
        let mut query = sqlx::query(sql).persistent(persistent);
        for (m, seq) in chunk {
            query = query
                .bind(m.id.as_str())
                .bind(m.thread_id.as_str())
                .bind(*seq)
                .bind(m.client_id.as_str())
                .bind(m.author.kind.as_str())
                .bind(m.author.id.as_str())
                .bind(m.author.name.as_str())
                .bind(m.body.as_str())
                .bind(m.created_at)
                .bind(m.status.as_deref())
                .bind(m.prompt_tokens)
                .bind(m.completion_tokens)
                .bind(MessageMeta::to_column(m.meta.as_deref()))
                .bind(m.requester.as_deref());
        }
        for _ in 0..padding * INSERT_COLUMNS {
            query = query.bind(None::<&str>);
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}
