//! The outcome of a verify run: one [`Check`] (row) per target, the latencies measured, notes,
//! and its two forms (the table and `--json`).

use std::fmt::Write as _;

use serde_json::{Value, json};

/// A check's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Fail,
    /// Not measured, and not this row's fault: the operator asked so (`--skip-metrics`), or the
    /// database is down and the row cannot be measured without it (the database rows fail
    /// instead). Does not fail the run.
    Skip,
}

/// One row of the report.
#[derive(Debug, Clone)]
pub struct Check {
    pub name: &'static str,
    pub target: String,
    pub value: String,
    pub verdict: Verdict,
    /// One of the three seed targets.
    pub seed: bool,
}

impl Check {
    pub(super) fn new(
        name: &'static str,
        target: impl Into<String>,
        value: impl Into<String>,
        ok: bool,
    ) -> Check {
        Check {
            name,
            target: target.into(),
            value: value.into(),
            verdict: if ok { Verdict::Pass } else { Verdict::Fail },
            seed: false,
        }
    }

    pub(super) fn seed(mut self) -> Check {
        self.seed = true;
        self
    }

    pub(super) fn skipped(
        name: &'static str,
        target: impl Into<String>,
        why: impl Into<String>,
    ) -> Check {
        Check {
            verdict: Verdict::Skip,
            ..Check::new(name, target, why, true)
        }
    }

    pub fn passed(&self) -> bool {
        self.verdict != Verdict::Fail
    }
}

/// Latency percentiles: message delivery (send to the first subscriber's receipt of the
/// `message` frame), or a WebSocket ping/pong round trip.
#[derive(Debug, Clone, Default)]
pub struct Latency {
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    /// Messages measured.
    pub samples: usize,
}

/// The outcome of a run.
#[derive(Debug, Clone)]
pub struct Report {
    pub url: String,
    pub checks: Vec<Check>,
    pub latency: Latency,
    /// WebSocket round trips: an app-level ping to its pong, once per connection after
    /// `welcome`.
    pub ws_ping: Latency,
    /// Things the operator should know that are not checks (e.g. a slowed-down send rate).
    pub notes: Vec<String>,
    /// Set when the deployment could not be reached at all: nothing was checked.
    pub unreachable: Option<String>,
}

impl Report {
    /// Everything that was checked passed.
    pub fn passed(&self) -> bool {
        self.unreachable.is_none() && self.checks.iter().all(Check::passed)
    }

    /// The checks that failed.
    pub fn failed(&self) -> Vec<&Check> {
        self.checks.iter().filter(|c| !c.passed()).collect()
    }

    /// The row with this name.
    pub fn check(&self, name: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.name == name)
    }

    /// 0 when everything passed, 1 when a check failed, 2 when nothing could be checked.
    pub fn exit_code(&self) -> u8 {
        if self.unreachable.is_some() {
            2
        } else if self.passed() {
            0
        } else {
            1
        }
    }

    /// The machine-readable form printed by `--json`.
    pub fn to_json(&self) -> Value {
        let checks: Vec<Value> = self
            .checks
            .iter()
            .map(|c| {
                let mut v = json!({
                    "name": c.name,
                    "target": c.target,
                    "value": c.value,
                    "passed": c.passed(),
                    "seed_target": c.seed,
                });
                if c.verdict == Verdict::Skip {
                    v["skipped"] = true.into();
                }
                v
            })
            .collect();
        let mut v = json!({
            "url": self.url,
            "passed": self.passed(),
            "checks": checks,
            "latency_ms": {
                "p50": self.latency.p50_ms,
                "p99": self.latency.p99_ms,
                "samples": self.latency.samples,
            },
            "ws_ping_ms": {
                "p50": self.ws_ping.p50_ms,
                "p99": self.ws_ping.p99_ms,
                "samples": self.ws_ping.samples,
            },
            "notes": self.notes,
        });
        if let Some(e) = &self.unreachable {
            v["error"] = e.clone().into();
        }
        v
    }

    /// The human-readable table.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "emergence verify {}\n", self.url);
        if let Some(e) = &self.unreachable {
            let _ = writeln!(out, "UNREACHABLE: {e}\nNothing could be checked.");
            return out;
        }
        let name_w = self.checks.iter().map(|c| c.name.len()).max().unwrap_or(0);
        let target_w = self
            .checks
            .iter()
            .map(|c| c.target.chars().count())
            .max()
            .unwrap_or(0);
        for (title, seed) in [("Seed targets", true), ("Other checks", false)] {
            let _ = writeln!(out, "{title}");
            for c in self.checks.iter().filter(|c| c.seed == seed) {
                let verdict = match c.verdict {
                    Verdict::Pass => "PASS",
                    Verdict::Fail => "FAIL",
                    Verdict::Skip => "SKIP",
                };
                let _ = writeln!(
                    out,
                    "  {verdict}  {:name_w$}  {:target_w$}  {}",
                    c.name, c.target, c.value
                );
            }
            out.push('\n');
        }
        match (self.latency.p50_ms, self.latency.p99_ms) {
            (Some(p50), Some(p99)) => {
                let _ = writeln!(
                    out,
                    "Message delivery latency (send to first receipt): p50 {p50:.1} ms, p99 {p99:.1} ms over {} messages",
                    self.latency.samples
                );
            }
            _ => {
                let _ = writeln!(out, "Message delivery latency: not measured");
            }
        }
        if let (Some(p50), Some(p99)) = (self.ws_ping.p50_ms, self.ws_ping.p99_ms) {
            let _ = writeln!(
                out,
                "WebSocket ping/pong round trip: p50 {p50:.1} ms, p99 {p99:.1} ms over {} connections",
                self.ws_ping.samples
            );
        }
        for note in &self.notes {
            let _ = writeln!(out, "Note: {note}");
        }
        let failed = self.failed();
        if failed.is_empty() {
            let _ = writeln!(out, "\nPASSED: all {} checks", self.checks.len());
        } else {
            let names: Vec<&str> = failed.iter().map(|c| c.name).collect();
            let _ = writeln!(
                out,
                "\nFAILED: {} of {} checks: {}",
                failed.len(),
                self.checks.len(),
                names.join(", ")
            );
        }
        out
    }
}

/// Nearest-rank percentile of sorted values.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

impl Latency {
    /// p50 and p99 of `samples`.
    pub fn of(samples: &[std::time::Duration]) -> Latency {
        let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
        ms.sort_by(f64::total_cmp);
        Latency {
            p50_ms: percentile(&ms, 0.50),
            p99_ms: percentile(&ms, 0.99),
            samples: ms.len(),
        }
    }
}
