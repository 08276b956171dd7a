//! The in-memory fan-out hub: who is subscribed to which thread, and the ring of recent
//! messages per active thread.
//!
//! Ordering and exactly-once delivery live here. A subscription starts `Pending` (live messages
//! are buffered while the connection replays what it missed), then turns `Live { last }`: a
//! message is delivered only when its `seq` is `last + 1`; an older one is a duplicate and
//! dropped; a newer one is held while the connection fills the gap from the database (messages
//! from other instances may arrive out of order).

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    sync::{Arc, Mutex, RwLock},
};

use super::{
    protocol::{Frame, message_frame},
    sweep::Listing,
};
use crate::db::Message;

mod conn;

pub use conn::{ConnHandle, Control, Outbound, Writer};

enum SubState {
    Pending(Vec<(i64, Frame)>),
    Live {
        last: i64,
        held: BTreeMap<i64, Frame>,
        filling: bool,
    },
}

struct Sub {
    conn: Arc<ConnHandle>,
    state: SubState,
    /// Thread changes (`thread_updated`, `members_updated`) waiting for the message they follow:
    /// `(at_seq, frame)`, sent once the subscription has delivered `at_seq`, in publication order.
    changes: VecDeque<(i64, Frame)>,
}

impl Sub {
    /// Send the waiting changes that no longer wait for a message.
    fn flush_changes(&mut self, listing: &mut Listing) {
        let SubState::Live { last, .. } = &self.state else {
            return;
        };
        while self.changes.front().is_some_and(|(at, _)| *at <= *last) {
            if let Some((_, frame)) = self.changes.pop_front() {
                self.conn.send_listed(frame, listing);
            }
        }
    }
}

#[derive(Default)]
struct Room {
    subs: HashMap<u64, Sub>,
    ring: VecDeque<(i64, Frame)>,
    head: i64,
}

impl Room {
    fn remember(&mut self, seq: i64, frame: &Frame, ring_size: usize) {
        if seq > self.head {
            // Keep the ring contiguous: a jump means messages we never saw.
            if self.ring.back().is_some_and(|(last, _)| *last + 1 != seq) {
                self.ring.clear();
            }
            self.ring.push_back((seq, frame.clone()));
            while self.ring.len() > ring_size {
                self.ring.pop_front();
            }
            self.head = seq;
        }
    }
}

/// Subscriptions and recent messages, per thread.
pub struct Hub {
    rooms: RwLock<HashMap<String, Arc<Mutex<Room>>>>,
    ring_size: usize,
}

impl Hub {
    pub fn new(ring_size: usize) -> Self {
        Self {
            rooms: RwLock::new(HashMap::new()),
            ring_size,
        }
    }

    fn room(&self, thread: &str) -> Arc<Mutex<Room>> {
        if let Some(r) = self
            .rooms
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(thread)
        {
            return r.clone();
        }
        self.rooms
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .entry(thread.to_string())
            .or_default()
            .clone()
    }

    fn existing(&self, thread: &str) -> Option<Arc<Mutex<Room>>> {
        self.rooms
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(thread)
            .cloned()
    }

    /// Fan out a stored message to the thread's subscribers, in `seq` order, once each.
    pub fn publish(&self, message: &Message) {
        let frame = message_frame(message);
        // Declared first, so dropped (listing every connection made dirty) after the room lock.
        let mut listing = Listing::default();
        let room = self.room(&message.thread_id);
        let mut room = room.lock().unwrap_or_else(|e| e.into_inner());
        room.remember(message.seq, &frame, self.ring_size);
        for sub in room.subs.values_mut() {
            deliver(sub, &message.thread_id, message.seq, &frame, &mut listing);
        }
    }

    /// Start (or restart) a subscription; live messages are buffered until [`Hub::activate`].
    pub fn subscribe(&self, thread: &str, conn: Arc<ConnHandle>) {
        let room = self.room(thread);
        let mut room = room.lock().unwrap_or_else(|e| e.into_inner());
        room.subs.insert(
            conn.id,
            Sub {
                conn,
                state: SubState::Pending(Vec::new()),
                changes: VecDeque::new(),
            },
        );
    }

    /// The replay is sent up to `last`: deliver what was buffered after it and go live.
    pub fn activate(&self, thread: &str, conn_id: u64, last: i64) {
        let mut listing = Listing::default();
        let Some(room) = self.existing(thread) else {
            return;
        };
        let mut room = room.lock().unwrap_or_else(|e| e.into_inner());
        let Some(sub) = room.subs.get_mut(&conn_id) else {
            return;
        };
        let buffered = match std::mem::replace(
            &mut sub.state,
            SubState::Live {
                last,
                held: BTreeMap::new(),
                filling: false,
            },
        ) {
            SubState::Pending(b) => b,
            SubState::Live { .. } => Vec::new(),
        };
        for (seq, frame) in buffered {
            deliver(sub, thread, seq, &frame, &mut listing);
        }
        sub.flush_changes(&mut listing);
    }

    /// Messages fetched from the database to fill a gap.
    pub fn fill(&self, thread: &str, conn_id: u64, messages: &[Message]) {
        let mut listing = Listing::default();
        let Some(room) = self.existing(thread) else {
            return;
        };
        let mut room = room.lock().unwrap_or_else(|e| e.into_inner());
        let Some(sub) = room.subs.get_mut(&conn_id) else {
            return;
        };
        if let SubState::Live { filling, .. } = &mut sub.state {
            *filling = false;
        }
        for m in messages {
            deliver(sub, thread, m.seq, &message_frame(m), &mut listing);
        }
    }

    /// Fan out a change of the thread (title, agents, members) that happened after message
    /// `at_seq`: each subscriber gets it right after that message, once.
    pub fn publish_change(&self, thread: &str, at_seq: i64, frame: &Frame) {
        let mut listing = Listing::default();
        let Some(room) = self.existing(thread) else {
            return;
        };
        let mut room = room.lock().unwrap_or_else(|e| e.into_inner());
        for sub in room.subs.values_mut() {
            sub.changes.push_back((at_seq, frame.clone()));
            sub.flush_changes(&mut listing);
        }
    }

    /// End the subscriptions to `thread` of `user` (every user when `None`) at once, with a last
    /// frame saying why; returns the connections whose subscription ended.
    pub fn end_subscriptions(&self, thread: &str, user: Option<&str>, frame: &Frame) -> Vec<u64> {
        let Some(room) = self.existing(thread) else {
            return Vec::new();
        };
        let mut room = room.lock().unwrap_or_else(|e| e.into_inner());
        let ended: Vec<u64> = room
            .subs
            .iter()
            .filter(|(_, s)| user.is_none_or(|u| s.conn.user_id == u))
            .map(|(id, _)| *id)
            .collect();
        let mut listing = Listing::default();
        for id in &ended {
            if let Some(sub) = room.subs.remove(id) {
                sub.conn.send_listed(frame.clone(), &mut listing);
            }
        }
        if user.is_none() {
            room.ring.clear();
        }
        ended
    }

    pub fn unsubscribe(&self, thread: &str, conn_id: u64) {
        if let Some(room) = self.existing(thread) {
            room.lock()
                .unwrap_or_else(|e| e.into_inner())
                .subs
                .remove(&conn_id);
        }
    }

    /// Forget what this instance knew of a thread nobody here subscribes to any more (its
    /// events stop coming: a ring and head kept would go stale). `false` if it has subscribers.
    pub fn forget(&self, thread: &str) -> bool {
        let mut rooms = self.rooms.write().unwrap_or_else(|e| e.into_inner());
        let idle = rooms
            .get(thread)
            .is_none_or(|r| r.lock().unwrap_or_else(|e| e.into_inner()).subs.is_empty());
        if idle {
            rooms.remove(thread);
        }
        idle
    }

    /// The newest `seq` this instance knows for the thread.
    pub fn head(&self, thread: &str) -> Option<i64> {
        self.existing(thread)
            .map(|r| r.lock().unwrap_or_else(|e| e.into_inner()).head)
            .filter(|h| *h > 0)
    }

    /// Record a head read from the database (so replay while down knows where it stands).
    pub fn note_head(&self, thread: &str, head: i64) {
        let room = self.room(thread);
        let mut room = room.lock().unwrap_or_else(|e| e.into_inner());
        if head > room.head {
            room.head = head;
            room.ring.clear();
        }
    }

    /// Frames of messages with `seq > after`, if the ring holds all of them.
    pub fn replay_from_ring(&self, thread: &str, after: i64) -> Option<(i64, Vec<Frame>)> {
        let room = self.existing(thread)?;
        let room = room.lock().unwrap_or_else(|e| e.into_inner());
        if after >= room.head {
            return Some((room.head, Vec::new()));
        }
        let first = room.ring.front()?.0;
        if first > after + 1 {
            return None;
        }
        let frames = room
            .ring
            .iter()
            .filter(|(s, _)| *s > after)
            .map(|(_, f)| f.clone())
            .collect();
        Some((room.head, frames))
    }

    /// Threads with at least one subscriber here.
    pub fn active_threads(&self) -> Vec<String> {
        let rooms = self.rooms.read().unwrap_or_else(|e| e.into_inner());
        rooms
            .iter()
            .filter(|(_, r)| !r.lock().unwrap_or_else(|e| e.into_inner()).subs.is_empty())
            .map(|(t, _)| t.clone())
            .collect()
    }

    /// The lowest `seq` every live subscriber of `thread` already has (what to re-read after a
    /// broker gap); `None` without live subscribers.
    pub fn delivery_floor(&self, thread: &str) -> Option<i64> {
        let room = self.existing(thread)?;
        let room = room.lock().unwrap_or_else(|e| e.into_inner());
        room.subs
            .values()
            .filter_map(|s| match &s.state {
                SubState::Live { last, .. } => Some(*last),
                SubState::Pending(_) => None,
            })
            .min()
    }

    /// Whether `conn` still waits for `seq` in `thread` (a gap not yet filled).
    pub fn still_missing(&self, thread: &str, conn_id: u64, seq: i64) -> bool {
        let Some(room) = self.existing(thread) else {
            return false;
        };
        let room = room.lock().unwrap_or_else(|e| e.into_inner());
        matches!(room.subs.get(&conn_id).map(|s| &s.state), Some(SubState::Live { last, .. }) if *last < seq)
    }

    /// Ids of the connections subscribed to `thread`, whatever the state of the subscription.
    pub fn subscriber_ids(&self, thread: &str) -> std::collections::HashSet<u64> {
        let Some(room) = self.existing(thread) else {
            return Default::default();
        };
        let room = room.lock().unwrap_or_else(|e| e.into_inner());
        room.subs.keys().copied().collect()
    }

    /// Connections whose subscription to `thread` is live (replay done).
    pub fn live_subscribers(&self, thread: &str) -> Vec<Arc<ConnHandle>> {
        let Some(room) = self.existing(thread) else {
            return Vec::new();
        };
        let room = room.lock().unwrap_or_else(|e| e.into_inner());
        room.subs
            .values()
            .filter(|s| matches!(s.state, SubState::Live { .. }))
            .map(|s| s.conn.clone())
            .collect()
    }
}

fn deliver(sub: &mut Sub, thread: &str, seq: i64, frame: &Frame, listing: &mut Listing) {
    match &mut sub.state {
        SubState::Pending(buffer) => buffer.push((seq, frame.clone())),
        SubState::Live {
            last,
            held,
            filling,
        } => {
            if seq <= *last {
                return; // already delivered
            }
            if seq > *last + 1 {
                held.insert(seq, frame.clone());
                if !*filling {
                    *filling = true;
                    sub.conn.control(Control::FillGap {
                        thread: thread.to_string(),
                        from: *last + 1,
                        to: seq - 1,
                    });
                }
                return;
            }
            sub.conn.send_listed(frame.clone(), listing);
            *last = seq;
            while let Some(entry) = held.first_entry() {
                if *entry.key() <= *last {
                    entry.remove();
                } else if *entry.key() == *last + 1 {
                    let f = entry.remove();
                    sub.conn.send_listed(f, listing);
                    *last += 1;
                } else {
                    break;
                }
            }
            sub.flush_changes(listing);
        }
    }
}

#[cfg(test)]
mod tests;
