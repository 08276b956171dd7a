//! How a PostgreSQL search is scoped before it runs (docs/search.md, "At scale"): from the
//! planner's estimate of the query's matches, the caller's share of the threads and the
//! statistics of `messages.created_at`, decide whether the caller's threads are filtered by an
//! index before any message row is read, and whether only the matches of the latest messages
//! are ranked (a window widened until it holds at least the caller's `RANKED_WINDOW` matches).

use sqlx::{PgConnection, Row};

use super::Result;
use crate::db::lifecycle::SearchQuery;

/// A caller in at most this many threads has them filtered before any message row is read,
/// when the query's words are frequent: a bitmap of their threads' messages (one index range
/// per thread, about 25 ms for 281 threads of 100 messages on this machine) costs less than
/// reading the rows of every match in threads they cannot read.
const BY_THREAD_MAX_THREADS: i64 = 500;

/// The planner's estimate of a query's matches from which it is scoped at all: the caller's
/// threads filtered first, or a window. Below it the planner does not know the words (they are
/// not among its most common elements: it estimates any of them at about 5,700 of a million
/// messages, for a word in 142 as for one in 2,000), and reading every match costs less than
/// a scope, let alone a window that would have to be widened.
const MIN_ESTIMATE: f64 = 8000.0;

/// How far the window overshoots what it must hold, against the estimate's errors.
const MARGIN: f64 = 2.0;

/// What a search reads.
#[derive(Debug, Clone)]
pub(super) struct Scope {
    /// Only the caller's threads' messages (an index condition, on top of the membership join
    /// every query has).
    pub by_thread: bool,
    /// Only messages created at or after this instant; `None`: every message.
    pub since: Option<i64>,
    /// The share of the messages, latest first, that `since` keeps (1: all).
    share: f64,
    /// `messages.created_at` percentiles (the planner's histogram), ascending.
    bounds: Vec<i64>,
}

impl Scope {
    fn everything() -> Scope {
        Scope {
            by_thread: false,
            since: None,
            share: 1.0,
            bounds: Vec::new(),
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

    /// After a page of a windowed query that held `matched` matches: the wider scope to run
    /// again when it held fewer than `need`, or `None` when the page stands.
    pub(super) fn widen(&self, matched: i64, need: i64) -> Option<Scope> {
        self.since?;
        if matched >= need {
            return None;
        }
        let grow = if matched <= 0 {
            8.0
        } else {
            (MARGIN * need as f64 / matched as f64).max(2.0)
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
                (SELECT histogram_bounds::text::bigint[] FROM pg_stats \
                 WHERE schemaname = current_schema() AND tablename = 'messages' \
                   AND attname = 'created_at')",
    )
    .persistent(persistent)
    .bind(q.user_id.as_str())
    .fetch_one(&mut *tx)
    .await?;
    let member_of: i64 = row.try_get(0)?;
    let threads: Option<f64> = row.try_get(1)?;
    let bounds: Option<Vec<i64>> = row.try_get(2)?;
    let estimate = estimate(tx, q, persistent).await?;
    // A table never analysed has `reltuples` -1: the caller then counts as reading everything.
    let threads = threads.unwrap_or(0.0).max(member_of as f64).max(1.0);
    let readable = estimate * (member_of as f64 / threads);
    let need = need as f64;
    let scope = Scope {
        by_thread: member_of <= BY_THREAD_MAX_THREADS && estimate >= MIN_ESTIMATE,
        since: None,
        share: 1.0,
        bounds: bounds.unwrap_or_default(),
    };
    Ok(if estimate >= MIN_ESTIMATE && readable > MARGIN * need {
        scope.with_share(MARGIN * need / readable)
    } else {
        scope
    })
}

/// The planner's estimate of how many messages match the query, in every thread (0 when its
/// plan cannot be read: the query is then not scoped).
async fn estimate(tx: &mut PgConnection, q: &SearchQuery, persistent: bool) -> Result<f64> {
    let plan: Vec<String> = sqlx::query_scalar(
        "EXPLAIN SELECT 1 FROM messages WHERE search @@ \
         (websearch_to_tsquery('english'::regconfig, $1) \
          || websearch_to_tsquery('french'::regconfig, $1))",
    )
    .persistent(persistent)
    .bind(q.text.as_str())
    .fetch_all(&mut *tx)
    .await?;
    Ok(plan.first().map(|line| rows_of(line)).unwrap_or(0.0))
}

/// The `rows=` of a plan line of `EXPLAIN`'s text format.
fn rows_of(line: &str) -> f64 {
    line.split_once(" rows=")
        .and_then(|(_, rest)| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_estimate_is_read_from_the_plan_line() {
        let line = "Bitmap Heap Scan on messages  (cost=172.55..42521.55 rows=16071 width=0)";
        assert_eq!(rows_of(line), 16071.0);
        assert_eq!(rows_of("Result  (cost=0.00..0.01 width=4)"), 0.0);
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
}
