//! The group commit's bookkeeping, the same for every backend: which messages of a batch are new
//! (the first occurrence of a `(thread, client_id)` not stored yet), which `seq` each one gets
//! (a contiguous block per thread, in batch order), and what to report for every message.
//! A backend only looks up what is already stored and reserves the seq blocks; the rules that
//! make a message exactly-once live here, once, for SQLite, PostgreSQL and the test fake alike.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::{InsertOutcome, Message, NewMessage};

/// One batch being stored.
pub(crate) struct BatchPlan<'b> {
    batch: &'b [NewMessage],
    /// Messages already stored under the batch's client ids, per thread.
    stored: HashMap<&'b str, HashMap<String, Message>>,
    /// The batch index of each new `(thread, client_id)`.
    first_of: HashMap<(&'b str, &'b str), usize>,
    /// New messages per thread, in batch order.
    fresh: BTreeMap<&'b str, Vec<usize>>,
    seqs: HashMap<usize, i64>,
    missing_threads: HashSet<&'b str>,
}

/// The batch's message indexes per thread (the idempotency lookup runs per thread).
pub(crate) fn by_thread(batch: &[NewMessage]) -> BTreeMap<&str, Vec<usize>> {
    let mut by_thread: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, m) in batch.iter().enumerate() {
        by_thread.entry(m.thread_id.as_str()).or_default().push(i);
    }
    by_thread
}

impl<'b> BatchPlan<'b> {
    /// Decide which messages are new, given those already stored under the batch's client ids.
    pub(crate) fn new(batch: &'b [NewMessage], already: Vec<Message>) -> Self {
        let threads: HashSet<&'b str> = batch.iter().map(|m| m.thread_id.as_str()).collect();
        let mut stored: HashMap<&'b str, HashMap<String, Message>> = HashMap::new();
        for m in already {
            // Keyed by the batch's own thread id (a stored message of another thread is not ours).
            if let Some(thread) = threads.get(m.thread_id.as_str()) {
                stored
                    .entry(*thread)
                    .or_default()
                    .insert(m.client_id.clone(), m);
            }
        }
        let mut first_of: HashMap<(&str, &str), usize> = HashMap::new();
        let mut fresh: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (i, m) in batch.iter().enumerate() {
            let key = (m.thread_id.as_str(), m.client_id.as_str());
            let known = stored.get(key.0).is_some_and(|s| s.contains_key(key.1));
            if known || first_of.contains_key(&key) {
                continue;
            }
            first_of.insert(key, i);
            fresh.entry(key.0).or_default().push(i);
        }
        BatchPlan {
            batch,
            stored,
            first_of,
            fresh,
            seqs: HashMap::new(),
            missing_threads: HashSet::new(),
        }
    }

    /// Threads with new messages and how many each has: the seq block to reserve.
    pub(crate) fn fresh_counts(&self) -> Vec<(&'b str, i64)> {
        self.fresh
            .iter()
            .map(|(t, idxs)| (*t, idxs.len() as i64))
            .collect()
    }

    /// The thread's `last_seq` after reserving its block: its new messages get the block's
    /// seqs in batch order. `None`: the thread does not exist.
    pub(crate) fn reserved(&mut self, thread: &'b str, last_seq: Option<i64>) {
        let Some(idxs) = self.fresh.get(thread) else {
            return;
        };
        let Some(last) = last_seq else {
            self.missing_threads.insert(thread);
            return;
        };
        let first = last - idxs.len() as i64 + 1;
        for (k, i) in idxs.iter().enumerate() {
            self.seqs.insert(*i, first + k as i64);
        }
    }

    /// The new messages with their seqs, in batch order (what to insert).
    pub(crate) fn rows(&self) -> Vec<(&'b NewMessage, i64)> {
        let mut order: Vec<usize> = self.seqs.keys().copied().collect();
        order.sort_unstable();
        order
            .into_iter()
            .map(|i| (&self.batch[i], self.seqs[&i]))
            .collect()
    }

    /// The stored form of the batch's message `i` (once its seq is assigned).
    pub(crate) fn message(&self, i: usize) -> Message {
        let m = &self.batch[i];
        Message {
            id: m.id.clone(),
            thread_id: m.thread_id.clone(),
            seq: self.seqs[&i],
            client_id: m.client_id.clone(),
            author: m.author.clone(),
            body: m.body.clone(),
            created_at: m.created_at,
            status: m.status.clone(),
            prompt_tokens: m.prompt_tokens,
            completion_tokens: m.completion_tokens,
            meta: m.meta.clone(),
        }
    }

    /// What happened to each message of the batch, in batch order.
    pub(crate) fn outcomes(&self) -> Vec<InsertOutcome> {
        let same_author = |found: &Message, m: &NewMessage| {
            found.author.id == m.author.id && found.author.kind == m.author.kind
        };
        let repeat = |found: Message, m: &NewMessage| {
            if same_author(&found, m) {
                InsertOutcome::Existing(found)
            } else {
                InsertOutcome::ClientIdTaken
            }
        };
        self.batch
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let thread = m.thread_id.as_str();
                if self.missing_threads.contains(thread) {
                    return InsertOutcome::NoThread;
                }
                if let Some(found) = self.stored.get(thread).and_then(|s| s.get(&m.client_id)) {
                    return repeat(found.clone(), m);
                }
                let first = self.first_of[&(thread, m.client_id.as_str())];
                if first == i {
                    InsertOutcome::Inserted(self.message(i))
                } else {
                    repeat(self.message(first), m)
                }
            })
            .collect()
    }
}
