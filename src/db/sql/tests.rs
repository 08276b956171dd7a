//! Keeps the column lists and the queries that spell them out in step.

use super::*;

/// The columns of a message, in the order [`message_row`] reads them.
const MESSAGE_COLUMNS: &str = "id, thread_id, seq, client_id, author_kind, author_id, \
     author_name, body, created_at, status, prompt_tokens, completion_tokens, meta";
/// The columns of a thread, in the order [`thread_row`] reads them.
const THREAD_COLUMNS: &str = "id, title, owner_id, agents, created_at, last_seq";

#[test]
fn every_message_query_reads_the_message_columns_in_order() {
    for sql in [
        messages::MESSAGES_AFTER,
        messages::MESSAGES_BEFORE,
        messages::MESSAGE_BY_CLIENT_ID,
        versions::MESSAGE_BY_ID,
    ] {
        let normalized = sql.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(
            normalized.starts_with(&format!("SELECT {MESSAGE_COLUMNS} FROM messages")),
            "{sql}"
        );
    }
    assert!(sqlite_batch::STORED_CLIENT_IDS.starts_with(&format!("SELECT {MESSAGE_COLUMNS} ")));
    assert!(dialect::PG_STORED_CLIENT_IDS.starts_with(&format!("SELECT {MESSAGE_COLUMNS} ")));
    assert!(lifecycle::EXPORT_MESSAGES.starts_with(&format!("SELECT {MESSAGE_COLUMNS} FROM")));
    let hit = search::HIT_COLUMNS
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace("m.", "");
    assert!(hit.starts_with(MESSAGE_COLUMNS), "{hit}");
}

/// Behind a transaction-mode pooler (PgBouncer) a server connection is ours for one
/// transaction only: operations must take their connection from `conn()` (a transaction
/// there) and build statements with `q()` or an explicit `.persistent(..)` (unnamed there).
#[test]
fn every_statement_can_run_behind_a_transaction_mode_pooler() {
    for (file, source) in [
        ("sql/mod.rs", include_str!("mod.rs")),
        ("sql/conn.rs", include_str!("conn.rs")),
        ("sql/messages.rs", include_str!("messages.rs")),
        ("sql/threads.rs", include_str!("threads.rs")),
        ("sql/dialect.rs", include_str!("dialect.rs")),
        ("sql/sqlite_batch.rs", include_str!("sqlite_batch.rs")),
        ("sql/lifecycle.rs", include_str!("lifecycle.rs")),
        ("sql/search.rs", include_str!("search.rs")),
        ("sql/accounts.rs", include_str!("accounts.rs")),
        ("sql/sso.rs", include_str!("sso.rs")),
        ("sql/versions.rs", include_str!("versions.rs")),
        ("sql/usage.rs", include_str!("usage.rs")),
    ] {
        let code = source.split("#[cfg(test)]").next().unwrap();
        // Migrations through the pool happen only without a pooler (else `direct_url`).
        let code = code.replace("DB::migrate(&self.pool)", "");
        // Only `conn()` itself takes a pool connection, and the writer's batch (`messages.rs`)
        // its own, which runs in a transaction on any backend.
        for bypass in [
            "(&self.pool)",
            "self.pool.acquire()",
            "self.writer.acquire()",
        ] {
            let uses = code.matches(bypass).count();
            let allowed = usize::from(matches!(
                (bypass, file),
                ("self.pool.acquire()", "sql/conn.rs")
                    | ("self.writer.acquire()", "sql/messages.rs")
            ));
            assert!(
                uses <= allowed,
                "{file}: {bypass} bypasses `self.conn()`, which runs the operation in a \
                 transaction behind a transaction-mode pooler"
            );
        }
        for (at, _) in code.match_indices("sqlx::query(") {
            let statement = &code[at..];
            let end = [".fetch", ".execute"]
                .iter()
                .filter_map(|e| statement.find(e))
                .min()
                .unwrap_or(statement.len());
            assert!(
                statement[..end].contains(".persistent("),
                "{file}: a statement built with sqlx::query without `.persistent(..)`: use \
                 `self.q(..)` (named statements break behind a transaction-mode pooler)\n{}",
                &statement[..end.min(200)]
            );
        }
    }
}

#[test]
fn thread_queries_read_the_thread_columns_in_order() {
    assert!(threads::THREAD_BY_ID.starts_with(&format!("SELECT {THREAD_COLUMNS} FROM threads")));
    let joined = threads::THREADS_FOR_USER
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    assert!(
        joined
            .replace("t.", "")
            .starts_with(&format!("SELECT {THREAD_COLUMNS} FROM threads"))
    );
}

/// A new SQLite store in a directory of its own, migrated, with a user `alice` and her threads
/// `threads`.
async fn sqlite_store(threads: &[&str]) -> (SqlStore<sqlx::Sqlite>, std::path::PathBuf) {
    use crate::db::{Store, memory::alices_thread};
    let dir = std::env::temp_dir().join(format!("emergence-writer-{}", uuid::Uuid::new_v4()));
    let path = dir.join("e.db");
    let store = dialect::open_sqlite(
        path.to_str().unwrap(),
        4,
        std::time::Duration::from_secs(5),
        true,
    )
    .await
    .unwrap();
    store.migrate().await.unwrap();
    sqlx::query("INSERT INTO users (id, username, username_key, password_hash, created_at) VALUES ('alice', 'alice', 'alice', 'x', 1)")
        .execute(&store.pool)
        .await
        .unwrap();
    for id in threads {
        store.create_thread(&alices_thread(id), 1).await.unwrap();
    }
    (store, dir)
}

/// The seqs of `thread`'s stored messages, read back through the pool.
async fn stored_seqs(store: &SqlStore<sqlx::Sqlite>, thread: &str) -> Vec<i64> {
    use crate::db::Store;
    store
        .messages(thread, crate::db::Page::After(0), 10_000)
        .await
        .unwrap()
        .iter()
        .map(|m| m.seq)
        .collect()
}

/// SQLite's batches run on the writer's one connection (its page cache stays warm), opened at
/// the first batch, not at start; concurrent batches still give every message its own gapless
/// `seq`, and what they stored is read back through the pool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_batches_run_on_the_writers_own_connection() {
    use crate::db::{Store, memory::user_message};
    let (store, dir) = sqlite_store(&["t1", "t2"]).await;
    assert_eq!(
        store.writer.size(),
        0,
        "opened at the first batch, not at start"
    );
    let store = std::sync::Arc::new(store);
    let batches = (0..16).map(|b| {
        let store = store.clone();
        tokio::spawn(async move {
            let batch: Vec<_> = (0..10)
                .map(|i| {
                    let thread = if i % 2 == 0 { "t1" } else { "t2" };
                    user_message(thread, &format!("c{b}-{i}"), "alice", "hello")
                })
                .collect();
            store.insert_messages(&batch).await.unwrap()
        })
    });
    for batch in batches.collect::<Vec<_>>() {
        assert_eq!(batch.await.unwrap().len(), 10);
    }
    assert_eq!(store.writer.size(), 1, "one connection for every batch");
    for thread in ["t1", "t2"] {
        let seqs = stored_seqs(&store, thread).await;
        assert_eq!(seqs, (1..=80).collect::<Vec<_>>(), "{thread}");
    }
    store.close().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// SQLite's inserts come in a few fixed shapes whose unused rows are padding: every batch size
/// stores exactly its own messages, in order, whole (none of the padding, none twice), and a
/// batch over one statement's rows takes several.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_inserts_store_exactly_the_batch_whatever_its_size() {
    use crate::db::{InsertOutcome, Store, memory::user_message};
    let (store, dir) = sqlite_store(&["t1", "t2", "t3"]).await;
    let mut expected = 0;
    for size in [1, 2, 3, 5, 64, 255, 256, 257, 700] {
        let batch: Vec<_> = (0..size)
            .map(|i| {
                user_message(
                    "t1",
                    &format!("c{size}-{i}"),
                    "alice",
                    &format!("m {size} {i}"),
                )
            })
            .collect();
        let outcomes = store.insert_messages(&batch).await.unwrap();
        assert_eq!(outcomes.len(), size);
        assert!(
            outcomes
                .iter()
                .all(|o| matches!(o, InsertOutcome::Inserted(_)))
        );
        expected += size as i64;
        assert_eq!(
            stored_seqs(&store, "t1").await,
            (1..=expected).collect::<Vec<_>>(),
            "after {size}"
        );
    }
    let last = store
        .messages("t1", crate::db::Page::After(expected - 1), 1)
        .await
        .unwrap();
    assert_eq!(
        (last[0].body.as_str(), last[0].client_id.as_str()),
        ("m 700 699", "c700-699")
    );
    // Three keys already stored (the lookup's padding matches none), two threads that exist and
    // one that does not (the reservation's padding updates none).
    let mixed = vec![
        user_message("t1", "c3-0", "alice", "m 3 0"),
        user_message("t2", "new-1", "alice", "hi"),
        user_message("t1", "c700-5", "alice", "m 700 5"),
        user_message("nope", "new-2", "alice", "hi"),
        user_message("t3", "new-3", "alice", "hi"),
        user_message("t1", "c1-0", "alice", "m 1 0"),
    ];
    let outcomes = store.insert_messages(&mixed).await.unwrap();
    let seq = |o: &InsertOutcome| match o {
        InsertOutcome::Inserted(m) => ("inserted", m.seq),
        InsertOutcome::Existing(m) => ("existing", m.seq),
        InsertOutcome::NoThread => ("no thread", 0),
        _ => ("other", 0),
    };
    assert_eq!(
        outcomes.iter().map(seq).collect::<Vec<_>>(),
        [
            ("existing", 4),
            ("inserted", 1),
            ("existing", 849),
            ("no thread", 0),
            ("inserted", 1),
            ("existing", 1)
        ]
    );
    assert_eq!(stored_seqs(&store, "t1").await.len() as i64, expected);
    let padding: i64 =
        sqlx::query_scalar("SELECT count(*) FROM messages WHERE id IS NULL OR body IS NULL")
            .fetch_one(&store.pool)
            .await
            .unwrap();
    assert_eq!(padding, 0, "no padding row stored");
    store.close().await;
    let _ = std::fs::remove_dir_all(&dir);
}
