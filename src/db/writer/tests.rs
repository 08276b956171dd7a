//! The writer against the in-memory fake of `Store`: group commit, exactly-once by `client_id`,
//! commit order, and what happens when the database is down, fails a batch, or refuses one
//! message. The same writer runs against real SQLite and PostgreSQL in `tests/it`.

use std::{sync::Arc, time::Duration};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::{
    db::memory::{Failure, MemoryStore, user_message as message},
    settings::DatabaseSettings,
};

const WAIT: Duration = Duration::from_secs(5);

struct Harness {
    store: Arc<MemoryStore>,
    db: Database,
    writer: MessageWriter,
    stored: mpsc::UnboundedReceiver<Stored>,
    shutdown: CancellationToken,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A writer over a fake holding threads `t1` and `t2`, with fast reconnection.
async fn harness(capacity: usize, batch: usize) -> Harness {
    let store = MemoryStore::with_threads(&["t1", "t2"]).await;
    let settings = DatabaseSettings {
        backoff_initial_ms: 5,
        backoff_max_ms: 20,
        ..DatabaseSettings::default()
    };
    let metrics = Arc::new(Metrics::default());
    let shutdown = CancellationToken::new();
    let db = Database::start_with(store.shared(), settings, metrics.clone(), shutdown.clone());
    assert!(db.wait_up(WAIT).await, "the fake answers");
    let (tx, stored) = mpsc::unbounded_channel();
    let (writer, _task) =
        MessageWriter::start(db.clone(), capacity, batch, metrics, tx, shutdown.clone());
    Harness {
        store,
        db,
        writer,
        stored,
        shutdown,
    }
}

/// Submit and return where the writer's answers arrive.
fn submit(h: &Harness, m: NewMessage) -> mpsc::UnboundedReceiver<WriteEvent> {
    let (tx, rx) = mpsc::unbounded_channel();
    h.writer.submit(m, tx).expect("the queue has room");
    rx
}

async fn next(rx: &mut mpsc::UnboundedReceiver<WriteEvent>) -> WriteEvent {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("the writer answers in time")
        .expect("the writer is running")
}

/// The stored message, once persisted (skipping a `Queued` first).
async fn persisted(rx: &mut mpsc::UnboundedReceiver<WriteEvent>) -> (Message, bool) {
    loop {
        match next(rx).await {
            WriteEvent::Queued { .. } => continue,
            WriteEvent::Persisted { message, existed } => return (message, existed),
            other => panic!("expected persisted, got {other:?}"),
        }
    }
}

async fn next_stored(h: &mut Harness) -> Stored {
    tokio::time::timeout(WAIT, h.stored.recv())
        .await
        .expect("a Stored event in time")
        .expect("the writer is running")
}

fn seqs(messages: &[Message]) -> Vec<i64> {
    messages.iter().map(|m| m.seq).collect()
}

#[tokio::test]
async fn concurrent_sends_are_committed_together_in_submission_order() {
    let mut h = harness(1000, 64).await;
    // Submitted before the writer task runs (one-threaded runtime): they form full batches.
    let mut replies: Vec<_> = (0..200)
        .map(|i| {
            submit(
                &h,
                message("t1", &format!("c{i}"), "alice", &format!("m{i}")),
            )
        })
        .collect();
    for (i, rx) in replies.iter_mut().enumerate() {
        let (m, existed) = persisted(rx).await;
        assert_eq!(
            (m.seq, m.body.as_str(), existed),
            (i as i64 + 1, &*format!("m{i}"), false)
        );
    }
    assert_eq!(h.store.batches(), vec![64, 64, 64, 8], "group commit");
    for seq in 1..=200 {
        let s = next_stored(&mut h).await;
        assert_eq!((s.message.seq, s.first), (seq, true), "commit order");
    }
    assert_eq!(
        seqs(&h.store.all_messages("t1")),
        (1..=200).collect::<Vec<_>>()
    );
    assert_eq!(h.writer.pending(), 0);
}

#[tokio::test]
async fn each_thread_gets_its_own_gapless_sequence_within_one_batch() {
    let h = harness(100, 64).await;
    let mut replies: Vec<_> = (0..10)
        .map(|i| {
            let thread = if i % 2 == 0 { "t1" } else { "t2" };
            submit(&h, message(thread, &format!("c{i}"), "alice", "x"))
        })
        .collect();
    let mut got = Vec::new();
    for rx in &mut replies {
        let (m, _) = persisted(rx).await;
        got.push((m.thread_id, m.seq));
    }
    let expected: Vec<(String, i64)> = (0..10)
        .map(|i| ((if i % 2 == 0 { "t1" } else { "t2" }).into(), i / 2 + 1))
        .collect();
    assert_eq!(got, expected);
    assert_eq!(h.store.batches(), vec![10]);
}

#[tokio::test]
async fn a_repeated_client_id_is_stored_once_and_every_sender_learns_the_stored_message() {
    let mut h = harness(100, 64).await;
    let mut first = submit(&h, message("t1", "same", "alice", "hello"));
    // The same send again while it is still queued joins the queued entry.
    let mut again = submit(&h, message("t1", "same", "alice", "hello again"));
    let (a, existed_a) = persisted(&mut first).await;
    let (b, existed_b) = persisted(&mut again).await;
    assert_eq!((a.seq, a.body.as_str(), existed_a), (1, "hello", false));
    assert_eq!(a, b);
    assert!(!existed_b, "one commit answers both");
    assert_eq!(h.pending_stored(), 1);

    // Once stored, a repeat is answered with the stored message and reported as not first.
    let mut later = submit(&h, message("t1", "same", "alice", "third time"));
    let (c, existed_c) = persisted(&mut later).await;
    assert_eq!((c.seq, c.body.as_str(), existed_c), (1, "hello", true));
    let s = next_stored(&mut h).await;
    assert_eq!((s.message.seq, s.first), (1, true));
    let s = next_stored(&mut h).await;
    assert_eq!((s.message.seq, s.first), (1, false));

    // Another author's message under the same client id is refused; nothing else is stored.
    let mut theirs = submit(&h, message("t1", "same", "bob", "mine?"));
    match next(&mut theirs).await {
        WriteEvent::Rejected { reason, .. } => assert_eq!(reason, Rejection::ClientIdTaken),
        other => panic!("expected a rejection, got {other:?}"),
    }
    assert_eq!(seqs(&h.store.all_messages("t1")), vec![1]);
}

#[tokio::test]
async fn a_message_to_a_missing_thread_is_refused_and_the_rest_of_its_batch_is_stored() {
    let h = harness(100, 64).await;
    let mut ok = submit(&h, message("t1", "a", "alice", "here"));
    let mut lost = submit(&h, message("nowhere", "b", "alice", "there"));
    let (m, _) = persisted(&mut ok).await;
    assert_eq!(m.seq, 1);
    match next(&mut lost).await {
        WriteEvent::Rejected { reason, .. } => assert_eq!(reason, Rejection::NoThread),
        other => panic!("expected a rejection, got {other:?}"),
    }
}

#[tokio::test]
async fn sends_while_the_database_is_down_are_acked_queued_then_stored_in_order_once_it_returns() {
    let h = harness(100, 64).await;
    h.store.set_down(true);
    let mut first = submit(&h, message("t1", "a", "alice", "one"));
    // The write fails: the database is marked down and the sender told its message is queued.
    assert!(matches!(next(&mut first).await, WriteEvent::Queued { .. }));
    assert!(!h.db.is_up());
    let mut rest: Vec<_> = ["two", "three"]
        .iter()
        .map(|b| submit(&h, message("t1", b, "alice", b)))
        .collect();
    for rx in &mut rest {
        assert!(
            matches!(next(rx).await, WriteEvent::Queued { .. }),
            "told at once"
        );
    }
    assert_eq!(h.writer.pending(), 3);
    assert!(h.store.all_messages("t1").is_empty());

    h.store.set_down(false);
    let (m, _) = persisted(&mut first).await;
    assert_eq!((m.seq, m.body.as_str()), (1, "one"));
    for (rx, (seq, body)) in rest.iter_mut().zip([(2, "two"), (3, "three")]) {
        let (m, _) = persisted(rx).await;
        assert_eq!((m.seq, m.body.as_str()), (seq, body));
    }
    assert!(h.db.is_up());
    assert_eq!(seqs(&h.store.all_messages("t1")), vec![1, 2, 3]);
}

#[tokio::test]
async fn a_batch_that_fails_is_retried_and_stored_exactly_once() {
    let h = harness(100, 64).await;
    h.store.fail_next_batch(Failure::Unavailable);
    let mut replies: Vec<_> = (0..5)
        .map(|i| submit(&h, message("t1", &format!("c{i}"), "alice", "x")))
        .collect();
    for (i, rx) in replies.iter_mut().enumerate() {
        let (m, existed) = persisted(rx).await;
        assert_eq!((m.seq, existed), (i as i64 + 1, false));
    }
    assert_eq!(h.store.batches(), vec![5], "one failed attempt, one commit");
    assert_eq!(seqs(&h.store.all_messages("t1")), vec![1, 2, 3, 4, 5]);
}

#[tokio::test]
async fn a_message_the_database_refuses_is_rejected_alone_and_the_queue_moves_on() {
    let h = harness(100, 64).await;
    h.store.refuse_body("poison");
    let mut before = submit(&h, message("t1", "a", "alice", "fine"));
    let mut bad = submit(&h, message("t1", "b", "alice", "poison"));
    let mut after = submit(&h, message("t1", "c", "alice", "also fine"));
    assert_eq!(persisted(&mut before).await.0.seq, 1);
    match next(&mut bad).await {
        WriteEvent::Rejected { reason, .. } => assert_eq!(reason, Rejection::Internal),
        other => panic!("expected a rejection, got {other:?}"),
    }
    assert_eq!(
        persisted(&mut after).await.0.seq,
        2,
        "no gap for the refused one"
    );
    assert!(h.db.is_up(), "a refusal is not an outage");
}

#[tokio::test]
async fn a_full_queue_refuses_new_sends_but_still_takes_repeats() {
    let h = harness(2, 64).await;
    h.store.set_down(true);
    let mut first = submit(&h, message("t1", "a", "alice", "one"));
    assert!(matches!(next(&mut first).await, WriteEvent::Queued { .. }));
    let _second = submit(&h, message("t1", "b", "alice", "two"));
    let (tx, _rx) = mpsc::unbounded_channel();
    assert!(
        h.writer
            .submit(message("t1", "c", "alice", "three"), tx.clone())
            .is_err(),
        "full"
    );
    assert!(
        h.writer
            .submit(message("t1", "a", "alice", "one"), tx)
            .is_ok(),
        "a repeat joins its queued entry"
    );
}

impl Harness {
    /// Messages stored in the fake, all threads.
    fn pending_stored(&self) -> usize {
        self.store.all_messages("t1").len() + self.store.all_messages("t2").len()
    }
}
