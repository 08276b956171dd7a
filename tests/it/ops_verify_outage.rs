//! `emergence verify` blames the database, and only the database, while PostgreSQL is cut off:
//! with a pre-provisioned probe identity it measures real WebSockets (welcome, ping/pong, sends
//! acknowledged `queued`); without one it skips what it cannot measure instead of failing it.
//! Also: the probe account is used instead of registering throwaway users.

use std::{collections::BTreeSet, time::Duration};

use emergence_ops::{
    Secret,
    verify::{self, Options, ProbeUser, Report, Verdict},
};
use serde_json::Value;

use crate::support::{
    TestApp, TestDb, TestUser,
    fault_proxy::{FaultProxy, Mode},
    spawn_app, start, test_settings,
};

const BIN: &str = env!("CARGO_BIN_EXE_emergence");

fn options(app: &TestApp, ws_clients: usize, secs: u64) -> Options {
    let mut o = Options::new(app.address.parse().expect("server URL"));
    o.ws_clients = ws_clients;
    o.duration = Duration::from_secs(secs);
    o
}

fn failed(report: &Report) -> BTreeSet<&'static str> {
    report.failed().iter().map(|c| c.name).collect()
}

fn database_rows() -> BTreeSet<&'static str> {
    verify::DATABASE_ROWS.into_iter().collect()
}

/// A PostgreSQL-backed instance behind a fault proxy, with a probe account and its thread
/// provisioned while the database was up, then the database cut off (connections refused).
/// The pre-provisioned probe identity.
struct Probe {
    user: TestUser,
    thread: String,
}

async fn instance_with_the_database_cut() -> (TestApp, FaultProxy, Probe) {
    let db = TestDb::postgres().await;
    let proxy = FaultProxy::start("127.0.0.1:5432".parse().unwrap()).await;
    let app = start(test_settings(&db.url_via(proxy.port)), db, true).await;
    let user = app.register("probe").await;
    let thread = app.create_thread(&user, "verify probe").await;
    proxy.set(Mode::Refuse);
    proxy.reset_all();
    for _ in 0..200 {
        if !app.state.db.is_up() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(!app.state.db.is_up(), "the database is seen down");
    (app, proxy, Probe { user, thread })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_during_a_database_outage_fails_only_the_database_rows_and_measures_websockets() {
    let (app, _proxy, probe) = instance_with_the_database_cut().await;

    // The binary, configured through the environment as a deploy pipeline would.
    let out = tokio::process::Command::new(BIN)
        .args(["verify", "--url", &app.address, "--json"])
        .args(["--duration", "2", "--ws-clients", "5"])
        .env("EMERGENCE_VERIFY_TOKEN", &probe.user.token)
        .env("EMERGENCE_VERIFY_THREAD", &probe.thread)
        .output()
        .await
        .expect("runs the binary");
    let json: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "no JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert_eq!(out.status.code(), Some(1), "{json:#}");
    let checks = json["checks"].as_array().unwrap();
    let row = |name: &str| {
        checks
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("no row {name}: {json:#}"))
            .clone()
    };
    let failing: BTreeSet<&str> = checks
        .iter()
        .filter(|c| c["passed"] == false)
        .filter_map(|c| c["name"].as_str())
        .collect();
    eprintln!(
        "verify during the outage: {}",
        checks
            .iter()
            .map(|c| format!(
                "{} {}: {}",
                if c["passed"] == true { "PASS" } else { "FAIL" },
                c["name"],
                c["value"]
            ))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_eq!(failing, database_rows(), "{json:#}");

    // The WebSocket rows passed, measured, not skipped.
    let ws = row(verify::WS_ERROR_RATE);
    assert_eq!(ws["passed"], true);
    assert!(ws.get("skipped").is_none(), "{ws}");
    let value = ws["value"].as_str().unwrap();
    assert!(
        value.starts_with("0.00% (0 of 5 connections failed)"),
        "{value}"
    );
    assert!(
        value.contains("measured while the database is down"),
        "{value}"
    );
    assert_eq!(json["ws_ping_ms"]["samples"], 5, "{json:#}");
    assert!(json["ws_ping_ms"]["p99"].as_f64().unwrap() < 1000.0);
    let delivery = row(verify::MESSAGE_DELIVERY);
    assert_eq!(delivery["passed"], true, "{delivery}");
    assert!(delivery.get("skipped").is_none(), "{delivery}");
    let value = delivery["value"].as_str().unwrap();
    assert!(
        value.starts_with("database down (degraded mode): "),
        "{value}"
    );
    let sent: u64 = value
        .split("mode): ")
        .nth(1)
        .and_then(|v| v.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no sent count in {value}"));
    assert!(sent >= 5, "every client sent at least once: {value}");
    assert!(
        value.contains(&format!("{sent} queued (stored and fanned out once")),
        "every send was acknowledged queued: {value}"
    );
    assert!(!value.contains("unanswered"), "{value}");
    // The messages were really accepted: they wait for the database.
    assert!(app.metric("db_pending_writes").await >= sent as f64);

    let database = row(verify::DATABASE);
    let value = database["value"].as_str().unwrap();
    assert!(value.contains("/readyz db down"), "{value}");
    assert!(value.contains("db_up 0"), "{value}");
    assert!(value.contains("WebSockets told db down"), "{value}");
    assert!(
        value.contains("WebSockets were measured without it"),
        "{value}"
    );

    // Without the token, the probe account cannot log in (that needs the database): the
    // WebSocket rows cannot be measured, and say why, without failing.
    let mut o = options(&app, 3, 1);
    o.probe_user = Some(ProbeUser {
        username: "probe".into(),
        password: Secret::new("correct horse battery"),
    });
    let report = verify::run(o).await;
    eprintln!("{}", report.render());
    assert_eq!(failed(&report), database_rows(), "{}", report.render());
    for name in [verify::WS_ERROR_RATE, verify::MESSAGE_DELIVERY] {
        let row = report.check(name).unwrap();
        assert_eq!(row.verdict, Verdict::Skip, "{row:?}");
        assert!(
            row.value
                .contains("logging in the probe user probe: HTTP 503"),
            "{row:?}"
        );
        assert!(row.value.contains("the database is down"), "{row:?}");
    }
    let database = report.check(verify::DATABASE).unwrap();
    assert!(
        database
            .value
            .contains("logging in the probe user probe: HTTP 503"),
        "{database:?}"
    );
}

#[tokio::test]
async fn verify_logs_in_with_the_probe_account_instead_of_registering_users() {
    let app = spawn_app().await;
    let probe = app.register("probe").await;
    let users_before = count_users(&app).await;

    let mut o = options(&app, 5, 1);
    o.probe_user = Some(ProbeUser {
        username: "probe".into(),
        password: Secret::new("correct horse battery"),
    });
    let report = verify::run(o).await;

    assert!(report.passed(), "{}", report.render());
    assert_eq!(count_users(&app).await, users_before, "no user registered");
    assert!(
        report
            .notes
            .iter()
            .any(|n| n == "probe identity: probe user probe"),
        "{:?}",
        report.notes
    );
    // verify's own session was logged out; the account's other sessions were not.
    let me = app.get("/api/me", Some(&probe.token)).await;
    assert_eq!(me.status(), 200);
}

#[tokio::test]
async fn a_refused_token_falls_back_to_the_probe_account_and_fails_without_one() {
    let app = spawn_app().await;
    app.register("probe").await;

    let mut o = options(&app, 2, 1);
    o.token = Some(Secret::new("v1.not.a-token"));
    let report = verify::run(o.clone()).await;
    let ws = report.check(verify::WS_ERROR_RATE).unwrap();
    assert_eq!(ws.verdict, Verdict::Fail, "{ws:?}");
    assert!(ws.value.contains("the probe token was refused"), "{ws:?}");

    o.probe_user = Some(ProbeUser {
        username: "probe".into(),
        password: Secret::new("correct horse battery"),
    });
    let report = verify::run(o).await;
    assert!(report.passed(), "{}", report.render());
    assert!(
        report
            .notes
            .iter()
            .any(|n| n.starts_with("the probe token was refused")),
        "{:?}",
        report.notes
    );
}

async fn count_users(app: &TestApp) -> i64 {
    let dir = app.db().sqlite_dir().expect("a SQLite test database");
    let url = format!("sqlite://{}/emergence.db", dir.display());
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM users")
        .fetch_one(&pool)
        .await
        .unwrap();
    pool.close().await;
    n
}
