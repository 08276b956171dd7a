//! The sweepers: the writers of every WebSocket's deliveries. A frame queued for a connection
//! ([`ConnHandle::send`]) puts the connection on its shard's dirty list (once, until swept)
//! instead of waking the connection's task; one sweeper task per worker thread writes each dirty
//! connection's whole queue in one `write`: frame headers and payloads, no task woken, no
//! WebSocket library in between. A socket the kernel cannot take more from parks the rest
//! (`http::socket`) and its connection's task writes it once writable; the sweeper leaves that
//! connection's queue alone until then, so a slow reader fills its own queue and is disconnected.
//!
//! Close frames are not written here: a sweep stops at one and hands it to the connection's
//! task, which sends it through the WebSocket library so the closing handshake knows it was sent.

use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use tokio::sync::Notify;

use super::hub::ConnHandle;

/// A sweep's buffer above this is not kept for the next pass.
const KEEP_BUFFER: usize = 1 << 20;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The connections one sweeper writes.
#[derive(Default)]
pub struct Shard {
    dirty: Mutex<Vec<Arc<ConnHandle>>>,
    wake: Notify,
}

impl Shard {
    /// Put `conn` on the dirty list (the caller saw it was not on it).
    pub fn push(&self, conn: Arc<ConnHandle>) {
        self.add(|dirty| dirty.push(conn));
    }

    /// Put every connection of `conns` on the dirty list (taking them).
    fn push_all(&self, conns: &mut Vec<Arc<ConnHandle>>) {
        self.add(|dirty| {
            if dirty.is_empty() {
                std::mem::swap(dirty, conns);
            } else {
                dirty.append(conns);
            }
        });
    }

    /// Add to the dirty list under its lock, waking the sweeper if the list was empty (it
    /// sleeps only then).
    fn add(&self, add: impl FnOnce(&mut Vec<Arc<ConnHandle>>)) {
        let first = {
            let mut dirty = lock(&self.dirty);
            let first = dirty.is_empty();
            add(&mut dirty);
            first
        };
        if first {
            self.wake.notify_one();
        }
    }
}

/// The connections one fan-out made dirty, by shard: listed at once when it is over (one lock
/// and at most one wake-up per shard, not one per connection).
#[derive(Default)]
pub struct Listing {
    shards: Vec<(Arc<Shard>, Vec<Arc<ConnHandle>>)>,
}

impl Listing {
    /// `conn` was clean and now has frames: list it with the others of its shard.
    pub fn add(&mut self, conn: &Arc<ConnHandle>) {
        let shard = &conn.writer().shard;
        match self.shards.iter_mut().find(|(s, _)| Arc::ptr_eq(s, shard)) {
            Some((_, conns)) => conns.push(conn.clone()),
            None => self.shards.push((shard.clone(), vec![conn.clone()])),
        }
    }

    /// List them all (when the fan-out is over: the listing is dropped).
    fn flush(&mut self) {
        for (shard, conns) in &mut self.shards {
            if !conns.is_empty() {
                shard.push_all(conns);
            }
        }
    }
}

impl Drop for Listing {
    fn drop(&mut self) {
        self.flush();
    }
}

#[cfg(test)]
impl Shard {
    /// What is on the dirty list (a test sweeps it by hand).
    pub fn take_dirty(&self) -> Vec<Arc<ConnHandle>> {
        std::mem::take(&mut *lock(&self.dirty))
    }
}

/// One sweeper per worker thread, started with the first WebSocket.
#[derive(Default)]
pub struct Sweepers {
    shards: OnceLock<Vec<Arc<Shard>>>,
}

impl Sweepers {
    /// The shard of connection `id` (starting the sweepers on first use: call from the runtime).
    pub fn shard(&self, id: u64) -> Arc<Shard> {
        let shards = self.shards.get_or_init(|| {
            let n = tokio::runtime::Handle::current().metrics().num_workers();
            (0..n.max(1))
                .map(|_| {
                    let shard = Arc::new(Shard::default());
                    tokio::spawn(sweep(shard.clone()));
                    shard
                })
                .collect()
        });
        shards[id as usize % shards.len()].clone()
    }
}

/// One shard's writer: every dirty connection gets one write of all it has queued; those made
/// dirty meanwhile are taken on the next pass.
async fn sweep(shard: Arc<Shard>) {
    let mut pass = Vec::new();
    let mut buf = Vec::new();
    loop {
        std::mem::swap(&mut *lock(&shard.dirty), &mut pass);
        if pass.is_empty() {
            shard.wake.notified().await;
            continue;
        }
        for conn in pass.drain(..) {
            conn.sweep(&mut buf);
            // A sweep is a unit of the task's cooperative budget: passes follow each other at
            // once (a sweeper that waited its turn behind every other task after each pass
            // would let queues fill), and the other tasks on this worker still get their turn
            // once the budget is spent.
            tokio::task::consume_budget().await;
        }
        if buf.capacity() > KEEP_BUFFER {
            buf = Vec::new();
        }
    }
}
