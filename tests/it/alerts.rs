//! The project's alert rules, run by a real Prometheus (`/usr/bin/prometheus`, started by each
//! test on loopback) against a live instance: each alert fires for its fault and nothing fires
//! on a healthy instance. The rules are deploy/prometheus/alerts.yml with only the `for:`
//! durations shortened (support/prometheus.rs); scrapes and evaluations run every second.
//! PostgreSQL faults go through the test's fault proxy: refused, reset and blackholed
//! connections. Every wait is bounded.

use std::time::{Duration, Instant};

use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::support::{
    TestApp, TestDb,
    fault_proxy::{FaultProxy, Mode},
    prometheus::Prometheus,
    spawn_app_with, start, test_settings,
    ws::break_protocol,
};

/// Generous bound for an alert to fire: a few scrapes and evaluations plus the short `for:`.
const FIRE_WITHIN: Duration = Duration::from_secs(30);

const DB_ALERTS: &[&str] = &[
    "EmergenceDbConnectionFailures",
    "EmergenceDbDown",
    "EmergenceDbPendingWritesGrowing",
];

/// Alerts unrelated to a database fault: they must stay silent during one.
const NOT_DB_ALERTS: &[&str] = &[
    "EmergenceInstanceDown",
    "EmergenceRateLimited429",
    "EmergenceWebSocketErrorRate",
];

/// No alert firing for `during` (checked every 250 ms).
async fn assert_silent(prom: &Prometheus, during: Duration) {
    let until = Instant::now() + during;
    while Instant::now() < until {
        let firing = prom.firing().await;
        assert!(firing.is_empty(), "nothing may fire here: {firing:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The value of a single-sample query at the timestamp of `metric`'s latest sample: there,
/// `increase()` does not extrapolate past the last sample, and, because every series starts at
/// 0 before its first event, not before the first either, so it is the exact count.
async fn at_last_sample(prom: &Prometheus, metric: &str, q: &str) -> f64 {
    let t = prom
        .value(&format!("max(timestamp({metric}))"))
        .await
        .expect("the metric has samples");
    let samples = prom.query_at(q, t).await;
    assert_eq!(samples.len(), 1, "{q}: {samples:?}");
    samples[0].value
}

/// A PostgreSQL-backed instance behind the fault proxy, with a user, a thread and a short
/// query timeout (1 s) so a blackhole is noticed quickly. The connection timeout stays at its
/// default (2 s): longer than the 1 s an attempt lives while hedged attempts replace each other,
/// which is what hid refused connections from the failure counter.
async fn pg_app_behind_proxy() -> (TestApp, FaultProxy, crate::support::TestUser, String) {
    let db = TestDb::postgres().await;
    let proxy = FaultProxy::start("127.0.0.1:5432".parse().unwrap()).await;
    let mut settings = test_settings(&db.url_via(proxy.port));
    settings.database.query_timeout_ms = 1_000;
    let app = start(settings, db, true).await;
    let alice = app.register("alice").await;
    let thread = app.create_thread(&alice, "alerts").await;
    (app, proxy, alice, thread)
}

/// Steady chat traffic: one message POSTed every 200 ms until `stop` (202 queued while the
/// database is down, which is what makes the instance probe the database eagerly).
fn keep_posting(app: &TestApp, token: &str, thread: &str, stop: CancellationToken) {
    let http = app.http.clone();
    let url = app.url(&format!("/api/threads/{thread}/messages"));
    let token = token.to_string();
    tokio::spawn(async move {
        for i in 0.. {
            if stop.is_cancelled() {
                return;
            }
            let _ = http
                .post(&url)
                .bearer_auth(&token)
                .json(&json!({"client_id": format!("steady-{i}"), "body": "steady traffic"}))
                .timeout(Duration::from_secs(2))
                .send()
                .await;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
}

/// Apply `fault` with traffic flowing; every database alert fires, the others stay silent, the
/// failure counter grows with the connection attempts, and after the fault the state alerts
/// (`EmergenceDbDown`, `EmergenceDbPendingWritesGrowing`) resolve.
async fn database_fault_fires_the_database_alerts(fault: Mode) {
    let (app, proxy, alice, thread) = pg_app_behind_proxy().await;
    let prom = Prometheus::start(&[app.port]).await;
    let stop = CancellationToken::new();
    keep_posting(&app, &alice.token, &thread, stop.clone());
    assert_silent(&prom, Duration::from_secs(3)).await;
    let attempts_before = app.metric("db_connect_attempts_total").await;
    let failures_before = app.metric("db_connection_failures_total").await;

    let started = Instant::now();
    proxy.set(fault);
    if fault != Mode::Blackhole {
        proxy.reset_all();
    }
    // When each alert was first seen firing (polled every 250 ms).
    let fired = std::sync::Mutex::new(Vec::<(String, Duration)>::new());
    prom.wait_until("every database alert firing", FIRE_WITHIN, async || {
        let now = prom.firing().await;
        let mut fired = fired.lock().unwrap();
        for name in now {
            if !fired.iter().any(|(n, _)| *n == name) {
                fired.push((name, started.elapsed()));
            }
        }
        DB_ALERTS.iter().all(|a| fired.iter().any(|(n, _)| n == a))
    })
    .await;
    let fired = fired.into_inner().unwrap();
    let firing = prom.firing().await;
    for name in NOT_DB_ALERTS {
        assert!(
            !firing.iter().any(|f| f == name),
            "{name} fired: {firing:?}"
        );
    }
    // Every attempt that ends without a connection is a failure: at most the 4 hedged attempts
    // still running are not counted yet.
    let attempts = app.metric("db_connect_attempts_total").await - attempts_before;
    let failures = app.metric("db_connection_failures_total").await - failures_before;
    assert!(attempts >= 8.0, "{attempts} connection attempts");
    assert!(
        failures >= attempts - 4.0,
        "{failures} failures for {attempts} attempts"
    );
    println!("{fault:?}: fired {fired:?}; {attempts} attempts, {failures} failures");

    proxy.set(Mode::Pass);
    prom.wait_until(
        "EmergenceDbDown and EmergenceDbPendingWritesGrowing resolved",
        FIRE_WITHIN,
        async || {
            let firing = prom.firing().await;
            !firing
                .iter()
                .any(|f| f == "EmergenceDbDown" || f == "EmergenceDbPendingWritesGrowing")
        },
    )
    .await;
    stop.cancel();
    prom.wait_until(
        "the reconnection ratio at 1: one outage, one reconnection",
        FIRE_WITHIN,
        async || {
            prom.value("emergence:db_reconnect_success_ratio:rate15m")
                .await
                == Some(1.0)
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_database_connections_fire_the_database_alerts() {
    database_fault_fires_the_database_alerts(Mode::Refuse).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_database_connections_fire_the_database_alerts() {
    database_fault_fires_the_database_alerts(Mode::Reset).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blackholed_database_fires_the_database_alerts() {
    database_fault_fires_the_database_alerts(Mode::Blackhole).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_fires_on_a_healthy_instance_with_traffic() {
    let (app, _proxy, alice, thread) = pg_app_behind_proxy().await;
    let prom = Prometheus::start(&[app.port]).await;
    let stop = CancellationToken::new();
    keep_posting(&app, &alice.token, &thread, stop.clone());
    for _ in 0..5 {
        let mut ws = app.ws(&alice).await;
        ws.send(json!({"type": "ping"})).await;
        ws.recv_type("pong").await;
        ws.stream.close(None).await.unwrap();
    }
    // Several times the `for:` of every alert.
    assert_silent(&prom, Duration::from_secs(8)).await;
    stop.cancel();
    // The SLIs have values, and they are the healthy ones: no "No data".
    assert_eq!(prom.value("emergence:http_429:rate1m").await, Some(0.0));
    assert_eq!(
        prom.value("emergence:ws_error_ratio:rate5m").await,
        Some(0.0)
    );
    assert_eq!(
        prom.value("count(rate_limited_total{job=\"emergence\"} == 0)")
            .await,
        Some(8.0),
        "every scope exported, at 0"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_37_refused_logins_shows_37_in_increase_and_fires_the_429_alert() {
    const N: usize = 37;
    let app = spawn_app_with(|s| {
        s.limits.auth_rate_per_min = 1;
        s.limits.auth_burst = 1;
    })
    .await;
    let prom = Prometheus::start(&[app.port]).await;
    // The series exist before the first refusal: Prometheus' first samples are 0.
    let auth = r#"rate_limited_total{job="emergence",scope="auth"}"#;
    let login_429 = r#"http_requests_total{job="emergence",route="/api/auth/login",method="POST",status="429"}"#;
    assert_eq!(prom.value(auth).await, Some(0.0));
    assert_eq!(prom.value(login_429).await, Some(0.0));
    assert_silent(&prom, Duration::from_secs(2)).await;

    let login = json!({"username": "nobody", "password": "wrong password"});
    let first = app.post("/api/auth/login", None, login.clone()).await;
    assert_eq!(first.status(), 401, "the one login the limit allows");
    for _ in 0..N {
        let r = app.post("/api/auth/login", None, login.clone()).await;
        assert_eq!(r.status(), 429);
    }
    prom.wait_until("the burst scraped", FIRE_WITHIN, async || {
        prom.value(auth).await == Some(N as f64)
    })
    .await;
    let n = N as f64;
    assert_eq!(
        at_last_sample(&prom, auth, &format!("increase({auth}[5m])")).await,
        n
    );
    assert_eq!(
        at_last_sample(&prom, auth, &format!("increase({login_429}[5m])")).await,
        n
    );
    assert_eq!(
        at_last_sample(
            &prom,
            auth,
            r#"sum(increase(http_requests_total{job="emergence",status="429"}[5m]))"#
        )
        .await,
        n,
        "no other 429"
    );
    assert_eq!(
        at_last_sample(
            &prom,
            auth,
            r#"sum(increase(rate_limited_total{job="emergence"}[5m]))"#
        )
        .await,
        n,
        "no other scope"
    );
    prom.wait_firing("EmergenceRateLimited429", FIRE_WITHIN)
        .await;
    assert_eq!(prom.firing().await, vec!["EmergenceRateLimited429"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_websocket_protocol_errors_moves_the_error_ratio_and_fires_its_alert() {
    const HEALTHY: usize = 25;
    const BROKEN: usize = 25;
    let app = spawn_app_with(|_| {}).await;
    let alice = app.register("alice").await;
    let prom = Prometheus::start(&[app.port]).await;
    for _ in 0..HEALTHY {
        let mut ws = app.ws(&alice).await;
        ws.send(json!({"type": "ping"})).await;
        ws.recv_type("pong").await;
        ws.stream.close(None).await.unwrap();
    }
    let ratio = "emergence:ws_error_ratio:rate5m";
    prom.wait_until("the healthy connections scraped", FIRE_WITHIN, async || {
        prom.value(r#"sum(ws_connections_total{job="emergence",outcome="closed"})"#)
            .await
            == Some(HEALTHY as f64)
    })
    .await;
    prom.wait_until("the ratio evaluated", FIRE_WITHIN, async || {
        prom.value(ratio).await.is_some()
    })
    .await;
    assert_eq!(prom.value(ratio).await, Some(0.0));

    for _ in 0..BROKEN {
        assert_eq!(break_protocol(app.port, &alice.token).await, Some(1002));
    }
    let errors = r#"ws_connections_total{job="emergence",outcome="error"}"#;
    prom.wait_until("the errors scraped", FIRE_WITHIN, async || {
        prom.value(errors).await == Some(BROKEN as f64)
    })
    .await;
    assert_eq!(
        at_last_sample(&prom, errors, &format!("increase({errors}[5m])")).await,
        BROKEN as f64
    );
    // The ratio is the error share of every connection counted, whatever else a broken
    // connection also counts as: compare with the raw counters, which no longer move.
    let total = prom
        .value(r#"sum(ws_connections_total{job="emergence"})"#)
        .await
        .unwrap();
    let expected = BROKEN as f64 / total;
    assert!(expected > 0.05);
    prom.wait_until("the ratio moved to errors / all", FIRE_WITHIN, async || {
        prom.value(ratio)
            .await
            .is_some_and(|r| (r - expected).abs() < 1e-9)
    })
    .await;
    println!("WebSocket error ratio 0 -> {expected:.3} ({BROKEN} errors of {total} counted)");
    prom.wait_firing("EmergenceWebSocketErrorRate", FIRE_WITHIN)
        .await;
    assert_eq!(prom.firing().await, vec!["EmergenceWebSocketErrorRate"]);
}
