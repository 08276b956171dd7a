//! The operations tools: `emergence verify` against real servers (healthy, database cut, limits
//! too tight), and `emergence guard` on recorded logs in tests/fixtures/.

use std::{path::PathBuf, process::Output, time::Duration};

use emergence::settings::LimitSettings;
use emergence_ops::verify::{self, Options, Report};
use serde_json::Value;

use crate::support::{TestDb, spawn_app, spawn_app_with, start, test_settings};

const BIN: &str = env!("CARGO_BIN_EXE_emergence");

fn options(address: &str, ws_clients: usize, secs: u64) -> Options {
    let mut o = Options::new(address.parse().expect("server URL"));
    o.ws_clients = ws_clients;
    o.duration = Duration::from_secs(secs);
    o
}

fn failed_names(report: &Report) -> Vec<&'static str> {
    report.failed().iter().map(|c| c.name).collect()
}

#[tokio::test]
async fn verify_passes_every_check_against_a_healthy_server() {
    let app = spawn_app_with(|s| s.limits = LimitSettings::default()).await;

    let report = verify::run(options(&app.address, 5, 2)).await;

    assert!(report.passed(), "{}", report.render());
    assert_eq!(report.exit_code(), 0);
    for seed in [
        verify::WS_ERROR_RATE,
        verify::RATE_LIMITED,
        verify::DB_RECONNECT,
    ] {
        let row = report.check(seed).expect("seed target row");
        assert!(row.seed && row.passed(), "{row:?}");
    }
    assert!(
        report
            .check(verify::DB_RECONNECT)
            .unwrap()
            .value
            .contains("no outages")
    );
    assert!(report.latency.samples > 0 && report.latency.p99_ms.is_some());
    let json = report.to_json();
    assert_eq!(json["passed"], true);
    assert!(json["latency_ms"]["p50"].is_number());
    assert_eq!(app.metric("rate_limited_total").await, 0.0);
}

#[tokio::test]
async fn verify_fails_the_database_target_when_the_database_is_unreachable() {
    // Nothing listens on port 1: the database never comes up.
    let settings = test_settings("postgres://postgres@127.0.0.1:1/x");
    let app = start(settings, TestDb::sqlite(), false).await;
    app.state.db.drop_connections("test").await;

    let report = verify::run(options(&app.address, 2, 1)).await;

    assert!(!report.passed());
    assert_eq!(report.exit_code(), 1, "{}", report.render());
    let failed = failed_names(&report);
    assert!(failed.contains(&verify::DB_RECONNECT), "{failed:?}");
    assert!(failed.contains(&verify::READYZ), "{failed:?}");
    let db = report.check(verify::DB_RECONNECT).unwrap();
    assert!(db.value.contains("db_up 0"), "{db:?}");
    let ready = report.check(verify::READYZ).unwrap();
    assert!(
        ready.value.contains("degraded") && ready.value.contains("db down"),
        "{ready:?}"
    );
    // The liveness probe and the web UI do not depend on the database.
    assert!(report.check(verify::HEALTHZ).unwrap().passed());
    assert!(report.check(verify::WEB_FIRST_LOAD).unwrap().passed());
    assert!(report.render().contains("FAIL  DB reconnection success"));
}

#[tokio::test]
async fn verify_fails_the_429_target_when_the_limits_are_too_tight_for_its_own_traffic() {
    let app = spawn_app_with(|s| {
        s.limits.send_rate_per_sec = 1;
        s.limits.send_burst = 1;
    })
    .await;

    let report = verify::run(options(&app.address, 5, 2)).await;

    assert_eq!(report.exit_code(), 1, "{}", report.render());
    let failed = failed_names(&report);
    assert!(failed.contains(&verify::RATE_LIMITED), "{failed:?}");
    let row = report.check(verify::RATE_LIMITED).unwrap();
    assert!(!row.value.starts_with("seen by verify: 0"), "{row:?}");
    assert!(row.value.contains("rate_limited_total 0 -> "), "{row:?}");
    // Connections themselves were fine: the failure is named where it belongs.
    assert!(report.check(verify::WS_ERROR_RATE).unwrap().passed());
    assert!(app.metric("rate_limited_total{scope=\"send\"}").await > 0.0);
}

#[tokio::test]
async fn the_verify_binary_prints_a_passing_json_report_and_exits_0() {
    let app = spawn_app().await;

    let out = tokio::process::Command::new(BIN)
        .args(["verify", "--url", &app.address, "--json"])
        .args(["--duration", "1", "--ws-clients", "2"])
        .output()
        .await
        .expect("runs the binary");

    let json = stdout_json(&out);
    assert_eq!(out.status.code(), Some(0), "{json:#}");
    assert_eq!(json["passed"], true);
    let checks = json["checks"].as_array().unwrap();
    let names: Vec<&str> = checks.iter().filter_map(|c| c["name"].as_str()).collect();
    for name in [
        verify::WS_ERROR_RATE,
        verify::RATE_LIMITED,
        verify::DB_RECONNECT,
        verify::WEB_FIRST_LOAD,
        verify::CSP,
    ] {
        assert!(names.contains(&name), "{name} missing from {names:?}");
    }
    assert!(
        checks
            .iter()
            .all(|c| c["passed"] == true && c["target"].is_string() && c["value"].is_string())
    );
    assert!(json["latency_ms"]["p50"].is_number());
    assert!(json["latency_ms"]["p99"].is_number());
}

#[tokio::test]
async fn the_verify_binary_exits_2_when_nothing_answers() {
    let out = tokio::process::Command::new(BIN)
        .args(["verify", "--url", "http://127.0.0.1:1", "--json"])
        .output()
        .await
        .expect("runs the binary");

    assert_eq!(out.status.code(), Some(2));
    let json = stdout_json(&out);
    assert_eq!(json["passed"], false);
    assert!(json["error"].as_str().unwrap().contains("cannot reach"));
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn guard(logs: &str) -> (Option<i32>, Value) {
    let out = std::process::Command::new(BIN)
        .args(["guard", "--json", "--logs", logs])
        .output()
        .expect("runs the binary");
    (out.status.code(), stdout_json(&out))
}

fn stdout_json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

#[test]
fn guard_says_ok_for_a_healthy_log() {
    let (code, json) = guard(fixture("guard-healthy.jsonl").to_str().unwrap());

    assert_eq!(code, Some(0), "{json:#}");
    assert_eq!(json["status"], "OK");
    assert_eq!(json["db"]["losses"]["count"], 0);
    assert_eq!(json["db"]["down_at_end"], false);
    assert_eq!(json["panics"]["count"], 0);
    assert_eq!(json["websocket"]["connections"], 30);
    // The one line that is not JSON is counted, not fatal.
    assert_eq!(json["lines"]["unparsed"], 1);
    assert_eq!(json["span"]["minutes"], 10.0);
}

#[test]
fn guard_reads_logs_from_stdin() {
    use std::io::Write;
    let mut child = std::process::Command::new(BIN)
        .args(["guard", "--logs", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("runs the binary");
    let log = std::fs::read(fixture("guard-healthy.jsonl")).unwrap();
    child.stdin.take().unwrap().write_all(&log).unwrap();
    let out = child.wait_with_output().unwrap();

    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("emergence guard: OK"));
}

#[test]
fn guard_says_degraded_for_a_cloud_logging_export_of_an_outage_that_recovered() {
    let (code, json) = guard(
        fixture("guard-outage-recovered.cloud-logging.json")
            .to_str()
            .unwrap(),
    );

    assert_eq!(code, Some(1), "{json:#}");
    assert_eq!(json["status"], "DEGRADED");
    let db = &json["db"];
    assert_eq!(db["losses"]["count"], 1);
    assert_eq!(db["reconnects"]["count"], 1);
    assert_eq!(db["reconnect_success"], 1.0);
    assert_eq!(db["down_at_end"], false);
    // The loss and 14 failed attempts, all within one minute: over the alert's 10/min.
    assert_eq!(db["connection_failures"]["count"], 15);
    assert_eq!(db["connection_failures"]["peak_per_min"], 15);
    assert_eq!(json["http_5xx"]["count"], 2);
    assert_eq!(json["websocket"]["connections"], 24);
    let findings = json["findings"].as_array().unwrap();
    let degraded: Vec<&Value> = findings
        .iter()
        .filter(|f| f["level"] == "DEGRADED")
        .collect();
    assert_eq!(degraded.len(), 1, "{findings:#?}");
    assert!(
        degraded[0]["recommendation"]
            .as_str()
            .unwrap()
            .contains("docs/operations.md#emergencedbconnectionfailures")
    );
}

#[test]
fn guard_says_critical_for_an_outage_that_never_recovers_and_a_panic() {
    let (code, json) = guard(
        fixture("guard-outage-unrecovered-panic.jsonl")
            .to_str()
            .unwrap(),
    );

    assert_eq!(code, Some(2), "{json:#}");
    assert_eq!(json["status"], "CRITICAL");
    assert_eq!(json["db"]["down_at_end"], true);
    assert_eq!(json["db"]["still_down"][0]["failed_attempts"], 16);
    assert_eq!(json["db"]["reconnect_success"], 0.0);
    assert_eq!(json["panics"]["count"], 1);
    assert!(
        json["panics"]["first"]
            .as_str()
            .unwrap()
            .contains("Option::unwrap()")
    );
    assert_eq!(json["lines"]["unparsed"], 3);
    let critical = json["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["level"] == "CRITICAL")
        .count();
    assert!(critical >= 2, "{json:#}");
}

#[test]
fn guard_exits_3_when_the_input_cannot_be_read() {
    let (code, json) = guard("/nonexistent/emergence.log");
    assert_eq!(code, Some(3));
    assert_eq!(json["status"], "UNREADABLE");
}
