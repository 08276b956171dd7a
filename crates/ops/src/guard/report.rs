//! The two forms of an [`Analysis`]: the JSON object printed by `--json` and the human summary.

use std::fmt::Write as _;

use serde_json::{Value, json};

use super::{
    Analysis, DB_FAILURES_PER_MIN, RATE_LIMITED_PER_MIN, Series, Status, Tally, WS_ERROR_RATIO,
    WS_MIN_CONNECTIONS, findings::span_text, input::format_time,
};

pub(super) fn minutes(a: &Analysis) -> f64 {
    match (a.from, a.to) {
        (Some(f), Some(t)) => ((t - f) / 60.0).max(1.0),
        _ => 1.0,
    }
}

pub(super) fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn round2_ratio(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

impl Tally {
    fn to_json(&self, minutes: f64) -> Value {
        let mut v = self.series.to_json(minutes);
        v["source"] = self.source.as_str().into();
        v["by"] = json!(self.by);
        v
    }
}

impl Analysis {
    /// The machine-readable form printed by `--json`.
    pub fn to_json(&self) -> Value {
        let minutes = minutes(self);
        let mut db_failures = self.db.failures.to_json(minutes);
        db_failures["threshold_per_min"] = DB_FAILURES_PER_MIN.into();
        let mut rate_limited = self.rate_limited.to_json(minutes);
        rate_limited["threshold_per_min"] = RATE_LIMITED_PER_MIN.into();
        let down: Vec<Value> = self
            .db
            .down_at_end
            .iter()
            .map(|(instance, since, attempts, cause)| {
                json!({"instance": instance, "since": format_time(*since), "failed_attempts": attempts, "cause": cause})
            })
            .collect();
        let ws = &self.websocket;
        let worst = ws.worst_window().map(|w| {
            json!({
                "from": format_time(Some(w.start)),
                "connections": w.connections,
                "errors": w.errors,
                "error_rate": round2_ratio(w.ratio),
            })
        });
        json!({
            "status": self.status().as_str(),
            "lines": {"total": self.lines, "parsed": self.parsed, "unparsed": self.unparsed},
            "span": {
                "from": self.from.map(|t| format_time(Some(t))),
                "to": self.to.map(|t| format_time(Some(t))),
                "minutes": round2(match (self.from, self.to) { (Some(f), Some(t)) => (t - f) / 60.0, _ => 0.0 }),
            },
            "db": {
                "losses": self.db.losses.to_json(minutes),
                "reconnects": self.db.reconnects.to_json(minutes),
                "reconnect_success": self.db.reconnect_success().map(round2_ratio),
                "connection_failures": db_failures,
                "down_at_end": !self.db.down_at_end.is_empty(),
                "still_down": down,
            },
            "rate_limited": rate_limited,
            "http_5xx": self.http_5xx.to_json(minutes),
            "websocket": {
                "source": ws.source.as_str(),
                "connections": ws.connections.count,
                "outcomes": ws.outcomes,
                "reasons": ws.reasons,
                "errors": ws.errors.to_json(minutes),
                "error_rate": ws.error_rate().map(round2_ratio),
                "worst_5min": worst,
                "threshold": WS_ERROR_RATIO,
                "min_connections": WS_MIN_CONNECTIONS,
            },
            "panics": {
                "count": self.panics.count,
                "per_min": round2(self.panics.count as f64 / minutes),
                "first": self.first_panic,
            },
            "findings": self.findings.iter().map(|f| json!({
                "level": f.level.as_str(),
                "what": f.what,
                "recommendation": f.recommendation,
            })).collect::<Vec<_>>(),
        })
    }

    /// The human summary.
    pub fn render(&self) -> String {
        let minutes = minutes(self);
        let per_min = |s: &Series| {
            format!(
                "{:>6}  {:>7.2}/min  peak {}/min",
                s.count,
                s.count as f64 / minutes,
                s.peak_per_minute()
            )
        };
        let mut out = String::new();
        let _ = writeln!(out, "emergence guard: {}\n", self.status().as_str());
        let _ = writeln!(
            out,
            "{} lines ({} parsed, {} unparsed), {} to {} ({})\n",
            self.lines,
            self.parsed,
            self.unparsed,
            format_time(self.from),
            format_time(self.to),
            span_text(self)
        );
        let success = match self.db.reconnect_success() {
            Some(r) => format!("{:.0}%", r * 100.0),
            None => "n/a (no losses)".into(),
        };
        let ws = &self.websocket;
        let ws_rate = match ws.error_rate() {
            Some(r) => format!("{:.1}% of {} connections", r * 100.0, ws.connections.count),
            None => "n/a (no connections in the log)".into(),
        };
        let outcomes = if ws.outcomes.is_empty() {
            String::new()
        } else {
            let parts: Vec<String> = ws
                .outcomes
                .iter()
                .map(|(k, n)| format!("{k} {n}"))
                .collect();
            format!(" ({})", parts.join(", "))
        };
        let rows = [
            ("DB connection losses", per_min(&self.db.losses)),
            (
                "DB reconnects",
                format!("{}  success {success}", per_min(&self.db.reconnects)),
            ),
            ("DB connection failures", per_min(&self.db.failures)),
            ("429 / rate limited", per_min(&self.rate_limited.series)),
            ("5xx", per_min(&self.http_5xx.series)),
            (
                "WebSocket errors",
                format!("{}  {ws_rate}{outcomes}", per_min(&ws.errors)),
            ),
            ("Panics", per_min(&self.panics)),
        ];
        for (name, value) in rows {
            let _ = writeln!(out, "  {name:<24}{value}");
        }
        if !self.db.down_at_end.is_empty() {
            let _ = writeln!(out, "  {:<24}DOWN at the end of the log", "Database");
        }
        out.push('\n');
        if self.findings.is_empty() {
            let _ = writeln!(out, "No findings: every rate is under its alert threshold.");
        }
        for f in &self.findings {
            let level = match f.level {
                Status::Ok => "note",
                other => other.as_str(),
            };
            let _ = writeln!(out, "[{level}] {}\n    -> {}", f.what, f.recommendation);
        }
        out
    }
}
