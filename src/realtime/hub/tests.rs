//! The hub against messages stored in the in-memory fake of `Store`: fan-out to every
//! subscriber, `seq` order and exactly-once delivery, buffering during replay, and gap fill from
//! the store. End-to-end delivery over real sockets and databases is tested in `tests/it`.

use std::{sync::Arc, task::Waker, time::Duration};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::{
    db::{
        Database, InsertOutcome, Message, Page, Store,
        memory::{MemoryStore, user_message},
        writer::MessageWriter,
    },
    metrics::Metrics,
    settings::DatabaseSettings,
};

/// A connection on a real loopback socket; the test reads its queue (nothing sweeps it).
fn conn(id: u64) -> Arc<ConnHandle> {
    let metrics = Arc::new(Metrics::default());
    let (writer, _peer) = conn::test_writer();
    Arc::new(ConnHandle::new(
        id,
        format!("user{id}"),
        format!("session{id}"),
        10_000,
        CancellationToken::new(),
        metrics,
        writer,
    ))
}

/// Seqs of the `message` frames queued for `conn` since the last call.
fn delivered(conn: &ConnHandle) -> Vec<i64> {
    let mut seqs = Vec::new();
    while let Some(out) = conn.next_outbound(Waker::noop()) {
        if let Outbound::Frame(f) = out {
            let v: serde_json::Value = serde_json::from_str(f.as_str()).expect("JSON frame");
            assert_eq!(v["type"], "message");
            seqs.push(v["seq"].as_i64().expect("a seq"));
        }
    }
    seqs
}

/// Store `n` messages in thread `t1` of a fresh fake; returns the fake and what it stored.
async fn stored(n: usize) -> (Arc<MemoryStore>, Vec<Message>) {
    let store = MemoryStore::with_threads(&["t1"]).await;
    let batch: Vec<_> = (0..n)
        .map(|i| user_message("t1", &format!("c{i}"), "alice", &format!("m{i}")))
        .collect();
    let messages = store
        .insert_messages(&batch)
        .await
        .unwrap()
        .into_iter()
        .map(|o| match o {
            InsertOutcome::Inserted(m) => m,
            other => panic!("expected a new message, got {other:?}"),
        })
        .collect();
    (store, messages)
}

fn live(hub: &Hub, conn: &Arc<ConnHandle>, last: i64) {
    hub.subscribe("t1", conn.clone());
    hub.activate("t1", conn.id, last);
}

#[tokio::test]
async fn every_subscriber_gets_each_message_once_in_seq_order() {
    let (_store, messages) = stored(5).await;
    let hub = Hub::new(100);
    let conns: Vec<_> = (1..=3).map(conn).collect();
    for c in &conns {
        live(&hub, c, 0);
    }
    for m in &messages {
        hub.publish(m);
    }
    // Repeats (a retried commit, another instance's echo) are dropped.
    hub.publish(&messages[2]);
    hub.publish(&messages[4]);
    for c in &conns {
        assert_eq!(delivered(c), vec![1, 2, 3, 4, 5], "connection {}", c.id);
    }
    assert_eq!(hub.head("t1"), Some(5));
}

#[tokio::test]
async fn a_subscriber_of_another_thread_gets_nothing() {
    let (_store, messages) = stored(2).await;
    let hub = Hub::new(100);
    let other = conn(9);
    hub.subscribe("t2", other.clone());
    hub.activate("t2", other.id, 0);
    for m in &messages {
        hub.publish(m);
    }
    assert!(delivered(&other).is_empty());
}

#[tokio::test]
async fn messages_published_during_replay_are_delivered_after_it_without_repeats() {
    let (_store, messages) = stored(4).await;
    let hub = Hub::new(100);
    let c = conn(1);
    hub.subscribe("t1", c.clone());
    for m in &messages[..3] {
        hub.publish(m);
    }
    assert!(
        delivered(&c).is_empty(),
        "buffered while the replay is sent"
    );
    // The replay covered up to seq 2.
    hub.activate("t1", c.id, 2);
    hub.publish(&messages[3]);
    assert_eq!(delivered(&c), vec![3, 4]);
}

#[tokio::test]
async fn a_gap_is_held_then_filled_from_the_store_in_order() {
    let (store, messages) = stored(6).await;
    let hub = Hub::new(100);
    let c = conn(1);
    live(&hub, &c, 0);
    // Messages from several instances arrive out of order; 2 and 3 have not arrived.
    for i in [0, 3, 4] {
        hub.publish(&messages[i]);
    }
    assert_eq!(delivered(&c), vec![1], "4 and 5 are held");
    let Some(Control::FillGap { thread, from, to }) = c.next_control(Waker::noop()) else {
        panic!("the hub asks for the gap");
    };
    assert_eq!((thread.as_str(), from, to), ("t1", 2, 3));
    assert!(c.next_control(Waker::noop()).is_none(), "asked once");
    assert!(hub.still_missing("t1", c.id, 2));

    // What the connection's task does: read the gap from the store and hand it over.
    let gap = store
        .messages(&thread, Page::After(from - 1), to - from + 1)
        .await
        .unwrap();
    hub.fill(&thread, c.id, &gap);
    assert_eq!(delivered(&c), vec![2, 3, 4, 5]);
    assert!(!hub.still_missing("t1", c.id, 2));
    // A late copy of the gap's messages is a duplicate now.
    hub.publish(&messages[1]);
    hub.publish(&messages[5]);
    assert_eq!(delivered(&c), vec![6]);
}

#[tokio::test]
async fn the_ring_replays_what_a_resubscriber_missed() {
    let (_store, messages) = stored(5).await;
    let hub = Hub::new(3);
    for m in &messages {
        hub.publish(m);
    }
    let (head, frames) = hub.replay_from_ring("t1", 3).expect("held in the ring");
    assert_eq!((head, frames.len()), (5, 2));
    assert!(
        hub.replay_from_ring("t1", 1).is_none(),
        "seq 2 has left the ring (size 3): the store must answer"
    );
}

#[tokio::test]
async fn what_the_writer_commits_reaches_every_subscriber_in_order_exactly_once() {
    let store = MemoryStore::with_threads(&["t1"]).await;
    let shutdown = CancellationToken::new();
    let metrics = Arc::new(Metrics::default());
    let db = Database::start_with(
        store.shared(),
        DatabaseSettings::default(),
        metrics.clone(),
        shutdown.clone(),
    );
    assert!(db.wait_up(Duration::from_secs(5)).await);
    let (tx, mut commits) = mpsc::unbounded_channel();
    let (writer, _task) = MessageWriter::start(db, 1000, 16, metrics, tx, shutdown.clone());
    let hub = Hub::new(100);
    let conns: Vec<_> = (1..=2).map(conn).collect();
    for c in &conns {
        live(&hub, c, 0);
    }
    let (reply, _replies) = mpsc::unbounded_channel();
    for i in 0..50 {
        let m = user_message("t1", &format!("c{i}"), "alice", "x");
        writer.submit(m.clone(), reply.clone()).unwrap();
        if i % 10 == 0 {
            // A resend of something already stored or queued.
            writer.submit(m, reply.clone()).unwrap();
        }
    }
    let mut reported = 0;
    while store.all_messages("t1").len() < 50 || reported < 50 {
        let s = tokio::time::timeout(Duration::from_secs(5), commits.recv())
            .await
            .expect("commits in time")
            .expect("the writer is running");
        hub.publish(&s.message);
        reported += 1;
    }
    for c in &conns {
        assert_eq!(delivered(c), (1..=50).collect::<Vec<_>>());
    }
    shutdown.cancel();
}
