//! Agent streams as first-class, resumable objects. Every instance keeps the streams it knows
//! (its own and, through the broker, the others'): the text so far and the sockets watching.
//!
//! A socket becomes a watcher atomically with receiving a snapshot (under the stream's lock), so
//! after `stream_snapshot` it receives exactly the chunks from that offset on: nothing missing,
//! nothing repeated. Offsets count characters (Unicode code points).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, RwLock},
    time::Instant,
};

use crate::contract::{AgentErrorClass, AgentRef, DebateRole, MessageView, ServerFrame};
use crate::realtime::{
    hub::{ConnHandle, Hub},
    protocol::{Frame, frame},
    sweep::Listing,
};

mod cancel;
mod event;
mod reasoning;
pub use cancel::{cancel, cancel_debate};
pub use event::StreamEvent;

/// A stream this instance knows about.
pub struct Stream {
    pub id: String,
    pub thread: String,
    pub agent_id: String,
    pub agent_name: String,
    pub debate_id: Option<String>,
    /// The model that really answers (the fallback once it took over).
    model: RwLock<Option<String>>,
    /// A debate stream's round and part.
    pub round: Option<u32>,
    pub role: Option<DebateRole>,
    /// A regenerated answer's first version.
    pub version_of: Option<String>,
    state: Mutex<StreamState>,
}

#[derive(Default)]
struct StreamState {
    text: String,
    chars: usize,
    /// The reasoning so far (`stream_reasoning` frames), and its length in characters.
    reasoning: String,
    reasoning_chars: usize,
    watchers: HashMap<u64, Arc<ConnHandle>>,
    /// A mirror that missed chunks: its text is not trustworthy until a snapshot arrives.
    stale: bool,
    /// The failed try waiting to be retried before the first token, and since when, so a
    /// socket that attaches meanwhile is told "retrying in N s" too.
    retry: Option<(Instant, RetryWait)>,
}

/// A `stream_retry` as it was announced.
#[derive(Clone, Copy)]
struct RetryWait {
    attempt: u32,
    retry_in_ms: u64,
    error_class: AgentErrorClass,
}

impl Stream {
    fn start_frame(&self) -> Frame {
        frame(&ServerFrame::StreamStart {
            thread: self.thread.clone(),
            stream_id: self.id.clone(),
            agent: AgentRef {
                id: self.agent_id.clone(),
                name: self.agent_name.clone(),
                model: self.model(),
            },
            debate_id: self.debate_id.clone(),
            round: self.round,
            role: self.role,
            version_of: self.version_of.clone(),
        })
    }

    /// The model that really answers now.
    pub fn model(&self) -> Option<String> {
        self.model.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The `stream_retry` a socket attaching now needs: the announced wait, less what passed.
    fn pending_retry(&self, st: &StreamState) -> Option<Frame> {
        let (since, wait) = st.retry?;
        let left = wait
            .retry_in_ms
            .checked_sub(since.elapsed().as_millis() as u64)
            .filter(|ms| *ms > 0)?;
        Some(frame(&ServerFrame::StreamRetry {
            thread: self.thread.clone(),
            stream_id: self.id.clone(),
            attempt: wait.attempt,
            retry_in_ms: left,
            error_class: wait.error_class,
        }))
    }

    /// The text generated so far.
    pub fn text(&self) -> String {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .text
            .clone()
    }

    /// The reasoning generated so far.
    pub fn reasoning(&self) -> String {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .reasoning
            .clone()
    }
}

/// The streams this instance knows, by id and by thread.
#[derive(Default)]
pub struct Streams {
    by_id: RwLock<HashMap<String, Arc<Stream>>>,
    /// Streams run by this instance (the others are mirrors of streams run elsewhere).
    local: RwLock<std::collections::HashSet<String>>,
    /// Debates under way (a turn started and the job has not ended): debate id -> thread. A
    /// debate between two turns has no running stream but can still be stopped.
    debates: RwLock<HashMap<String, String>>,
}

/// What applying an event asks of the caller.
pub enum Follow {
    None,
    /// A mirror needs the full text: ask the running instance.
    NeedSnapshot(String),
}

impl Streams {
    pub fn get(&self, id: &str) -> Option<Arc<Stream>> {
        self.by_id
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
    }

    /// A running stream of the debate `debate_id`, if one runs now.
    pub fn of_debate(&self, debate_id: &str) -> Option<Arc<Stream>> {
        self.by_id
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .find(|s| s.debate_id.as_deref() == Some(debate_id))
            .cloned()
    }

    /// The thread of a debate under way, running a turn or between two.
    pub fn debate_thread(&self, debate_id: &str) -> Option<String> {
        self.debates
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(debate_id)
            .cloned()
    }

    /// Note that this instance runs the stream (its events are published from here).
    pub fn note_local(&self, event: &StreamEvent) {
        let mut local = self.local.write().unwrap_or_else(|e| e.into_inner());
        match event {
            StreamEvent::Start { stream_id, .. } => {
                local.insert(stream_id.clone());
            }
            StreamEvent::End { stream_id, .. } | StreamEvent::Error { stream_id, .. } => {
                local.remove(stream_id);
            }
            _ => {}
        }
    }

    /// Drop the mirrors of `thread`'s streams run elsewhere: this instance stops receiving
    /// their events (no subscriber here any more), so they would go stale, and one that ended
    /// meanwhile would never be removed. A later subscriber learns them again from their
    /// next chunk (a snapshot).
    pub fn forget_mirrors(&self, thread: &str) {
        let local = self.local.read().unwrap_or_else(|e| e.into_inner());
        self.by_id
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|id, s| s.thread != thread || local.contains(id));
        self.debates
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|_, t| t != thread);
    }

    pub fn in_thread(&self, thread: &str) -> Vec<Arc<Stream>> {
        self.by_id
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .filter(|s| s.thread == thread)
            .cloned()
            .collect()
    }

    pub fn ids(&self) -> Vec<String> {
        self.by_id
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect()
    }

    /// Apply a stream event: update the text and tell the watchers.
    pub fn apply(&self, event: &StreamEvent, hub: &Hub) -> Follow {
        match event {
            StreamEvent::Start {
                thread,
                stream_id,
                agent_id,
                agent_name,
                debate_id,
                model,
                round,
                role,
                version_of,
            } => {
                if let Some(debate) = debate_id {
                    self.debates
                        .write()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(debate.clone(), thread.clone());
                }
                let stream = Arc::new(Stream {
                    id: stream_id.clone(),
                    thread: thread.clone(),
                    agent_id: agent_id.clone(),
                    agent_name: agent_name.clone(),
                    debate_id: debate_id.clone(),
                    model: RwLock::new(model.clone()),
                    round: *round,
                    role: *role,
                    version_of: version_of.clone(),
                    state: Mutex::new(StreamState::default()),
                });
                {
                    let mut map = self.by_id.write().unwrap_or_else(|e| e.into_inner());
                    if map.contains_key(stream_id) {
                        return Follow::None;
                    }
                    map.insert(stream_id.clone(), stream.clone());
                }
                // Registered first, then the live subscribers: a socket subscribing meanwhile
                // either is among them or finds the stream when it attaches.
                let frame = stream.start_frame();
                let mut st = stream.state.lock().unwrap_or_else(|e| e.into_inner());
                let mut listing = Listing::default();
                for conn in hub.live_subscribers(thread) {
                    if conn.send_listed(frame.clone(), &mut listing) {
                        st.watchers.insert(conn.id, conn);
                    }
                }
                Follow::None
            }
            StreamEvent::Chunk {
                thread,
                stream_id,
                offset,
                delta,
            } => {
                let Some(stream) = self.get(stream_id) else {
                    // A chunk of a stream this instance never saw start: learn it from a snapshot.
                    return Follow::NeedSnapshot(stream_id.clone());
                };
                let mut st = stream.state.lock().unwrap_or_else(|e| e.into_inner());
                if *offset < st.chars || st.stale {
                    return Follow::None; // already have it, or waiting for a snapshot
                }
                if *offset > st.chars {
                    st.stale = true;
                    return Follow::NeedSnapshot(stream_id.clone());
                }
                st.text.push_str(delta);
                st.chars += delta.chars().count();
                st.retry = None;
                let frame = frame(&ServerFrame::StreamChunk {
                    thread: thread.clone(),
                    stream_id: stream_id.clone(),
                    offset: *offset,
                    delta: delta.clone(),
                });
                send_watchers(&mut st.watchers, &frame);
                Follow::None
            }
            StreamEvent::Reasoning {
                thread,
                stream_id,
                offset,
                delta,
            } => self.apply_reasoning(thread, stream_id, *offset, delta),
            StreamEvent::Snapshot {
                thread,
                stream_id,
                agent_id,
                agent_name,
                debate_id,
                text,
                reasoning,
                model,
                round,
                role,
                version_of,
            } => {
                if self.get(stream_id).is_none() {
                    let start = StreamEvent::Start {
                        thread: thread.clone(),
                        stream_id: stream_id.clone(),
                        agent_id: agent_id.clone(),
                        agent_name: agent_name.clone(),
                        debate_id: debate_id.clone(),
                        model: model.clone(),
                        round: *round,
                        role: *role,
                        version_of: version_of.clone(),
                    };
                    self.apply(&start, hub);
                    if let Some(stream) = self.get(stream_id) {
                        stream.state.lock().unwrap_or_else(|e| e.into_inner()).stale = true;
                    }
                }
                let Some(stream) = self.get(stream_id) else {
                    return Follow::None;
                };
                let mut st = stream.state.lock().unwrap_or_else(|e| e.into_inner());
                let chars = text.chars().count();
                let reasoning_chars = reasoning.chars().count();
                if !st.stale && chars <= st.chars && reasoning_chars <= st.reasoning_chars {
                    return Follow::None;
                }
                // The reasoning the watchers lack first (the stale ones get it in the snapshot).
                reasoning::catch_up(&mut st, thread, stream_id, reasoning);
                // Send the watchers what they lack, as one chunk from what they have.
                let from = if st.stale { 0 } else { st.chars };
                let delta: String = text.chars().skip(from).collect();
                if !delta.is_empty() && !st.stale {
                    let frame = frame(&ServerFrame::StreamChunk {
                        thread: thread.clone(),
                        stream_id: stream_id.clone(),
                        offset: from,
                        delta,
                    });
                    send_watchers(&mut st.watchers, &frame);
                } else if st.stale {
                    let frame = snapshot_frame(thread, stream_id, text, chars, reasoning);
                    send_watchers(&mut st.watchers, &frame);
                }
                st.text = text.clone();
                st.chars = chars;
                st.stale = false;
                if chars > 0 {
                    st.retry = None;
                }
                Follow::None
            }
            StreamEvent::End {
                thread,
                stream_id,
                message,
            } => {
                let frame = frame(&ServerFrame::StreamEnd {
                    thread: thread.clone(),
                    stream_id: stream_id.clone(),
                    message: MessageView::from(&crate::db::Message::from(message)),
                });
                self.finish(stream_id, &frame);
                Follow::None
            }
            StreamEvent::Error {
                thread,
                stream_id,
                code,
                message,
                error_class,
                resets_at,
            } => {
                let frame = frame(&ServerFrame::StreamError {
                    thread: thread.clone(),
                    stream_id: stream_id.clone(),
                    code: *code,
                    message: message.clone(),
                    error_class: *error_class,
                    resets_at: resets_at.clone(),
                });
                self.finish(stream_id, &frame);
                Follow::None
            }
            StreamEvent::Retry {
                thread,
                stream_id,
                attempt,
                retry_in_ms,
                error_class,
            } => {
                if let Some(stream) = self.get(stream_id) {
                    let frame = frame(&ServerFrame::StreamRetry {
                        thread: thread.clone(),
                        stream_id: stream_id.clone(),
                        attempt: *attempt,
                        retry_in_ms: *retry_in_ms,
                        error_class: *error_class,
                    });
                    let mut st = stream.state.lock().unwrap_or_else(|e| e.into_inner());
                    send_watchers(&mut st.watchers, &frame);
                    let wait = RetryWait {
                        attempt: *attempt,
                        retry_in_ms: *retry_in_ms,
                        error_class: *error_class,
                    };
                    st.retry = Some((Instant::now(), wait));
                }
                Follow::None
            }
            StreamEvent::ModelChanged {
                stream_id, model, ..
            } => {
                // The watchers learn it from `stream_start` again (same stream, the new model).
                if let Some(stream) = self.get(stream_id) {
                    *stream.model.write().unwrap_or_else(|e| e.into_inner()) = Some(model.clone());
                    let frame = stream.start_frame();
                    let mut st = stream.state.lock().unwrap_or_else(|e| e.into_inner());
                    send_watchers(&mut st.watchers, &frame);
                }
                Follow::None
            }
            StreamEvent::DebateEnded { debate_id, .. } => {
                self.debates
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(debate_id);
                Follow::None
            }
            StreamEvent::Cancel { .. }
            | StreamEvent::CancelDebate { .. }
            | StreamEvent::SnapshotRequest { .. } => Follow::None,
        }
    }

    fn finish(&self, stream_id: &str, frame: &Frame) {
        let stream = self
            .by_id
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(stream_id);
        if let Some(stream) = stream {
            let mut st = stream.state.lock().unwrap_or_else(|e| e.into_inner());
            send_watchers(&mut st.watchers, frame);
            st.watchers.clear();
        }
    }

    /// A socket finished subscribing to `thread`: give it every running stream as
    /// `stream_start` + `stream_snapshot`, and the live chunks from there on.
    pub fn attach(&self, thread: &str, conn: &Arc<ConnHandle>) {
        for stream in self.in_thread(thread) {
            let mut st = stream.state.lock().unwrap_or_else(|e| e.into_inner());
            if st.watchers.contains_key(&conn.id) {
                continue;
            }
            conn.send(stream.start_frame());
            conn.send(snapshot_frame(
                thread,
                &stream.id,
                &st.text,
                st.chars,
                &st.reasoning,
            ));
            if let Some(retry) = stream.pending_retry(&st) {
                conn.send(retry);
            }
            st.watchers.insert(conn.id, conn.clone());
        }
    }

    /// Stop sending a thread's streams to a socket.
    pub fn detach(&self, thread: &str, conn_id: u64) {
        for stream in self.in_thread(thread) {
            stream
                .state
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .watchers
                .remove(&conn_id);
        }
    }
}

/// Send `frame` to every watcher, forgetting those whose connection is over (or too slow); the
/// connections it made dirty are listed on their shards at once (`realtime::sweep`).
fn send_watchers(watchers: &mut HashMap<u64, Arc<ConnHandle>>, frame: &Frame) {
    let mut listing = Listing::default();
    watchers.retain(|_, c| c.send_listed(frame.clone(), &mut listing));
}

fn snapshot_frame(
    thread: &str,
    stream_id: &str,
    text: &str,
    offset: usize,
    reasoning: &str,
) -> Frame {
    frame(&ServerFrame::StreamSnapshot {
        thread: thread.to_string(),
        stream_id: stream_id.to_string(),
        text: text.to_string(),
        offset,
        reasoning: (!reasoning.is_empty()).then(|| reasoning.to_string()),
    })
}

#[cfg(test)]
mod tests;
