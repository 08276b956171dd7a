//! Full-text search, one query per engine (docs/search.md has the design):
//!
//! * SQLite: the FTS5 table `message_search` (Porter stemmer over Unicode tokens without
//!   diacritics), ranked by `bm25`, snippets by `snippet()`. Its rows are written by the group
//!   commit, in the transaction that stores the messages.
//! * PostgreSQL: the generated `messages.search` tsvector (English and French configurations)
//!   with its GIN index, ranked by `ts_rank`, snippets by `ts_headline` in the configuration
//!   that matched, computed only for the page returned.
//!
//! Both join the caller's memberships and skip deleted threads inside the query, so a hit from a
//! thread the caller cannot read never leaves the database.

use sqlx::{Pool, Postgres, Row, Sqlite};

use super::search_scope as scope;
use super::{Result, message_row};
use crate::db::lifecycle::{MARK_END, MARK_START, SearchHit, SearchQuery};

/// The filters both engines apply, with the same parameter numbers ($2 the user).
const FILTERS: &str = "AND ($3 IS NULL OR m.thread_id = $3) \
     AND ($4 IS NULL OR (m.author_kind = 'user' AND m.author_id = $4)) \
     AND ($5 IS NULL OR (m.author_kind = 'agent' AND m.author_id = $5)) \
     AND ($6 IS NULL OR m.created_at >= $6) AND ($7 IS NULL OR m.created_at < $7)";

/// The message columns (as `message_row` reads them), then the thread title and the snippet.
pub(super) const HIT_COLUMNS: &str = "m.id, m.thread_id, m.seq, m.client_id, m.author_kind, m.author_id, \
     m.author_name, m.body, m.created_at, m.status, m.prompt_tokens, m.completion_tokens, m.meta, \
     t.title";
/// Where the thread title is among the hit's columns.
const TITLE: usize = 13;

/// How many of the caller's most recent matches a query ranks, beyond the page asked for: a
/// word found in 300,000 messages is ranked among the caller's 1,000 latest matches (latest
/// threads first, then latest in the thread), so its cost is bounded; a rarer word is ranked
/// over every match (docs/search.md, "At scale").
pub const RANKED_WINDOW: i64 = 1000;

/// SQLite: the index's rowid is `(thread number << 32) | seq` (migration 0008), so the caller's
/// threads are checked on the rowid alone, the window is walked newest first straight from the
/// index, and only the page's rows are read from `messages` and given snippets.
pub(super) async fn sqlite(pool: &Pool<Sqlite>, q: &SearchQuery) -> Result<Vec<SearchHit>> {
    if q.fts5.is_empty() {
        return Ok(Vec::new());
    }
    let fts5 = expand_prefixes(pool, &q.fts5).await?;
    // The filters that need the message's own columns join it, only when asked for.
    let by_message = q.author.is_some() || q.agent.is_some() || q.from.is_some() || q.to.is_some();
    let join = if by_message {
        "JOIN threads ft ON ft.num = (s.rowid >> 32) \
         JOIN messages m ON m.thread_id = ft.id AND m.seq = (s.rowid & 4294967295)"
    } else {
        ""
    };
    let filters = if by_message {
        FILTERS.replace("AND ($3 IS NULL OR m.thread_id = $3) ", "")
    } else {
        String::new()
    };
    // One thread asked for: the index is read over that thread's rowids only.
    let one_thread = if q.thread.is_some() {
        "AND s.rowid >= ((SELECT num FROM threads WHERE id = $3) << 32) \
         AND s.rowid <= (((SELECT num FROM threads WHERE id = $3) << 32) | 4294967295)"
    } else {
        "AND $3 IS NULL"
    };
    // `thread_members.thread_num` is the thread's number while it is not deleted (migration
    // 0008's triggers), so the caller's readable threads are one index range.
    let sql = format!(
        "WITH page(r, score) AS (SELECT r, score FROM ( \
           SELECT s.rowid AS r, bm25(message_search) AS score FROM message_search s {join} \
           WHERE message_search MATCH $1 {one_thread} \
             AND (s.rowid >> 32) IN (SELECT thread_num FROM thread_members \
                                     WHERE user_id = $2 AND thread_num IS NOT NULL) {filters} \
           ORDER BY s.rowid DESC LIMIT $10) \
           ORDER BY score ASC, r DESC LIMIT $8 OFFSET $9) \
         SELECT {HIT_COLUMNS}, page.r FROM page \
         JOIN threads t ON t.num = (page.r >> 32) AND t.deleted_at IS NULL \
         JOIN messages m ON m.thread_id = t.id AND m.seq = (page.r & 4294967295) \
         ORDER BY page.score ASC, page.r DESC"
    );
    // SQLite (never behind a pooler): one statement text per query shape, not worth caching.
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .persistent(false)
        .bind(fts5.as_str())
        .bind(q.user_id.as_str())
        .bind(q.thread.as_deref())
        .bind(q.author.as_deref())
        .bind(q.agent.as_deref())
        .bind(q.from)
        .bind(q.to)
        .bind(q.limit)
        .bind(q.offset)
        .bind(RANKED_WINDOW + q.offset + q.limit)
        .fetch_all(pool)
        .await?;
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    // Snippets for the page only (they re-tokenize each body).
    let mut qb = sqlx::QueryBuilder::<Sqlite>::new(format!(
        "SELECT rowid, snippet(message_search, 0, char({start}), char({end}), '…', 24) \
         FROM message_search WHERE message_search MATCH ",
        start = MARK_START as u32,
        end = MARK_END as u32,
    ));
    qb.push_bind(fts5.as_str()).push(" AND rowid IN (");
    let mut list = qb.separated(", ");
    for r in &rows {
        list.push_bind(r.try_get::<i64, _>(TITLE + 1)?);
    }
    qb.push(")");
    let snippets: std::collections::HashMap<i64, String> = qb
        .build()
        .persistent(false)
        .fetch_all(pool)
        .await?
        .iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect::<Result<_>>()?;
    rows.iter()
        .map(|r| {
            let rowid: i64 = r.try_get(TITLE + 1)?;
            Ok(SearchHit {
                message: message_row(r)?,
                thread_title: r.try_get(TITLE)?,
                snippet: snippets.get(&rowid).cloned().unwrap_or_default(),
            })
        })
        .collect()
}

/// The most index words a French prefix stands for (its most frequent ones).
const PREFIX_WORDS: i64 = 32;

/// Each French prefix `"stem"*` of an FTS5 expression (`search::fts5_expression`) becomes the
/// index's own words that begin with it, `("w1" OR "w2" ...)`, read from the index's vocabulary
/// (`message_search_vocab`, migration 0015): FTS5 merges a prefix's doclists in full before it
/// can return a row (250-370 ms for a stem of a word in 20 % of a million messages), where an
/// `OR` of words is walked newest first and stops after the ranked window, as one word is
/// (docs/search.md, "At scale"). At most [`PREFIX_WORDS`] words, the most frequent; a prefix
/// that begins no word, or whose stem is too short to look up, stays as it is.
async fn expand_prefixes(pool: &Pool<Sqlite>, fts5: &str) -> Result<String> {
    let mut words = std::collections::HashMap::new();
    for stem in prefixes(fts5) {
        words.insert(stem, prefix_words(pool, stem).await?);
    }
    Ok(with_prefix_words(fts5, &words))
}

/// The expression's parts: text outside quotes (even), a quoted word (odd); a prefix word's
/// next part begins with `*`.
fn prefixes(fts5: &str) -> Vec<&str> {
    let parts: Vec<&str> = fts5.split('"').collect();
    parts
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 2 == 1 && parts.get(i + 1).is_some_and(|n| n.starts_with('*')))
        .map(|(_, w)| *w)
        .collect()
}

/// `fts5` with each prefix `"stem"*` replaced by `("w1" OR "w2" ...)` of `words[stem]` (kept
/// as it is when there are none).
fn with_prefix_words(fts5: &str, words: &std::collections::HashMap<&str, Vec<String>>) -> String {
    let parts: Vec<&str> = fts5.split('"').collect();
    let mut out = String::with_capacity(fts5.len());
    let mut skip_star = false;
    for (i, part) in parts.iter().enumerate() {
        if i % 2 == 0 {
            out.push_str(if skip_star { &part[1..] } else { part });
            skip_star = false;
            continue;
        }
        let prefix = parts.get(i + 1).is_some_and(|n| n.starts_with('*'));
        match words.get(part).filter(|w| prefix && !w.is_empty()) {
            Some(ws) => {
                let quoted: Vec<String> = ws.iter().map(|w| format!("\"{w}\"")).collect();
                out.push('(');
                out.push_str(&quoted.join(" OR "));
                out.push(')');
                skip_star = true;
            }
            None => {
                out.push('"');
                out.push_str(part);
                out.push('"');
            }
        }
    }
    out
}

/// The index words that begin with `stem` as the tokenizer writes it (lower case, without
/// diacritics), most frequent first.
async fn prefix_words(pool: &Pool<Sqlite>, stem: &str) -> Result<Vec<String>> {
    use unicode_normalization::{UnicodeNormalization, char::is_combining_mark};
    let bare: String = stem.nfd().filter(|c| !is_combining_mark(*c)).collect();
    // The tokenizer's Porter stemmer also stems the prefix of a prefix query, which may cut
    // its end ("travaill" becomes "travail"): the words are looked up from what the English
    // stemmer (Porter's successor) keeps of it.
    let english = rust_stemmers::Stemmer::create(rust_stemmers::Algorithm::English);
    let stemmed = english.stem(&bare);
    let from: String = bare
        .chars()
        .zip(stemmed.chars())
        .take_while(|(a, b)| a == b)
        .map(|(a, _)| a)
        .collect();
    if from.chars().count() < 3 {
        return Ok(Vec::new());
    }
    // The first string after every word that begins with `from`.
    let mut to = from.clone();
    let Some(last) = to.pop() else {
        return Ok(Vec::new());
    };
    let Some(next) = char::from_u32(last as u32 + 1) else {
        return Ok(Vec::new());
    };
    to.push(next);
    let words: Vec<String> = sqlx::query_scalar(
        "SELECT term FROM message_search_vocab WHERE term >= $1 AND term < $2 \
         ORDER BY doc DESC, term ASC LIMIT $3",
    )
    .persistent(false)
    .bind(from.as_str())
    .bind(to.as_str())
    .bind(PREFIX_WORDS)
    .fetch_all(pool)
    .await?;
    // Index words are letters and digits too; anything else is left out rather than quoted.
    Ok(words
        .into_iter()
        .filter(|w| w.chars().all(char::is_alphanumeric))
        .collect())
}

/// `persistent: false` (a transaction-mode pooler): unnamed statements inside a transaction of
/// their own, like every statement in that mode.
///
/// The cost of a PostgreSQL search is the message row read for each match (the rows of a
/// million messages do not fit in the buffer cache: 25-100 µs each on this machine), so the
/// query is scoped before it runs (docs/search.md, "At scale"): a caller in few threads has
/// them filtered before any row is read (a bitmap of their threads' messages ANDed with the
/// GIN bitmap), and a query expected to match many more of the caller's messages than
/// [`RANKED_WINDOW`] ranks the matches of the latest messages only (a bitmap of `created_at`
/// ANDed with the GIN bitmap), widened until it holds the window.
pub(super) async fn postgres(
    pool: &Pool<Postgres>,
    q: &SearchQuery,
    persistent: bool,
) -> Result<Vec<SearchHit>> {
    let mut tx = pool.begin().await?;
    // Settings of this transaction only, as a transaction-mode pooler requires. No parallel
    // workers: starting them cost more than the whole query (30-60 ms on 2 cores, for a word in
    // 183 of 1,000,000 messages whose index scan took 2 ms). No hash or merge joins: the scope
    // bounds the matches, each checked against the caller's memberships and its thread by two
    // index lookups, where hashing a member of 10,000 threads' memberships and the threads
    // cost 25 ms per query, for 142 matches. No JIT compilation, whose cost the planner's
    // estimates of a frequent word's plan can reach (tens of milliseconds per query). A GIN
    // bitmap of a word in 100,000 messages fits in 16 MB of `work_mem`: in the default 4 MB its
    // pages turn lossy, and every row of them is read and checked again (48 ms against 34 ms).
    sqlx::query(
        "SELECT set_config('max_parallel_workers_per_gather', '0', true), \
                set_config('enable_hashjoin', 'off', true), \
                set_config('enable_mergejoin', 'off', true), set_config('jit', 'off', true), \
                set_config('work_mem', '16MB', true)",
    )
    .persistent(persistent)
    .execute(&mut *tx)
    .await?;
    let need = RANKED_WINDOW + q.offset + q.limit;
    let mut scope = scope::plan(&mut tx, q, need, persistent).await?;
    let rows = loop {
        let rows = postgres_page(&mut tx, q, persistent, &scope, need).await?;
        let matched: i64 = match rows.first() {
            Some(r) => r.try_get(TITLE + 1)?,
            None => 0,
        };
        match scope.widen(matched, need) {
            Some(wider) => scope = wider,
            None => break rows,
        }
    };
    tx.commit().await?;
    rows.iter()
        .map(|r| {
            // The columns, then `matched`, then the snippet.
            let mut hit = hit_row_at(r, TITLE + 2)?;
            hit.thread_title = r.try_get(TITLE)?;
            Ok(hit)
        })
        .collect()
}

/// One page of hits within `scope`; each row also carries how many matches the scope held.
async fn postgres_page(
    tx: &mut sqlx::PgConnection,
    q: &SearchQuery,
    persistent: bool,
    scope: &scope::Scope,
    need: i64,
) -> Result<Vec<sqlx::postgres::PgRow>> {
    let options = format!(
        "StartSel={MARK_START}, StopSel={MARK_END}, MaxWords=30, MinWords=12, \
         MaxFragments=2, FragmentDelimiter=\" … \""
    );
    // `ts_headline` drops what its parser takes for HTML tags: the body's angle brackets are
    // shielded as private-use characters while it runs, then put back.
    let shielded = "replace(replace(h.body, '<', U&'\\E002'), '>', U&'\\E003')";
    // The typed casts tell PostgreSQL what the NULL-able filters are.
    let filters = FILTERS
        .replace("$3 IS NULL", "$3::text IS NULL")
        .replace("$4 IS NULL", "$4::text IS NULL")
        .replace("$5 IS NULL", "$5::text IS NULL")
        .replace("$6 IS NULL", "$6::bigint IS NULL")
        .replace("$7 IS NULL", "$7::bigint IS NULL");
    // Conditions an index can use (the filters above, with their `IS NULL` alternatives, are
    // checked on the rows only): the thread asked for, the caller's threads, the window.
    let mut scoped = String::new();
    if q.thread.is_some() {
        scoped.push_str(" AND m.thread_id = $3");
    } else if scope.by_thread {
        scoped.push_str(
            " AND m.thread_id = ANY(ARRAY(SELECT thread_id FROM thread_members WHERE user_id = $2))",
        );
    }
    if scope.latest.is_some() {
        // Bounds of the newest-first scan itself.
        if q.from.is_some() {
            scoped.push_str(" AND m.created_at >= $6");
        }
        if q.to.is_some() {
            scoped.push_str(" AND m.created_at < $7");
        }
    } else if scope.since.is_some() {
        scoped.push_str(" AND m.created_at >= $11");
    }
    // `ts_match_vq` is `@@` that no index answers: the words are checked on the rows read.
    let matches = if scope.unindexed || scope.latest.is_some() {
        "ts_match_vq(m.search, q.en || q.fr)"
    } else {
        "m.search @@ (q.en || q.fr)"
    };
    let found = if scope.latest.is_some() {
        // Newest first along the `created_at` index (at most $11 messages), the caller's
        // memberships checked as they come, until their $12 latest matches are found; only
        // those are ranked.
        format!(
            "SELECT l.id, l.thread_id, l.created_at, ts_rank(l.search, q.en || q.fr) AS rank \
             FROM q CROSS JOIN (SELECT m.id, m.thread_id, m.created_at, m.search FROM ( \
                 SELECT m.id, m.thread_id, m.created_at, m.search \
                 FROM messages m WHERE TRUE {filters}{scoped} \
                 ORDER BY m.created_at DESC LIMIT $11) m CROSS JOIN q \
               JOIN threads lt ON lt.id = m.thread_id AND lt.deleted_at IS NULL \
               JOIN thread_members lm ON lm.thread_id = m.thread_id AND lm.user_id = $2 \
               WHERE {matches} ORDER BY m.created_at DESC, m.id DESC LIMIT $12) l"
        )
    } else {
        // The matches are found first, from the GIN index (within the scope), and only then
        // checked against the caller's memberships: left to itself the planner, which guesses
        // about 5,700 matches for any word it does not count among its most common ones, would
        // walk every message of a member of 282 threads to find a word's 5 matches (75 ms
        // against 2 ms).
        format!(
            "SELECT m.id, m.thread_id, m.created_at, ts_rank(m.search, q.en || q.fr) AS rank \
             FROM q JOIN messages m ON {matches} WHERE TRUE {filters}{scoped}"
        )
    };
    // Each match in a thread the caller can read and not deleted (a newest-first scan checked
    // it already). `CASE` keeps the membership test a hashed set: as `IN` alone the planner
    // would make it a join, one index lookup per match.
    let readable = if scope.latest.is_some() {
        ""
    } else if scope.hashed {
        "WHERE f.thread_id NOT IN (SELECT id FROM threads WHERE deleted_at IS NOT NULL) \
         AND CASE WHEN f.thread_id IN (SELECT thread_id FROM thread_members WHERE user_id = $2) \
         THEN TRUE END"
    } else {
        "JOIN threads ft ON ft.id = f.thread_id AND ft.deleted_at IS NULL \
         JOIN thread_members tm ON tm.thread_id = f.thread_id AND tm.user_id = $2"
    };
    // The hit's columns without the `tsquery` ones: sqlx looks up a type it does not know with
    // a query of its own between preparing the statement and running it, which drops an
    // unnamed statement (`persistent = false`): "unnamed prepared statement does not exist".
    let outer = HIT_COLUMNS
        .replace("m.", "h.")
        .replace("t.title", "h.title");
    let sql = format!(
        "WITH q AS MATERIALIZED (SELECT websearch_to_tsquery('english'::regconfig, $1) AS en, \
                                        websearch_to_tsquery('french'::regconfig, $1) AS fr), \
         found AS MATERIALIZED ({found}) \
         SELECT {outer}, h.matched, replace(replace(CASE WHEN to_tsvector('english'::regconfig, h.body) @@ h.en \
         THEN ts_headline('english'::regconfig, {shielded}, h.en, $10) \
         ELSE ts_headline('french'::regconfig, {shielded}, h.fr, $10) END, \
         U&'\\E002', '<'), U&'\\E003', '>') \
         FROM (SELECT {HIT_COLUMNS}, q.en, q.fr, p.rank, p.matched FROM ( \
             SELECT f.id, f.rank, f.created_at, count(*) OVER () AS matched FROM found f \
             {readable} ORDER BY f.rank DESC, f.created_at DESC, f.id ASC LIMIT $8 OFFSET $9) p \
           CROSS JOIN q JOIN messages m ON m.id = p.id JOIN threads t ON t.id = m.thread_id) h \
         ORDER BY h.rank DESC, h.created_at DESC, h.id ASC"
    );
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql))
        .persistent(persistent)
        .bind(q.text.as_str())
        .bind(q.user_id.as_str())
        .bind(q.thread.as_deref())
        .bind(q.author.as_deref())
        .bind(q.agent.as_deref())
        .bind(q.from)
        .bind(q.to)
        .bind(q.limit)
        .bind(q.offset)
        .bind(options);
    if let Some(most) = scope.latest {
        query = query.bind(most).bind(need);
    } else if let Some(since) = scope.since {
        query = query.bind(since);
    }
    Ok(query.fetch_all(&mut *tx).await?)
}

/// A hit: the message columns, the title at [`TITLE`], the snippet at `snippet`.
fn hit_row_at<R>(row: &R, snippet: usize) -> Result<SearchHit>
where
    R: Row,
    usize: sqlx::ColumnIndex<R>,
    for<'r> &'r str: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    Ok(SearchHit {
        message: message_row(row)?,
        thread_title: row.try_get(TITLE)?,
        snippet: row.try_get(snippet)?,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::{prefixes, with_prefix_words};

    #[test]
    fn french_prefixes_become_the_index_words_that_begin_with_them() {
        let e = "(\"mangeait\" OR \"mang\"*) AND \"the\" AND (\"pommes\" OR \"pomm\"*)";
        assert_eq!(prefixes(e), ["mang", "pomm"]);
        let words = HashMap::from([
            ("mang", vec!["mang".to_string(), "manger".to_string()]),
            ("pomm", vec![]),
        ]);
        assert_eq!(
            with_prefix_words(e, &words),
            "(\"mangeait\" OR (\"mang\" OR \"manger\")) AND \"the\" AND (\"pommes\" OR \"pomm\"*)"
        );
        assert_eq!(with_prefix_words("\"the\"", &HashMap::new()), "\"the\"");
    }
}
