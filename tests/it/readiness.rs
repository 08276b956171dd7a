//! Readiness from process start, on the real binary: `/readyz` answers 503 `starting` until the
//! first database connection attempt has ended, so the first 200 a load balancer sees says
//! `ready` when the database is healthy, and `degraded` only once the database has really been
//! tried and found unreachable (within the attempt's own timeout).
//!
//! Every probe is a new connection, sent as fast as the test can from the moment the process is
//! spawned, as a platform's startup probe would (only much faster).

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::support::{
    TestDb,
    fault_proxy::{FaultProxy, Mode},
    process::{BUILT, KillOnDrop, free_port, spawn_server},
};

/// What `/readyz` said from process start up to its first 200.
#[derive(Debug)]
struct Startup {
    /// The first 200's body.
    first_ok: Value,
    /// From spawning the process to the first 200.
    after: Duration,
    /// Probes refused before the listener was bound.
    refused: usize,
    /// 503 answers before the first 200 (all `starting`).
    starting: usize,
}

/// One `GET /readyz` on a new connection: status and body, or `None` when nothing answers yet.
async fn probe(port: u16) -> Option<(u16, Value)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
    s.write_all(b"GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .await
        .ok()?;
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut raw))
        .await
        .ok()?
        .ok()?;
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let status = String::from_utf8_lossy(&raw[..end])
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some((status, serde_json::from_slice(&raw[end + 4..]).ok()?))
}

/// Spawn the binary with `env` and probe `/readyz` back to back until the first 200.
async fn start_and_watch(env: &[(&str, &str)], limit: Duration) -> (KillOnDrop, Startup) {
    let port = free_port();
    let started = Instant::now();
    let server = KillOnDrop(spawn_server(BUILT, port, env, false));
    let (mut refused, mut starting) = (0, 0);
    loop {
        assert!(
            started.elapsed() < limit,
            "no 200 from /readyz within {limit:?} ({refused} refused, {starting} starting)"
        );
        match probe(port).await {
            None => refused += 1,
            Some((200, body)) => {
                let startup = Startup {
                    first_ok: body,
                    after: started.elapsed(),
                    refused,
                    starting,
                };
                return (server, startup);
            }
            Some((503, body)) => {
                assert_eq!(
                    body["status"], "starting",
                    "before the first 200, a 503 says starting: {body}"
                );
                starting += 1;
            }
            Some((status, body)) => panic!("/readyz answered {status} {body} while starting"),
        }
    }
}

#[tokio::test]
async fn from_process_start_the_first_200_from_readyz_says_ready_on_sqlite() {
    // A fresh file (created and migrated by the first attempt), then the same file again.
    let db = TestDb::sqlite();
    let url = db.url();
    for round in 0..3 {
        let (_server, s) =
            start_and_watch(&[("DATABASE_URL", url.as_str())], Duration::from_secs(20)).await;
        eprintln!(
            "sqlite start {round}: first 200 after {:?} ({} refused, {} starting): {}",
            s.after, s.refused, s.starting, s.first_ok
        );
        assert_eq!(
            s.first_ok,
            json!({"status": "ready", "db": "up", "broker": "local"}),
            "start {round}"
        );
    }
}

#[tokio::test]
async fn from_process_start_the_first_200_from_readyz_says_ready_on_postgres() {
    for round in 0..3 {
        let db = TestDb::postgres().await;
        let url = db.url();
        let (_server, s) =
            start_and_watch(&[("DATABASE_URL", url.as_str())], Duration::from_secs(20)).await;
        eprintln!(
            "postgres start {round}: first 200 after {:?} ({} refused, {} starting): {}",
            s.after, s.refused, s.starting, s.first_ok
        );
        assert_eq!(
            s.first_ok,
            json!({"status": "ready", "db": "up", "broker": "local"}),
            "start {round}"
        );
    }
}

#[tokio::test]
async fn with_nothing_listening_at_the_database_address_readyz_turns_degraded_once_the_first_attempt_failed()
 {
    let url = format!("postgres://postgres@127.0.0.1:{}/none", free_port());
    for round in 0..3 {
        let (_server, s) =
            start_and_watch(&[("DATABASE_URL", url.as_str())], Duration::from_secs(10)).await;
        eprintln!(
            "refused database, start {round}: first 200 after {:?} ({} refused, {} starting): {}",
            s.after, s.refused, s.starting, s.first_ok
        );
        assert_eq!(
            s.first_ok,
            json!({"status": "degraded", "db": "down", "broker": "local"}),
            "start {round}"
        );
        // The pool retries a refused connection until the connect timeout (2 s): degraded
        // then, within the attempt's bound (2 x 2 s) plus the process start.
        assert!(s.after < Duration::from_secs(5), "{s:?}");
    }
}

#[tokio::test]
async fn with_a_blackholed_database_readyz_says_starting_until_the_connect_timeout_then_degraded() {
    let db = TestDb::postgres().await;
    let proxy = FaultProxy::start("127.0.0.1:5432".parse().unwrap()).await;
    proxy.set(Mode::Blackhole);
    let config = std::env::temp_dir().join(format!("emergence-ready-{}.toml", free_port()));
    std::fs::write(&config, "[database]\nconnect_timeout_ms = 600\n").unwrap();
    let url = db.url_via(proxy.port);
    let (_server, s) = start_and_watch(
        &[
            ("DATABASE_URL", url.as_str()),
            ("EMERGENCE_CONFIG", config.to_str().unwrap()),
        ],
        Duration::from_secs(10),
    )
    .await;
    let _ = std::fs::remove_file(&config);
    eprintln!(
        "blackholed database: first 200 after {:?} ({} refused, {} starting): {}",
        s.after, s.refused, s.starting, s.first_ok
    );
    assert_eq!(
        s.first_ok,
        json!({"status": "degraded", "db": "down", "broker": "local"})
    );
    // Starting for the connect timeout (the attempt hangs until then), degraded right after:
    // bounded by the attempt's timeout (2 x 600 ms) plus the process start.
    assert!(
        s.after >= Duration::from_millis(600),
        "degraded before the attempt could have failed: {s:?}"
    );
    assert!(s.after < Duration::from_millis(1200 + 1500), "{s:?}");
}

/// A 503 is the instance saying "not now": while the database's first attempt runs, `/readyz`
/// answers 503 `starting`, and the `response failed` line of each answer (which `emergence
/// guard` counts as a 5xx) is a warning, not an error an operator's alert would page on. The
/// database is a listener that accepts and never answers, so the attempt lasts its timeout.
#[tokio::test]
async fn readiness_503s_while_starting_are_logged_as_warnings_not_errors() {
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    let held = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    let scratch = TestDb::sqlite();
    let dir = scratch.sqlite_dir().unwrap();
    let config = dir.join("emergence.toml");
    std::fs::write(&config, "[database]\nconnect_timeout_ms = 15000\n").unwrap();
    let log = dir.join("server.log");
    let port = free_port();
    let server = KillOnDrop(
        std::process::Command::new(BUILT)
            .arg("serve")
            .env("PORT", port.to_string())
            .env("EMERGENCE_HOST", "127.0.0.1")
            .env(
                "DATABASE_URL",
                format!("postgres://emergence@127.0.0.1:{silent_port}/emergence"),
            )
            .env("EMERGENCE_CONFIG", &config)
            .env("EMERGENCE_LOG", "info")
            .env("EMERGENCE_LOG_FORMAT", "json")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("the emergence binary starts"),
    );
    let started = Instant::now();
    let mut starting = 0;
    while starting < 3 {
        assert!(started.elapsed() < Duration::from_secs(10), "no answers");
        match probe(port).await {
            None => tokio::time::sleep(Duration::from_millis(20)).await,
            Some((status, body)) => {
                assert_eq!(
                    (status, &body["status"]),
                    (503, &json!("starting")),
                    "{body}"
                );
                starting += 1;
            }
        }
    }
    drop(server);
    held.abort();

    let lines: Vec<Value> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let failed: Vec<&Value> = lines
        .iter()
        .filter(|l| l["message"] == "response failed")
        .collect();
    assert_eq!(failed.len(), 3, "one line per 503: {failed:?}");
    for line in &failed {
        assert_eq!(line["severity"], "WARNING", "{line}");
        assert_eq!(
            line["classification"], "Status code: 503 Service Unavailable",
            "{line}"
        );
        assert!(
            line["latency"].as_str().is_some_and(|l| l.ends_with(" ms")),
            "{line}"
        );
    }
    let errors: Vec<&Value> = lines.iter().filter(|l| l["severity"] == "ERROR").collect();
    assert!(errors.is_empty(), "no error lines: {errors:?}");
}
