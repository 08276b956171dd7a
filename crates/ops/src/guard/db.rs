//! What the log says about the database: losses, failed connection attempts (including those
//! the server did not log: it logs attempts 1, 2, 4, 8...), reconnections, and outages still
//! open when the log ends, followed per instance.

use std::collections::{BTreeMap, HashMap};

use super::{Series, input::Entry};

/// What the log says about the database.
#[derive(Debug, Clone, Default)]
pub struct DbSummary {
    /// "database connection lost".
    pub losses: Series,
    /// "database reconnected after N attempts in T ms".
    pub reconnects: Series,
    /// Failed operations and connection attempts, including attempts the server did not log
    /// (it logs attempts 1, 2, 4, 8...; the next success or the highest attempt tells how many).
    pub failures: Series,
    /// Still down at the end of the log: (instance, since, failed attempts, last cause).
    pub down_at_end: Vec<(String, Option<f64>, u64, String)>,
    /// Causes of losses and failed attempts, with counts.
    pub causes: BTreeMap<String, u64>,
}

impl DbSummary {
    /// Reconnections over losses (capped at 1); `None` without losses.
    pub fn reconnect_success(&self) -> Option<f64> {
        (self.losses.count > 0)
            .then(|| (self.reconnects.count as f64 / self.losses.count as f64).min(1.0))
    }
}

/// Follows the database's state per instance while the log is replayed.
#[derive(Debug, Default)]
pub(super) struct DbTracker {
    db: DbSummary,
    /// Outages in progress, per instance.
    outages: HashMap<String, Outage>,
    /// `database operation failed` events (servers that write one per counted failure).
    operation_failures: Series,
    /// `database connection lost` lines, counted as failures only for logs without the events
    /// above (older servers).
    loss_failures: Series,
}

/// An outage in progress on one instance.
#[derive(Debug)]
struct Outage {
    since: Option<f64>,
    logged_failures: u64,
    max_attempt: u64,
    /// The highest `failed` field seen: the outage's failed attempts so far (exact; servers
    /// that write it).
    max_failed: Option<u64>,
    last_cause: String,
}

/// The outage in progress on the entry's instance, begun by this entry if there is none.
fn outage<'a>(outages: &'a mut HashMap<String, Outage>, e: &Entry) -> &'a mut Outage {
    outages.entry(e.instance.clone()).or_insert(Outage {
        since: e.time,
        logged_failures: 0,
        max_attempt: 0,
        max_failed: None,
        last_cause: String::new(),
    })
}

/// Add `n` failures spread evenly over `(from, to)`: attempts the server did not log.
pub(super) fn spread(series: &mut Series, n: u64, from: Option<f64>, to: Option<f64>) {
    for k in 1..=n {
        let t = match (from, to) {
            (Some(f), Some(t)) => Some(f + (t - f) * k as f64 / (n + 1) as f64),
            _ => to.or(from),
        };
        series.add(t);
    }
}

impl DbTracker {
    /// Follow the database's state on the entry's instance.
    pub(super) fn observe(&mut self, e: &Entry) {
        let (db, outages) = (&mut self.db, &mut self.outages);
        if e.message.starts_with("database operation failed") {
            self.operation_failures.add(e.time);
            if let Some(c) = e.field_str("cause").filter(|c| !c.is_empty()) {
                *db.causes.entry(c.to_string()).or_default() += 1;
            }
            return;
        }
        let m = e.message.as_str();
        let cause = e
            .field_str("cause")
            .or_else(|| e.field_str("error"))
            .unwrap_or("")
            .to_string();
        let note_cause = |db: &mut DbSummary| {
            if !cause.is_empty() {
                *db.causes.entry(cause.clone()).or_default() += 1;
            }
        };
        if m.starts_with("database connection lost") {
            db.losses.add(e.time);
            self.loss_failures.add(e.time);
            // A server that writes `database operation failed` noted this cause there already.
            if self.operation_failures.count == 0 {
                note_cause(db);
            }
            outage(outages, e).last_cause = cause;
        } else if m.starts_with("database connection attempt failed") {
            db.failures.add(e.time);
            note_cause(db);
            let o = outage(outages, e);
            o.logged_failures += 1;
            o.max_attempt = o.max_attempt.max(e.field_u64("attempt").unwrap_or(0));
            if let Some(f) = e.field_u64("failed") {
                o.max_failed = Some(o.max_failed.unwrap_or(0).max(f));
            }
            o.last_cause = cause;
        } else if m.starts_with("database reconnected") || m.starts_with("database connected") {
            let attempts = e
                .field_u64("attempts")
                .or_else(|| number_after(m, "after "))
                .unwrap_or(1);
            if m.starts_with("database reconnected") {
                db.reconnects.add(e.time);
            }
            if let Some(o) = outages.remove(&e.instance) {
                // Exact when the server says how many attempts failed; else every attempt but
                // the one that connected.
                let failed = e
                    .field_u64("failed")
                    .unwrap_or_else(|| attempts.saturating_sub(1).max(o.max_attempt));
                let unlogged = failed.saturating_sub(o.logged_failures);
                spread(&mut db.failures, unlogged, o.since, e.time);
            } else {
                spread(&mut db.failures, attempts.saturating_sub(1), e.time, e.time);
            }
        }
    }

    /// The summary, once the log has ended at `end`: outages still open are down at the end,
    /// with the attempts they did not log spread over them.
    pub(super) fn finish(self, end: Option<f64>) -> DbSummary {
        let mut db = self.db;
        // One source of truth: a server that writes an event per failed operation is counted
        // by those events; an older one by its loss lines.
        let ops = if self.operation_failures.count > 0 {
            self.operation_failures
        } else {
            self.loss_failures
        };
        db.failures.merge(ops);
        let mut down: Vec<_> = self.outages.into_iter().collect();
        down.sort_by(|x, y| x.0.cmp(&y.0));
        for (instance, o) in down {
            let failed = o.max_failed.unwrap_or(o.max_attempt);
            let unlogged = failed.saturating_sub(o.logged_failures);
            spread(&mut db.failures, unlogged, o.since, end);
            let attempts = o.logged_failures.max(o.max_attempt);
            db.down_at_end
                .push((instance, o.since, attempts, o.last_cause));
        }
        db
    }
}

/// The number right after `prefix` in `s` ("reconnected after 9 attempts" -> 9).
fn number_after(s: &str, prefix: &str) -> Option<u64> {
    let rest = &s[s.find(prefix)? + prefix.len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}
