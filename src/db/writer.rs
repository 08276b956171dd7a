//! The message writer: every message goes through one queue and one task, which stores them in
//! batches (group commit: one transaction for many concurrent senders, each message still getting
//! its thread's next gapless `seq`) and reports each stored message as a [`Stored`] event, in
//! commit order, on the channel it was given. It knows nothing of who listens (delivery to
//! sockets and other instances, the agents).
//!
//! While the database is down the queue keeps accepting sends up to its bound (acked `queued`),
//! and flushes them in order when it returns. A repeated `(thread, client_id)` joins the entry
//! already queued instead of adding a second one, so a message is stored once however often it
//! is resent.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use super::{Database, InsertOutcome, Message, NewMessage, StoreError};
use crate::metrics::Metrics;

/// What the writer tells the sender about one message.
#[derive(Debug, Clone)]
pub enum WriteEvent {
    /// The database is down; the message is held in memory and will be stored when it returns.
    Queued {
        thread_id: String,
        client_id: String,
    },
    /// Stored (or found already stored by the same author: `existed`).
    Persisted { message: Message, existed: bool },
    /// Refused for good.
    Rejected {
        thread_id: String,
        client_id: String,
        reason: Rejection,
    },
}

/// Why a message was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// Another author already used this `client_id` in this thread.
    ClientIdTaken,
    /// The thread does not exist.
    NoThread,
    /// An unexpected storage error.
    Internal,
}

/// Where events about a message go.
pub type Reply = mpsc::UnboundedSender<WriteEvent>;

/// A message the writer stored, reported in commit order.
///
/// Messages found already stored (`first == false`) are reported too: a commit whose answer was
/// lost to a network fault is only learned on the retry, and delivery drops what a subscriber
/// already has, so delivering again is always safe. What a message asks of the agents is acted
/// on only when `first`.
#[derive(Debug)]
pub struct Stored {
    pub message: Message,
    pub first: bool,
    /// What the message asks of the agents (with the requester's answer slot).
    pub request: Option<super::AgentRequest>,
    /// The agent stream this message answers (delivered right after that stream's end).
    pub stream_id: Option<String>,
}

/// Where the writer reports what it stored.
pub type StoredTx = mpsc::UnboundedSender<Stored>;

/// The queue is full: the caller must answer `unavailable`.
#[derive(Debug)]
pub struct QueueFull;

type Key = (String, String);

#[derive(Default)]
struct Pending {
    items: VecDeque<NewMessage>,
    waiters: HashMap<Key, Waiter>,
}

struct Waiter {
    replies: Vec<Reply>,
    queued_told: bool,
}

/// Handle to the writer task.
#[derive(Clone)]
pub struct MessageWriter {
    inner: Arc<Inner>,
}

struct Inner {
    pending: Mutex<Pending>,
    notify: Notify,
    db: Database,
    capacity: usize,
    batch: usize,
    metrics: Arc<Metrics>,
    stored: StoredTx,
}

impl MessageWriter {
    pub fn start(
        db: Database,
        capacity: usize,
        batch: usize,
        metrics: Arc<Metrics>,
        stored: StoredTx,
        shutdown: CancellationToken,
    ) -> (MessageWriter, tokio::task::JoinHandle<()>) {
        let writer = MessageWriter {
            inner: Arc::new(Inner {
                pending: Mutex::new(Pending::default()),
                notify: Notify::new(),
                db,
                capacity,
                batch: batch.max(1),
                metrics,
                stored,
            }),
        };
        let task = tokio::spawn(writer.clone().run(shutdown));
        (writer, task)
    }

    /// Messages accepted and not yet stored.
    pub fn pending(&self) -> usize {
        self.lock().items.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.inner.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queue a message. Events about it arrive on `reply`.
    pub fn submit(&self, message: NewMessage, reply: Reply) -> Result<(), QueueFull> {
        let down = !self.inner.db.is_up();
        let mut p = self.lock();
        let key = (message.thread_id.clone(), message.client_id.clone());
        if let Some(w) = p.waiters.get_mut(&key) {
            if w.queued_told {
                let _ = reply.send(WriteEvent::Queued {
                    thread_id: key.0.clone(),
                    client_id: key.1.clone(),
                });
            }
            w.replies.push(reply);
            return Ok(());
        }
        if p.items.len() >= self.inner.capacity {
            return Err(QueueFull);
        }
        if down {
            let _ = reply.send(WriteEvent::Queued {
                thread_id: key.0.clone(),
                client_id: key.1.clone(),
            });
        }
        p.items.push_back(message);
        p.waiters.insert(
            key,
            Waiter {
                replies: vec![reply],
                queued_told: down,
            },
        );
        self.inner
            .metrics
            .db_pending_writes
            .set(p.items.len() as i64);
        drop(p);
        if down {
            self.inner.db.set_urgent(true);
        }
        self.inner.notify.notify_one();
        Ok(())
    }

    /// Tell every waiter not yet told that its message is queued.
    fn tell_queued(&self) {
        let mut p = self.lock();
        for ((thread_id, client_id), w) in p.waiters.iter_mut() {
            if !w.queued_told {
                w.queued_told = true;
                for r in &w.replies {
                    let _ = r.send(WriteEvent::Queued {
                        thread_id: thread_id.clone(),
                        client_id: client_id.clone(),
                    });
                }
            }
        }
    }

    fn finish(&self, count: usize, outcomes: Vec<InsertOutcome>) {
        let mut p = self.lock();
        let done: Vec<NewMessage> = p.items.drain(..count).collect();
        let mut notes = Vec::with_capacity(done.len());
        for (m, outcome) in done.into_iter().zip(outcomes) {
            let key = (m.thread_id.clone(), m.client_id.clone());
            let replies = p
                .waiters
                .remove(&key)
                .map(|w| w.replies)
                .unwrap_or_default();
            notes.push((key, replies, outcome, m));
        }
        self.inner
            .metrics
            .db_pending_writes
            .set(p.items.len() as i64);
        // Reported while holding the queue lock: commit order is delivery order.
        for (_, _, outcome, new) in &mut notes {
            let (message, first) = match outcome {
                InsertOutcome::Inserted(message) => {
                    self.inner.metrics.messages_persisted.inc();
                    (message.clone(), true)
                }
                InsertOutcome::Existing(message) => (message.clone(), false),
                _ => continue,
            };
            let _ = self.inner.stored.send(Stored {
                message,
                first,
                request: new.agent.take(),
                stream_id: new.stream_id.take(),
            });
        }
        drop(p);
        for ((thread_id, client_id), replies, outcome, _) in notes {
            let event = match outcome {
                InsertOutcome::Inserted(message) => WriteEvent::Persisted {
                    message,
                    existed: false,
                },
                InsertOutcome::Existing(message) => WriteEvent::Persisted {
                    message,
                    existed: true,
                },
                InsertOutcome::ClientIdTaken => WriteEvent::Rejected {
                    thread_id,
                    client_id,
                    reason: Rejection::ClientIdTaken,
                },
                InsertOutcome::NoThread => WriteEvent::Rejected {
                    thread_id,
                    client_id,
                    reason: Rejection::NoThread,
                },
            };
            // Almost always one sender: the event is moved to the last, cloned for the others.
            if let Some((last, others)) = replies.split_last() {
                for r in others {
                    let _ = r.send(event.clone());
                }
                let _ = last.send(event);
            }
        }
    }

    fn reject_front(&self) {
        let mut p = self.lock();
        if let Some(m) = p.items.pop_front() {
            let key = (m.thread_id, m.client_id);
            if let Some(w) = p.waiters.remove(&key) {
                for r in w.replies {
                    let _ = r.send(WriteEvent::Rejected {
                        thread_id: key.0.clone(),
                        client_id: key.1.clone(),
                        reason: Rejection::Internal,
                    });
                }
            }
        }
        self.inner
            .metrics
            .db_pending_writes
            .set(p.items.len() as i64);
    }

    /// Store batches until `shutdown`. Pipelined: once a batch has committed, the next batch's
    /// transaction starts (on its own task) while this one's senders are answered and its
    /// messages reported, so the database works while the acks go out. The batch in hand was
    /// committed but is still at the front of the queue: the next batch starts after it.
    async fn run(self, shutdown: CancellationToken) {
        let mut db_state = self.inner.db.watch();
        // Committed and not yet reported: how many queued messages, and their outcomes.
        let mut committed: Option<(usize, Vec<InsertOutcome>)> = None;
        loop {
            let skip = committed.as_ref().map_or(0, |c| c.0);
            let batch: Vec<NewMessage> = {
                let p = self.lock();
                p.items
                    .iter()
                    .skip(skip)
                    .take(self.inner.batch)
                    .cloned()
                    .collect()
            };
            if (batch.is_empty() || !self.inner.db.is_up())
                && let Some((count, outcomes)) = committed.take()
            {
                self.finish(count, outcomes);
                continue;
            }
            if batch.is_empty() {
                self.inner.db.set_urgent(false);
                self.release_memory();
                tokio::select! {
                    _ = self.inner.notify.notified() => continue,
                    _ = shutdown.cancelled() => return,
                }
            }
            if !self.inner.db.is_up() {
                self.tell_queued();
                self.inner.db.set_urgent(true);
                tokio::select! {
                    _ = db_state.wait_for(|s| *s == super::DbState::Up) => {}
                    _ = shutdown.cancelled() => return,
                }
                continue;
            }
            let db = self.inner.db.clone();
            let next = tokio::spawn(async move {
                db.run(|s| async move { s.insert_messages(&batch).await.map(|o| (batch, o)) })
                    .await
            });
            if let Some((count, outcomes)) = committed.take() {
                self.finish(count, outcomes);
            }
            let result = next.await.unwrap_or_else(|e| {
                Err(StoreError::Other(anyhow::anyhow!(
                    "message batch task failed: {e}"
                )))
            });
            match result {
                Ok((batch, outcomes)) => committed = Some((batch.len(), outcomes)),
                Err(StoreError::Unavailable(_)) => self.tell_queued(),
                Err(e) => {
                    // A single bad message must not block the queue: write the batch one by one
                    // and refuse only the message that fails.
                    tracing::error!(error = %e, "message batch failed; retrying one by one");
                    let first = self.lock().items.front().cloned();
                    if let Some(first) = first {
                        match self
                            .inner
                            .db
                            .run(|s| async move {
                                s.insert_messages(std::slice::from_ref(&first)).await
                            })
                            .await
                        {
                            Ok(outcomes) => self.finish(1, outcomes),
                            Err(StoreError::Unavailable(_)) => self.tell_queued(),
                            Err(e) => {
                                tracing::error!(error = %e, "message refused by the database");
                                self.reject_front();
                            }
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    }

    /// After an outage's backlog is written, give its memory back: the queue keeps no spare
    /// capacity, and the allocator returns freed pages to the system.
    fn release_memory(&self) {
        let shrunk = {
            let mut p = self.lock();
            if p.items.is_empty() && p.items.capacity() > 4096 {
                p.items = VecDeque::new();
                p.waiters = HashMap::new();
                true
            } else {
                false
            }
        };
        if shrunk {
            crate::memory::return_free_memory();
        }
    }

    /// Try to store what is queued before the process exits, within `deadline`.
    pub async fn flush(&self, deadline: Duration) -> usize {
        let started = tokio::time::Instant::now();
        while self.pending() > 0 && started.elapsed() < deadline {
            self.inner.notify.notify_one();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.pending()
    }
}

#[cfg(test)]
mod tests;
