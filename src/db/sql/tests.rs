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
    assert!(dialect::SQLITE_STORED_CLIENT_IDS.starts_with(&format!("SELECT {MESSAGE_COLUMNS} ")));
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
        for bypass in ["(&self.pool)", "self.pool.acquire()"] {
            let uses = code.matches(bypass).count();
            let allowed = usize::from(bypass == "self.pool.acquire()");
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
