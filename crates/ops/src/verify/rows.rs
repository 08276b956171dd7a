//! The rows of the report: health and readiness, the three seed targets, the database row, and
//! message delivery. Each row blames only what it measured.

use std::{fmt::Write as _, sync::atomic::Ordering};

use reqwest::{StatusCode, Url};
use serde_json::{Value, json};

use super::{
    Ctx, DATABASE, DB_RECONNECT, HEALTHZ, MESSAGE_DELIVERY, RATE_LIMITED, READYZ, WS_ERROR_RATE,
    chat::Load,
    error_chain,
    probe::Refused,
    report::{Check, Latency},
    scrape::Scrape,
};

pub(super) async fn check_healthz(ctx: &Ctx) -> Result<Check, String> {
    let target = "200 {\"status\":\"ok\"}";
    let r = ctx
        .send(ctx.http.get(ctx.url("/healthz")))
        .await
        .map_err(|e| format!("cannot reach {}: {}", ctx.url("/healthz"), error_chain(&e)))?;
    let status = r.status();
    let body: Value = r.json().await.unwrap_or(Value::Null);
    let ok = status == StatusCode::OK && body == json!({"status": "ok"});
    Ok(Check::new(
        HEALTHZ,
        target,
        format!("{} {body}", status.as_u16()),
        ok,
    ))
}

/// The readiness row, and what `/readyz` said of the database.
pub(super) async fn check_readyz(ctx: &Ctx) -> (Check, Option<String>) {
    let target = "200, status ready";
    match ctx.send(ctx.http.get(ctx.url("/readyz"))).await {
        Err(e) => (Check::new(READYZ, target, error_chain(&e), false), None),
        Ok(r) => {
            let status = r.status();
            let body: Value = r.json().await.unwrap_or(Value::Null);
            let field = |k: &str| body[k].as_str().unwrap_or("?").to_string();
            let value = format!(
                "{} {} (db {}, broker {})",
                status.as_u16(),
                field("status"),
                field("db"),
                field("broker")
            );
            let ready = status == StatusCode::OK && body["status"] == "ready";
            let db = body["db"].as_str().map(str::to_string);
            (Check::new(READYZ, target, value, ready), db)
        }
    }
}

/// Connections that failed to open (upgrade, `welcome`, a ping/pong) or broke before the end of
/// the run, over connections attempted.
pub(super) fn ws_error_rate_check(load: &Load, db: &DbSigns) -> Check {
    let target = "< 1%";
    if let Some(e) = &load.setup_error {
        let hint = "; give --token to measure WebSockets during a database outage";
        return not_measured(WS_ERROR_RATE, target, e, db, hint).seed();
    }
    let failed = load.failures.len();
    let rate = failed as f64 / load.attempts.max(1) as f64;
    let mut value = format!(
        "{:.2}% ({failed} of {} connections failed)",
        rate * 100.0,
        load.attempts
    );
    let ping = Latency::of(&load.pings);
    if let (Some(p50), Some(p99)) = (ping.p50_ms, ping.p99_ms) {
        let _ = write!(
            value,
            "; welcome + ping/pong on {}, p50 {p50:.1} ms, p99 {p99:.1} ms",
            ping.samples
        );
    }
    if load.db_down_seen {
        value.push_str("; measured while the database is down");
    }
    if let Some(first) = load.failures.first() {
        let _ = write!(value, "; first: {first}");
    }
    let ok = load.attempts > 0 && rate < 0.01;
    Check::new(WS_ERROR_RATE, target, value, ok).seed()
}

pub(super) fn rate_limited_check(
    ctx: &Ctx,
    load: &Load,
    before: Option<&Result<Scrape, String>>,
    after: Option<&Result<Scrape, String>>,
) -> Check {
    let http = ctx.http_429.load(Ordering::Relaxed);
    let frames = load.rate_limited_frames;
    let seen = http + frames;
    let mut value =
        format!("seen by verify: {seen} ({http} HTTP 429, {frames} rate_limited frames)");
    let mut counters_ok = true;
    match (before, after) {
        (Some(Ok(b)), Some(Ok(a))) => {
            let _ = write!(
                value,
                "; rate_limited_total {} -> {}, http_requests_total{{status=\"429\"}} {} -> {}",
                b.rate_limited, a.rate_limited, b.http_429, a.http_429
            );
            counters_ok = a.rate_limited <= b.rate_limited && a.http_429 <= b.http_429;
        }
        (None, _) | (_, None) => value.push_str("; metrics skipped"),
        (Some(Err(e)), _) | (_, Some(Err(e))) => {
            let _ = write!(value, "; metrics unavailable ({e})");
        }
    }
    Check::new(RATE_LIMITED, "0", value, seen == 0 && counters_ok).seed()
}

pub(super) fn db_reconnect_check(
    after: Option<&Result<Scrape, String>>,
    metrics_url: &Url,
) -> Check {
    let target = "> 99%";
    let scrape = match after {
        None => {
            return Check::skipped(
                DB_RECONNECT,
                target,
                "skipped (--skip-metrics): read emergence:db_reconnect_success_ratio:rate15m",
            )
            .seed();
        }
        Some(Err(e)) => {
            return Check::new(
                DB_RECONNECT,
                target,
                format!(
                    "not measured: metrics at {metrics_url}: {e} (use --metrics-url, or --skip-metrics)"
                ),
                false,
            )
            .seed();
        }
        Some(Ok(s)) => s,
    };
    let up = scrape.db_up >= 1.0;
    let (ratio, mut value) = if scrape.reconnect_attempts <= 0.0 && up {
        (1.0, "100% (no outages)".to_string())
    } else if scrape.reconnect_attempts <= 0.0 {
        (1.0, "no reconnection recorded yet".to_string())
    } else {
        let ratio = (scrape.reconnect_success / scrape.reconnect_attempts).min(1.0);
        (
            ratio,
            format!(
                "{:.1}% ({} of {} reconnections)",
                ratio * 100.0,
                scrape.reconnect_success,
                scrape.reconnect_attempts
            ),
        )
    };
    if up {
        let _ = write!(value, ", db_up 1");
    } else {
        let _ = write!(value, "; db_up 0: the database is down now");
    }
    Check::new(DB_RECONNECT, target, value, up && ratio > 0.99).seed()
}

/// Every send persisted and fanned out to every subscriber with no error frame; while the
/// database is down (degraded mode), every send answered as the contract says (`queued`, or
/// refused `unavailable`) and whatever was persisted fanned out.
pub(super) fn delivery_check(load: &Load, db: &DbSigns) -> Check {
    let target = "all persisted, all fanned out, 0 error frames";
    if let Some(e) = &load.setup_error {
        return not_measured(MESSAGE_DELIVERY, target, e, db, "");
    }
    if let Some(e) = &load.thread_error {
        let hint = "; give --thread (a thread of the probe identity) to measure sends during a \
                    database outage";
        return not_measured(MESSAGE_DELIVERY, target, e, db, hint);
    }
    let degraded = load.db_down_seen;
    let expected = load.persisted * load.subscribers as u64;
    let errors: u64 = load.error_frames.values().sum();
    let unavailable = load.error_frames.get("unavailable").copied().unwrap_or(0);
    let mut value = String::new();
    if degraded {
        value.push_str("database down (degraded mode): ");
    }
    let _ = write!(
        value,
        "{} sent, {} persisted, {} of {expected} deliveries",
        load.sent, load.persisted, load.delivered
    );
    if load.queued > 0 {
        let _ = write!(
            value,
            ", {} queued (stored and fanned out once the database is back)",
            load.queued
        );
    }
    if !load.refused.is_empty() {
        let _ = write!(value, ", refused: {}", counts(&load.refused));
    }
    if load.unanswered > 0 {
        let _ = write!(value, ", {} unanswered", load.unanswered);
    }
    let _ = write!(value, "; {} subscribed", load.subscribers);
    if load.subscribe_deferred > 0 {
        let _ = write!(
            value,
            ", {} subscriptions deferred (unavailable while the database is down)",
            load.subscribe_deferred
        );
    }
    if let Some(first) = load.subscribe_failures.first() {
        let _ = write!(
            value,
            ", {} subscriptions failed (first: {first})",
            load.subscribe_failures.len()
        );
    }
    if errors > 0 {
        let _ = write!(value, "; error frames: {}", counts(&load.error_frames));
    }
    let fanned_out = load.delivered >= expected && load.subscribe_failures.is_empty();
    let ok = if degraded {
        load.sent > 0 && load.unanswered == 0 && errors == unavailable && fanned_out
    } else {
        load.sent > 0 && load.persisted == load.sent && errors == 0 && fanned_out
    };
    Check::new(MESSAGE_DELIVERY, target, value, ok)
}

/// "code x2, other x1".
fn counts(by: &std::collections::BTreeMap<String, u64>) -> String {
    let parts: Vec<String> = by.iter().map(|(code, n)| format!("{code} x{n}")).collect();
    parts.join(", ")
}

/// What verify saw of the database: `/readyz`, `db_up`, and what WebSockets were told.
pub(super) struct DbSigns {
    down: Vec<&'static str>,
    up: Vec<&'static str>,
}

impl DbSigns {
    pub(super) fn new(
        readyz_db: Option<String>,
        after: Option<&Result<Scrape, String>>,
        load: &Load,
    ) -> DbSigns {
        let mut signs = DbSigns {
            down: Vec::new(),
            up: Vec::new(),
        };
        match readyz_db.as_deref() {
            Some("down") => signs.down.push("/readyz db down"),
            Some("up") => signs.up.push("/readyz db up"),
            _ => {}
        }
        if let Some(Ok(s)) = after {
            if s.db_up >= 1.0 {
                signs.up.push("db_up 1");
            } else {
                signs.down.push("db_up 0");
            }
        }
        if load.db_down_seen {
            signs.down.push("WebSockets told db down");
        } else if !load.pings.is_empty() {
            signs.up.push("WebSockets told db up");
        }
        signs
    }

    pub(super) fn is_down(&self) -> bool {
        !self.down.is_empty()
    }

    /// The database being down explains this refusal (a 503).
    fn explains(&self, r: &Refused) -> bool {
        self.is_down() && r.unavailable
    }
}

/// A row that could not be measured: skipped when the database being down is why (the
/// database rows fail instead), failed otherwise.
fn not_measured(
    name: &'static str,
    target: &str,
    why: &Refused,
    db: &DbSigns,
    hint: &str,
) -> Check {
    if db.explains(why) {
        let value = format!(
            "not measured: {} (the database is down: see the database rows){hint}",
            why.why
        );
        Check::skipped(name, target, value)
    } else {
        Check::new(name, target, format!("not measured: {}", why.why), false)
    }
}

/// Up or down, from every sign verify saw, and what its being down kept verify from doing.
pub(super) fn database_check(db: &DbSigns, load: &Load) -> Check {
    let target = "up";
    if !db.is_down() {
        let value = if db.up.is_empty() {
            "no sign of an outage".to_string()
        } else {
            format!("up ({})", db.up.join(", "))
        };
        return Check::new(DATABASE, target, value, true);
    }
    let mut value = format!("down: {}", db.down.join(", "));
    for refused in [&load.setup_error, &load.thread_error]
        .into_iter()
        .flatten()
        .filter(|r| db.explains(r))
    {
        let _ = write!(value, "; {}", refused.why);
    }
    if load.setup_error.is_none() && !load.pings.is_empty() {
        value.push_str("; WebSockets were measured without it");
    }
    Check::new(DATABASE, target, value, false)
}
