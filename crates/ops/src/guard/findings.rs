//! Judging the numbers against the alert thresholds: one [`Finding`] per thing worth telling,
//! each with its level and a recommendation naming its runbook.

use std::collections::BTreeMap;

use super::{
    Analysis, DB_FAILURES_PER_MIN, Finding, RATE_LIMITED_PER_MIN, RECONNECT_SUCCESS, RUNBOOK,
    Source, Status, WS_ERROR_RATIO, WS_MIN_CONNECTIONS, input::format_time,
};

pub(super) fn span_text(a: &Analysis) -> String {
    let m = match (a.from, a.to) {
        (Some(f), Some(t)) => (t - f) / 60.0,
        _ => 0.0,
    };
    if m < 1.0 {
        format!("{:.0} s", m * 60.0)
    } else {
        format!("{m:.0} min")
    }
}

pub(super) fn top_causes(causes: &BTreeMap<String, u64>) -> String {
    let mut list: Vec<(&String, &u64)> = causes.iter().collect();
    list.sort_by(|x, y| y.1.cmp(x.1));
    list.iter()
        .take(3)
        .map(|(c, n)| format!("\"{c}\" x{n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Judge the numbers against the alert thresholds.
pub(super) fn findings(a: &Analysis) -> Vec<Finding> {
    let mut out = Vec::new();
    let span = span_text(a);
    let db_runbook = format!("see {RUNBOOK}#emergencedbconnectionfailures");
    let causes = top_causes(&a.db.causes);
    let causes = if causes.is_empty() {
        String::new()
    } else {
        format!(" (causes: {causes})")
    };

    if a.panics.count > 0 {
        out.push(Finding {
            level: Status::Critical,
            what: format!(
                "{} panic(s); first: {}",
                a.panics.count,
                a.first_panic.as_deref().unwrap_or("?")
            ),
            recommendation: format!(
                "a bug crashed a task or the process: keep these logs, open an issue with the panic \
                 message, and roll back if it began with a deploy; see {RUNBOOK}#roll-back"
            ),
        });
    }
    for (instance, since, attempts, cause) in &a.db.down_at_end {
        let on = if instance.is_empty() {
            String::new()
        } else {
            format!(" on instance {instance}")
        };
        out.push(Finding {
            level: Status::Critical,
            what: format!(
                "database still down at the end of the log{on}: down since {}, {attempts} connection attempts failed{}",
                format_time(*since),
                if cause.is_empty() { String::new() } else { format!(", last cause \"{cause}\"") }
            ),
            recommendation: format!(
                "check the database now (Cloud SQL instance state, the DATABASE_URL secret, the Cloud SQL \
                 connector); messages are queued in memory meanwhile, so do not restart instances; {db_runbook}"
            ),
        });
    }
    let db_peak = a.db.failures.peak_per_minute();
    if db_peak as f64 > DB_FAILURES_PER_MIN {
        let level = if a.db.down_at_end.is_empty() {
            Status::Degraded
        } else {
            Status::Critical
        };
        let ended = if a.db.down_at_end.is_empty() {
            "; the database came back"
        } else {
            ""
        };
        out.push(Finding {
            level,
            what: format!(
                "database lost {} time(s) in {span}: {} connection failures, peaking at {db_peak}/min \
                 (threshold {DB_FAILURES_PER_MIN}/min){causes}{ended}",
                a.db.losses.count, a.db.failures.count
            ),
            recommendation: format!(
                "check Cloud SQL maintenance events and max_connections (instances x 8, x 2 during a \
                 deploy), and whether the DATABASE_URL secret changed; {db_runbook}"
            ),
        });
    } else if a.db.losses.count > 0 {
        out.push(Finding {
            level: Status::Ok,
            what: format!(
                "database lost {} time(s) in {span}: {} connection failures, peaking at {db_peak}/min{causes}",
                a.db.losses.count, a.db.failures.count
            ),
            recommendation: format!("check Cloud SQL maintenance / max_connections; {db_runbook}"),
        });
    }
    if let Some(ratio) = a.db.reconnect_success()
        && ratio < RECONNECT_SUCCESS
    {
        out.push(Finding {
            level: Status::Degraded,
            what: format!(
                "only {} of {} database losses ended in a reconnection ({:.0}%, target > 99%)",
                a.db.reconnects.count,
                a.db.losses.count,
                ratio * 100.0
            ),
            recommendation: format!(
                "an outage that never reconnected means an instance restarted or is still down: \
                 look for restarts around the losses and check the database; {db_runbook}"
            ),
        });
    }
    out.extend(websocket_finding(a));
    let rl_peak = a.rate_limited.series.peak_per_minute();
    if a.rate_limited.count() > 0 {
        let level = if rl_peak as f64 > RATE_LIMITED_PER_MIN {
            Status::Degraded
        } else {
            Status::Ok
        };
        out.push(Finding {
            level,
            what: format!(
                "{} rate-limited answers (429 / rate_limited){} in {span}, peak {rl_peak}/min \
                 (threshold {RATE_LIMITED_PER_MIN}/min, target 0)",
                a.rate_limited.count(),
                breakdown(&a.rate_limited.by, "scope")
            ),
            recommendation: format!(
                "see which scope (auth / send / ws_connect ...) in rate_limited_total; many users \
                 limited at once means a wrong client IP: EMERGENCE_TRUSTED_PROXIES must be 1 behind \
                 Cloud Run; see {RUNBOOK}#emergenceratelimited429"
            ),
        });
    }
    if a.http_5xx.count() > 0 {
        let during = if a.db.losses.count > 0 || !a.db.down_at_end.is_empty() {
            format!("503s while the database is down are expected; {db_runbook}")
        } else {
            format!(
                "look at the ERROR \"internal error\" lines around them; see {RUNBOOK}#runbooks"
            )
        };
        out.push(Finding {
            level: Status::Ok,
            what: format!(
                "{} 5xx answers{} in {span}, peak {}/min",
                a.http_5xx.count(),
                breakdown(&a.http_5xx.by, "status"),
                a.http_5xx.series.peak_per_minute()
            ),
            recommendation: during,
        });
    }
    if a.unparsed > 0 {
        out.push(Finding {
            level: Status::Ok,
            what: format!(
                "{} of {} lines were not JSON log entries",
                a.unparsed, a.lines
            ),
            recommendation: "they were only searched for panics; set EMERGENCE_LOG_FORMAT=json \
                             (or log.format) for complete logs"
                .into(),
        });
    }
    out
}

/// The WebSocket SLI: rejected or ended in error, over all connections, judged like the alert
/// (over 5 % with at least 20 connections in its 5-minute window).
fn websocket_finding(a: &Analysis) -> Option<Finding> {
    let ws = &a.websocket;
    if ws.errors.count == 0 {
        return None;
    }
    let overall = if ws.connections.count > 0 {
        format!(
            " of {} connections ({:.1}%)",
            ws.connections.count,
            ws.error_rate().unwrap_or(0.0) * 100.0
        )
    } else {
        String::new()
    };
    let (level, window) = match (ws.source, ws.worst_window()) {
        (Source::Events, Some(w)) => (
            if w.ratio > WS_ERROR_RATIO {
                Status::Critical
            } else {
                Status::Ok
            },
            format!(
                "; worst 5 min from {}: {} of {} ({:.1}%)",
                format_time(Some(w.start)),
                w.errors,
                w.connections,
                w.ratio * 100.0
            ),
        ),
        (Source::Events, None) => (
            Status::Ok,
            format!("; never {WS_MIN_CONNECTIONS} connections in 5 min, not judged"),
        ),
        // Older logs: the whole log is one window.
        _ => {
            let judged = ws.connections.count >= WS_MIN_CONNECTIONS;
            let over = ws.error_rate().is_some_and(|r| r > WS_ERROR_RATIO);
            let level = if judged && over {
                Status::Critical
            } else {
                Status::Ok
            };
            (level, String::new())
        }
    };
    let outcomes = breakdown(&ws.outcomes, "outcome");
    let reasons = top_causes(&ws.reasons);
    let reasons = if reasons.is_empty() {
        String::new()
    } else {
        format!("; {reasons}")
    };
    Some(Finding {
        level,
        what: format!(
            "{} WebSocket error(s){outcomes}{overall}{window} (threshold 5% with at least \
             {WS_MIN_CONNECTIONS} connections in 5 min, target < 1%){reasons}",
            ws.errors.count
        ),
        recommendation: format!(
            "rejected connections point at rate limiting or expired tokens, errors at restarts, \
             memory, client bugs (1007 / 1009) or Cloud Run request timeouts; see \
             {RUNBOOK}#emergencewebsocketerrorrate"
        ),
    })
}

/// " (auth 3, send 2)" for a breakdown, "" without one.
fn breakdown(by: &BTreeMap<String, u64>, what: &str) -> String {
    if by.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = by.iter().map(|(k, n)| format!("{k} {n}")).collect();
    format!(" (by {what}: {})", parts.join(", "))
}
