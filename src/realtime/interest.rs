//! Which threads this instance follows on the broker (sharded fan-out): how many local sockets
//! subscribe to each, whether the broker subscription is active yet, and a linger after the
//! last socket leaves (a socket that reconnects at once keeps the subscription and what the
//! instance knows of the thread).

use std::{collections::HashMap, sync::RwLock};

use tokio::sync::watch;

/// The followed threads. Behind a read-write lock: every message from the broker reads it
/// (`contains`), while only a socket following or leaving a thread writes it.
#[derive(Default)]
pub struct Interest {
    map: RwLock<HashMap<String, Entry>>,
}

struct Entry {
    /// Local sockets subscribed; 0 while lingering.
    count: usize,
    /// Bumped by every follow, so that an expiry scheduled earlier sees it was followed again.
    generation: u64,
    /// Whether the broker subscription is active.
    ready: watch::Sender<bool>,
}

impl Interest {
    /// One more local socket follows `thread`. Returns whether the broker must subscribe (the
    /// thread was not followed) and a receiver that turns `true` once it has.
    pub fn follow(&self, thread: &str) -> (bool, watch::Receiver<bool>) {
        let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = map.get_mut(thread) {
            e.count += 1;
            e.generation += 1;
            return (false, e.ready.subscribe());
        }
        let (ready, rx) = watch::channel(false);
        map.insert(
            thread.to_string(),
            Entry {
                count: 1,
                generation: 0,
                ready,
            },
        );
        (true, rx)
    }

    /// One local socket left `thread`. `Some(generation)` when it was the last: expire the
    /// thread with that generation after the linger.
    pub fn unfollow(&self, thread: &str) -> Option<u64> {
        let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
        let e = map.get_mut(thread)?;
        e.count = e.count.saturating_sub(1);
        (e.count == 0).then_some(e.generation)
    }

    /// Stop following `thread` if nobody followed it again since `generation`.
    pub fn expire(&self, thread: &str, generation: u64) -> bool {
        let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
        let idle = map
            .get(thread)
            .is_some_and(|e| e.count == 0 && e.generation == generation);
        if idle {
            map.remove(thread);
        }
        idle
    }

    /// Whether the thread is followed (subscribed here, or lingering).
    pub fn contains(&self, thread: &str) -> bool {
        self.map
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(thread)
    }

    pub fn threads(&self) -> Vec<String> {
        self.map
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect()
    }

    /// The broker subscription of `thread` is active.
    pub fn mark_ready(&self, thread: &str) {
        if let Some(e) = self
            .map
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(thread)
        {
            e.ready.send_replace(true);
        }
    }

    /// Every followed thread's subscription is active (after a reconnection).
    pub fn mark_all_ready(&self) {
        for e in self.map.read().unwrap_or_else(|e| e.into_inner()).values() {
            e.ready.send_replace(true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_follower_subscribes_and_the_last_expires_only_if_not_followed_again() {
        let i = Interest::default();
        let (subscribe, ready) = i.follow("t");
        assert!(subscribe && !*ready.borrow());
        assert!(
            !i.follow("t").0,
            "a second socket rides on the same subscription"
        );
        assert_eq!(i.unfollow("t"), None, "one socket still follows");
        let generation = i.unfollow("t").expect("the last one left");
        // A socket comes back during the linger: the scheduled expiry must not remove it.
        let (subscribe, _) = i.follow("t");
        assert!(!subscribe && !i.expire("t", generation));
        let generation = i.unfollow("t").unwrap();
        assert!(i.expire("t", generation) && !i.contains("t"));
        i.mark_ready("t"); // expired: nothing to mark
        assert!(i.follow("t").0, "followed anew: subscribe again");
        i.mark_ready("t");
        assert!(*i.follow("t").1.borrow());
    }
}
