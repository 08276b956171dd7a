//! How a PostgreSQL search is scoped before it runs (docs/search.md, "At scale"): from the
//! query's matches (the planner's estimate for a word it counts among its most common, else an
//! exact count read from the GIN index alone), the caller's share of the threads and the
//! statistics of `messages.created_at`, decide how the caller's latest matches are found: newest
//! first along the `created_at` index when they are dense, else from the GIN index, with the
//! caller's threads filtered first when they are few, and within a window of the latest messages
//! (widened until it holds at least the caller's `RANKED_WINDOW` matches) when they are many.

use sqlx::{PgConnection, Row};

use super::Result;
use crate::db::lifecycle::SearchQuery;

/// A caller in at most this many threads has them filtered before any message row is read,
/// when the query's words are frequent enough: a bitmap of their threads' messages (one index
/// range per thread, 3-8 ms for 285 threads of 100 messages on this machine) costs less than
/// reading the rows of every match in threads they cannot read.
const BY_THREAD_MAX_THREADS: i64 = 500;

/// The matches (in every thread) from which a caller in few threads has them filtered first:
/// below it, reading every match (8-16 µs each) costs less than the bitmap of their threads.
const BY_THREAD_MIN_MATCHES: f64 = 1000.0;

/// The planner's estimate of a query's matches from which it is trusted. Below it the planner
/// does not know the words (they are not among its most common elements: it estimates any of
/// them at about 5,000 of a million messages, for a word in 142 as for one in 8,000), and the
/// matches are counted instead.
const MIN_ESTIMATE: f64 = 8000.0;

/// The share of the messages that are the caller's matches from which they are found newest
/// first along the `created_at` index (each message read costs 1-2 µs there, against 0.3 µs per
/// match to build the GIN bitmap of a frequent word and 8-16 µs per match read from it: a word
/// in 31 % of a million messages took 13 ms newest first, 100 ms from the index; one in 4.3 %,
/// 39 ms against 36 ms).
const LATEST_MIN_DENSITY: f64 = 0.05;

/// Matches from which a caller filtered by thread has the words checked on their threads'
/// messages rather than ANDed with the GIN index (whose bitmap of a word in 31 % of a million
/// messages cost 40-120 ms, more than reading the caller's window of messages; for a word in
/// 11 % the two cost about the same).
const BY_THREAD_UNINDEXED_MATCHES: f64 = 200_000.0;

/// The most threads a caller's memberships (and the deleted threads) may hold for the matches
/// to be checked against them as hashed sets, built once per query (5 ms for 10,000
/// memberships), rather than by two index lookups per match (8-13 µs each match: 17 ms for
/// 1,357 matches). Beyond it the sets might not fit in `work_mem`, and PostgreSQL would run
/// the set's query again for each match.
const HASHED_MAX_THREADS: i64 = 20_000;

/// How far a window overshoots what it must hold, against the errors of the planner's
/// estimate, and against the spread of counted matches over time.
const MARGIN_ESTIMATED: f64 = 1.3;
const MARGIN_COUNTED: f64 = 1.3;

/// How many times the expected number of messages a newest-first scan may read before it gives
/// up for the GIN index (the caller's matches may be sparser among the latest messages).
const LATEST_OVERSCAN: f64 = 4.0;

/// What a search reads.
#[derive(Debug, Clone)]
pub(super) struct Scope {
    /// Only the caller's threads' messages (an index condition, on top of the membership join
    /// every query has).
    pub by_thread: bool,
    /// The words are checked on each message read, not ANDed from the GIN index.
    pub unindexed: bool,
    /// The matches are checked against the caller's memberships and the deleted threads as two
    /// hashed sets (else by index lookups per match).
    pub hashed: bool,
    /// Newest first along `created_at`: at most this many messages are read, and the caller's
    /// latest matches among them are ranked. `None`: from the GIN index.
    pub latest: Option<i64>,
    /// Only messages created at or after this instant; `None`: every message.
    pub since: Option<i64>,
    /// The share of the messages, latest first, that `since` keeps (1: all).
    share: f64,
    /// `messages.created_at` percentiles (the planner's histogram), ascending.
    bounds: Vec<i64>,
    /// The window's margin (how sure the count of matches is).
    margin: f64,
}

impl Scope {
    fn everything() -> Scope {
        Scope {
            by_thread: false,
            unindexed: false,
            hashed: false,
            latest: None,
            since: None,
            share: 1.0,
            bounds: Vec::new(),
            margin: MARGIN_ESTIMATED,
        }
    }

    /// The scope that keeps the latest `share` of the messages (`None` once that is all).
    fn with_share(mut self, share: f64) -> Scope {
        self.share = share.min(1.0);
        self.since = None;
        if self.share < 1.0 && self.bounds.len() > 1 {
            let last = self.bounds.len() - 1;
            let at = ((1.0 - self.share) * last as f64).floor() as usize;
            // The first bound is the oldest of a sample, not of the table: from it, take all.
            if at > 0 {
                self.since = Some(self.bounds[at.min(last)]);
            }
        }
        self
    }

    /// After a page that held `matched` matches: the scope to run again when it held fewer than
    /// `need` (a wider window; the GIN index after a newest-first scan that read its limit),
    /// or `None` when the page stands.
    pub(super) fn widen(&self, matched: i64, need: i64) -> Option<Scope> {
        if self.latest.is_some() {
            // The scan stops at `need` matches: fewer means it read its limit first.
            if matched >= need {
                return None;
            }
            return Some(Scope {
                latest: None,
                ..self.clone()
            });
        }
        self.since?;
        if matched >= need {
            return None;
        }
        let grow = if matched <= 0 {
            8.0
        } else {
            (self.margin * need as f64 / matched as f64).max(2.0)
        };
        Some(self.clone().with_share(self.share * grow))
    }
}

/// Decide the scope of `q`, whose page needs the caller's `need` latest matches ranked (the
/// statements run in the search's transaction).
pub(super) async fn plan(
    tx: &mut PgConnection,
    q: &SearchQuery,
    need: i64,
    persistent: bool,
) -> Result<Scope> {
    // One thread asked for: its own index condition already bounds what is read.
    if q.thread.is_some() {
        return Ok(Scope::everything());
    }
    let row = sqlx::query(
        "SELECT (SELECT count(*) FROM thread_members WHERE user_id = $1), \
                (SELECT reltuples::float8 FROM pg_class WHERE oid = 'threads'::regclass), \
                (SELECT reltuples::float8 FROM pg_class WHERE oid = 'messages'::regclass), \
                (SELECT histogram_bounds::text::bigint[] FROM pg_stats \
                 WHERE schemaname = current_schema() AND tablename = 'messages' \
                   AND attname = 'created_at'), \
                (SELECT count(*) FROM threads WHERE deleted_at IS NOT NULL)",
    )
    .persistent(persistent)
    .bind(q.user_id.as_str())
    .fetch_one(&mut *tx)
    .await?;
    let member_of: i64 = row.try_get(0)?;
    let threads: Option<f64> = row.try_get(1)?;
    let messages: Option<f64> = row.try_get(2)?;
    let bounds: Option<Vec<i64>> = row.try_get(3)?;
    let deleted: i64 = row.try_get(4)?;
    let estimate = estimate(tx, q, persistent).await?;
    // A word the planner does not know is counted: the GIN index alone, no message read.
    let (matches, margin) = if estimate >= MIN_ESTIMATE {
        (estimate, MARGIN_ESTIMATED)
    } else {
        (
            count(tx, q, persistent).await?.unwrap_or(estimate),
            MARGIN_COUNTED,
        )
    };
    // A table never analysed has `reltuples` -1: the caller then counts as reading everything,
    // and nothing is scanned newest first.
    let threads = threads.unwrap_or(0.0).max(member_of as f64).max(1.0);
    let share_of_threads = member_of as f64 / threads;
    let readable = matches * share_of_threads;
    let need = need as f64;
    let by_thread = member_of <= BY_THREAD_MAX_THREADS && matches >= BY_THREAD_MIN_MATCHES;
    let scope = Scope {
        by_thread,
        bounds: bounds.unwrap_or_default(),
        margin,
        ..Scope::everything()
    };
    // The hashed sets cost about 0.5 µs per membership to build, the lookups 8-13 µs per match
    // checked (every match in the scope, in every thread unless the caller's are filtered).
    let checked = |share: f64| if by_thread { readable } else { matches } * share;
    let hashed = |share: f64| {
        member_of <= HASHED_MAX_THREADS
            && deleted <= HASHED_MAX_THREADS
            && checked(share) * 10.0 > member_of as f64 * 0.5
    };
    if readable <= margin * need {
        return Ok(Scope {
            hashed: hashed(1.0),
            ..scope
        });
    }
    let share = margin * need / readable;
    let mut windowed = scope.with_share(share);
    windowed.hashed = hashed(share);
    // The caller's window of their threads' messages is read rather than the word's GIN bitmap.
    windowed.unindexed =
        windowed.by_thread && windowed.since.is_some() && matches >= BY_THREAD_UNINDEXED_MATCHES;
    // Dense: the caller's latest matches are among the latest few messages, found newest first
    // (the window stays for the case the scan reads its limit first). Not with a filter on the
    // author, which the density does not account for.
    let density = match messages {
        Some(n) if n > 0.0 => readable / n,
        _ => 0.0,
    };
    if density >= LATEST_MIN_DENSITY
        && !windowed.by_thread
        && q.author.is_none()
        && q.agent.is_none()
    {
        return Ok(Scope {
            latest: Some((LATEST_OVERSCAN * need / density).ceil() as i64),
            ..windowed
        });
    }
    Ok(windowed)
}

/// The planner's estimate of the messages that match the query, in every thread: the larger of
/// its two configurations' (0 when a plan cannot be read). Not the estimate of their `||`: the
/// planner adds the two halves' frequencies, which doubled it for most words, whose English and
/// French forms are the same lexeme (`'leav' | 'leav'`) or appear together (`'problèm' |
/// 'problem'`, both written for each "problèmes").
async fn estimate(tx: &mut PgConnection, q: &SearchQuery, persistent: bool) -> Result<f64> {
    let mut most: f64 = 0.0;
    for config in ["english", "french"] {
        let sql = format!(
            "EXPLAIN SELECT 1 FROM messages \
             WHERE search @@ websearch_to_tsquery('{config}'::regconfig, $1)"
        );
        let plan: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .persistent(persistent)
            .bind(q.text.as_str())
            .fetch_all(&mut *tx)
            .await?;
        most = most.max(plan.first().map(|line| rows_of(line)).unwrap_or(0.0));
    }
    Ok(most)
}

/// How many messages match the query, in every thread, from the GIN index alone: the rows its
/// bitmap scan returned, read from `EXPLAIN ANALYZE` of a scan that stops at the first message
/// (so one message is read). Index-only counting is what no SQL statement offers for a GIN
/// index: `count(*)` reads every matching row. `None` when the plan did not use the index.
async fn count(tx: &mut PgConnection, q: &SearchQuery, persistent: bool) -> Result<Option<f64>> {
    // With `LIMIT 1` the planner would walk the table until a first match; only the bitmap scan
    // is left to it, for this statement only.
    let saved: (String, String) = sqlx::query_as(
        "SELECT current_setting('enable_seqscan'), current_setting('enable_indexscan') \
         FROM (SELECT set_config('enable_seqscan', 'off', true), \
                      set_config('enable_indexscan', 'off', true)) AS s",
    )
    .persistent(persistent)
    .fetch_one(&mut *tx)
    .await?;
    let counted: std::result::Result<Vec<String>, sqlx::Error> = sqlx::query_scalar(
        "EXPLAIN (ANALYZE, TIMING OFF, SUMMARY OFF) SELECT 1 FROM messages WHERE search @@ \
         (websearch_to_tsquery('english'::regconfig, $1) \
          || websearch_to_tsquery('french'::regconfig, $1)) LIMIT 1",
    )
    .persistent(persistent)
    .bind(q.text.as_str())
    .fetch_all(&mut *tx)
    .await;
    sqlx::query(
        "SELECT set_config('enable_seqscan', $1, true), set_config('enable_indexscan', $2, true)",
    )
    .persistent(persistent)
    .bind(saved.0.as_str())
    .bind(saved.1.as_str())
    .execute(&mut *tx)
    .await?;
    Ok(counted?
        .iter()
        .find(|line| line.contains("Bitmap Index Scan on messages_search"))
        .and_then(|line| actual_rows_of(line)))
}

/// The `rows=` of a plan line of `EXPLAIN`'s text format.
fn rows_of(line: &str) -> f64 {
    line.split_once(" rows=")
        .and_then(|(_, rest)| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0.0)
}

/// The actual `rows=` of a plan line of `EXPLAIN ANALYZE`'s text format.
fn actual_rows_of(line: &str) -> Option<f64> {
    line.split_once("(actual ")
        .and_then(|(_, rest)| rest.split_once("rows="))
        .and_then(|(_, rest)| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_estimate_and_the_count_are_read_from_the_plan_line() {
        let line = "Bitmap Heap Scan on messages  (cost=172.55..42521.55 rows=16071 width=0)";
        assert_eq!(rows_of(line), 16071.0);
        assert_eq!(rows_of("Result  (cost=0.00..0.01 width=4)"), 0.0);
        let analyzed = "  ->  Bitmap Index Scan on messages_search  \
                        (cost=0.00..68.50 rows=4867 width=0) (actual rows=4414 loops=1)";
        assert_eq!(rows_of(analyzed), 4867.0);
        assert_eq!(actual_rows_of(analyzed), Some(4414.0));
        let timed = "Bitmap Index Scan on messages_search  (cost=0.00..57.55 rows=5006 width=0) \
                     (actual time=0.146..0.146 rows=695 loops=1)";
        assert_eq!(actual_rows_of(timed), Some(695.0));
        assert_eq!(actual_rows_of(line), None);
    }

    #[test]
    fn a_window_widens_until_it_holds_what_the_page_needs_then_takes_everything() {
        let bounds: Vec<i64> = (0..=100).collect();
        let scope = Scope {
            bounds,
            ..Scope::everything()
        }
        .with_share(0.25);
        assert_eq!(scope.since, Some(75));
        assert!(scope.widen(1020, 1020).is_none(), "it held enough");
        let wider = scope.widen(900, 1020).expect("it held too few");
        assert!(wider.since.expect("still a window") < 75);
        assert!(
            wider.widen(0, 1020).expect("wider").since.is_none(),
            "then everything"
        );
        assert!(
            Scope::everything().widen(0, 1020).is_none(),
            "everything stands"
        );
    }

    #[test]
    fn a_newest_first_scan_short_of_matches_gives_way_to_the_index() {
        let scope = Scope {
            latest: Some(40_000),
            ..Scope::everything()
        };
        assert!(scope.widen(1020, 1020).is_none(), "it found them all");
        let then = scope.widen(300, 1020).expect("it read its limit first");
        assert!(then.latest.is_none() && then.since.is_none());
        assert!(then.widen(300, 1020).is_none(), "every match was ranked");
        let windowed = Scope {
            latest: Some(40_000),
            ..Scope {
                bounds: (0..=100).collect(),
                ..Scope::everything()
            }
            .with_share(0.25)
        };
        let then = windowed.widen(300, 1020).expect("it read its limit first");
        assert_eq!(
            (then.latest, then.since),
            (None, Some(75)),
            "the window it had"
        );
    }
}
