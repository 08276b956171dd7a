//! PostgreSQL through a real PgBouncer in transaction mode (`EMERGENCE_DATABASE_POOLER=
//! transaction`): the storage story, three instances sharing two server connections, and a cut
//! between the server and the pooler mid-traffic. A control shows that the pooler really
//! multiplexes: the default mode's named statements collide behind it.

use std::{
    collections::BTreeSet,
    sync::{Arc, Mutex},
    time::Duration,
};

use emergence::{
    Application,
    db::Target,
    settings::{Pooler, Secret, Settings},
};
use serde_json::json;
use sqlx::{Connection, Row};
use tokio_util::sync::CancellationToken;

use crate::{
    scale::receive_all,
    storage::story_at,
    support::{
        TestApp, TestDb,
        fault_proxy::{FaultProxy, Mode},
        pgbouncer::PgBouncer,
        start, test_settings,
    },
};

/// Settings for an instance whose queries go through `url` (the pooler) and whose migrations go
/// to the database itself.
pub fn pooled_settings(url: &str, db: &TestDb) -> Settings {
    let mut s = test_settings(url);
    s.database.pooler = Pooler::Transaction;
    s.database.direct_url = Some(Secret::new(db.url()));
    s.limits.send_rate_per_sec = 0;
    s.limits.auth_rate_per_min = 0;
    s.limits.ws_connect_rate_per_min = 0;
    s
}

/// Every stored message of the database, read directly: (client_id, thread, seq).
async fn stored(db: &TestDb) -> Vec<(String, String, i64)> {
    let mut conn = sqlx::PgConnection::connect(&db.url()).await.unwrap();
    sqlx::query("SELECT client_id, thread_id, seq FROM messages")
        .fetch_all(&mut conn)
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

#[tokio::test]
async fn the_control_named_statements_collide_behind_a_transaction_mode_pooler() {
    let db = TestDb::postgres().await;
    let pgb = PgBouncer::start(1).await;
    let url = pgb.url(db.pg_name().unwrap());
    // Two clients, one server connection: sqlx names its first statement `sqlx_s_1` on each.
    let mut a = sqlx::PgConnection::connect(&url).await.unwrap();
    let mut b = sqlx::PgConnection::connect(&url).await.unwrap();
    let first = sqlx::query("SELECT $1::int8")
        .bind(1i64)
        .fetch_one(&mut a)
        .await;
    assert!(first.is_ok(), "{first:?}");
    let second = sqlx::query("SELECT $1::int8 + 1")
        .bind(1i64)
        .fetch_one(&mut b)
        .await;
    let err = second.expect_err("the second client's named statement meets the first's");
    assert!(err.to_string().contains("prepared statement"), "{err}");
}

#[tokio::test]
async fn the_storage_story_holds_through_pgbouncer_in_transaction_mode() {
    let db = TestDb::postgres().await;
    // One server connection for the story's four client connections.
    let pgb = PgBouncer::start(1).await;
    let url = pgb.url(db.pg_name().unwrap());
    let direct = db.url();
    story_at(Target {
        url: &url,
        direct_url: Some(&direct),
        pooler: Pooler::Transaction,
    })
    .await;
}

#[tokio::test]
async fn the_transaction_pooler_mode_needs_a_direct_url_and_postgres() {
    let db = TestDb::postgres().await;
    let mut s = test_settings(&db.url());
    s.database.pooler = Pooler::Transaction;
    let err = Application::build(s)
        .await
        .err()
        .expect("refused")
        .to_string();
    assert!(err.contains("EMERGENCE_DATABASE_DIRECT_URL"), "{err}");
    let mut s = test_settings("sqlite://x.db");
    s.database.pooler = Pooler::Transaction;
    s.database.direct_url = Some(Secret::new("sqlite://x.db"));
    let err = Application::build(s)
        .await
        .err()
        .expect("refused")
        .to_string();
    assert!(err.contains("postgres://"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_on_two_server_connections_store_every_send_once_in_order() {
    let db = TestDb::postgres().await;
    let pgb = PgBouncer::start(2).await;
    let url = pgb.url(db.pg_name().unwrap());
    let channel = format!("emergence:test:{}", uuid::Uuid::new_v4());
    let mut apps: Vec<TestApp> = Vec::new();
    for _ in 0..3 {
        let mut s = pooled_settings(&url, &db);
        s.broker.url = Some(Secret::new("redis://127.0.0.1:6379"));
        s.broker.channel = channel.clone();
        apps.push(start(s, TestDb::Shared(url.clone()), true).await);
    }
    let owner = apps[0].register("owner").await;
    let guest = apps[1].register("guest").await;
    let thread = apps[0].create_thread(&owner, "pooled").await;
    apps[0].add_member(&owner, &thread, "guest").await;
    let mut clients = Vec::new();
    for i in 0..6 {
        let user = if i % 2 == 0 { &owner } else { &guest };
        let mut ws = apps[i % 3].ws(user).await;
        ws.subscribe(&thread, None).await;
        clients.push(ws);
    }
    let rounds = 15;
    for round in 0..rounds {
        for (i, ws) in clients.iter_mut().enumerate() {
            ws.send_message(&thread, &format!("c{i}-{round}"), "through the pooler")
                .await;
        }
    }
    let total = (rounds * clients.len()) as i64;
    let readers = clients
        .into_iter()
        .map(|mut ws| tokio::spawn(async move { receive_all(&mut ws, total).await }));
    for r in readers {
        r.await.unwrap();
    }
    // History, membership and sessions read back through the pooler on another instance.
    let history = apps[2].messages(&guest, &thread, "?limit=500").await;
    assert_eq!(history.len(), total as usize);
    assert!(
        history
            .iter()
            .enumerate()
            .all(|(i, m)| m["seq"] == json!(i as i64 + 1))
    );
    // A search runs its scoping statements (settings, the count of matches read from the
    // index's plan) in its own transaction, unnamed, as the pooler requires.
    for app in &apps {
        let r = app
            .get("/api/search?q=pooler&limit=5", Some(&guest.token))
            .await;
        let status = r.status();
        let hits: serde_json::Value = r.json().await.unwrap();
        assert_eq!(status, 200, "{hits}");
        assert_eq!(hits["hits"].as_array().unwrap().len(), 5);
    }
    let rows = stored(&db).await;
    let ids: BTreeSet<&String> = rows.iter().map(|r| &r.0).collect();
    assert_eq!((rows.len(), ids.len()), (total as usize, total as usize));
    assert_eq!(
        apps[1]
            .post("/api/auth/logout", Some(&guest.token), json!({}))
            .await
            .status(),
        204
    );
    assert_eq!(
        apps[2].get("/api/me", Some(&guest.token)).await.status(),
        401,
        "the logout reached the other instances"
    );
    for app in &apps {
        assert_eq!(app.metric("db_connection_failures_total").await, 0.0);
    }
    assert!(!pgb.log().contains("ERROR"), "{}", pgb.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_between_the_server_and_the_pooler_loses_nothing() {
    let db = TestDb::postgres().await;
    let pgb = PgBouncer::start(2).await;
    let proxy = FaultProxy::start(format!("127.0.0.1:{}", pgb.port).parse().unwrap()).await;
    let url = pgb.url_via(proxy.port, db.pg_name().unwrap());
    let app = start(
        pooled_settings(&url, &db),
        TestDb::Shared(url.clone()),
        true,
    )
    .await;
    let user = app.register("sender").await;
    let thread = app.create_thread(&user, "cut").await;
    let stop = CancellationToken::new();
    let acked = Arc::new(Mutex::new(Vec::new()));
    let mut ws = app.ws(&user).await;
    let sender = {
        let (stop, thread, acked) = (stop.clone(), thread.clone(), acked.clone());
        tokio::spawn(async move {
            let mut n = 0;
            while !stop.is_cancelled() {
                let id = format!("m{n}");
                ws.send_message(&thread, &id, "across the cut").await;
                ws.recv_until("ack", |f| {
                    f["type"] == "ack"
                        && f["client_id"] == id.as_str()
                        && f["status"] == "persisted"
                })
                .await;
                acked.lock().unwrap().push(id);
                n += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    proxy.set(Mode::Refuse);
    proxy.reset_all();
    tokio::time::sleep(Duration::from_secs(3)).await;
    proxy.set(Mode::Pass);
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(60), sender)
        .await
        .expect("every send acknowledged as persisted after the cut")
        .unwrap();
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() > 20, "{} sends", acked.len());
    let mut rows = stored(&db).await;
    rows.sort_by_key(|r| r.2);
    let ids: Vec<&String> = rows.iter().map(|r| &r.0).collect();
    assert_eq!(
        ids.len(),
        acked.len(),
        "every acknowledged send stored once"
    );
    assert_eq!(
        ids.iter().collect::<BTreeSet<_>>().len(),
        acked.len(),
        "no send stored twice"
    );
    assert!(
        rows.iter().enumerate().all(|(i, r)| r.2 == i as i64 + 1),
        "gapless seq"
    );
    assert!(app.metric("db_reconnect_success_total").await >= 1.0);
}
