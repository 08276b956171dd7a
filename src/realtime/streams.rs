//! Agent streams as first-class, resumable objects. Every instance keeps the streams it knows
//! (its own and, through the broker, the others'): the text so far and the sockets watching.
//!
//! A socket becomes a watcher atomically with receiving a snapshot (under the stream's lock), so
//! after `stream_snapshot` it receives exactly the chunks from that offset on: nothing missing,
//! nothing repeated. Offsets count characters (Unicode code points).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, RwLock},
};

use serde::{Deserialize, Serialize};

use crate::realtime::{
    WireMessage,
    hub::{ConnHandle, Hub},
    protocol::{ErrorFrame, Frame, frame},
};
use crate::{
    auth::Claims,
    contract::{AgentRef, ErrorCode, MessageView, ServerFrame},
    state::AppState,
    threads::is_member,
};

/// Everything that happens to a stream, applied on every instance.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "stream_event", rename_all = "snake_case")]
pub enum StreamEvent {
    Start {
        thread: String,
        stream_id: String,
        agent_id: String,
        agent_name: String,
        debate_id: Option<String>,
    },
    Chunk {
        thread: String,
        stream_id: String,
        offset: usize,
        delta: String,
    },
    End {
        thread: String,
        stream_id: String,
        message: WireMessage,
    },
    Error {
        thread: String,
        stream_id: String,
        code: ErrorCode,
        message: String,
    },
    /// Asks the instance running the stream (or debate) to stop it.
    Cancel { stream_id: String },
    /// Asks the instance running the stream to publish its full text (a mirror missed chunks).
    SnapshotRequest { stream_id: String },
    /// The full text so far, from the running instance.
    Snapshot {
        thread: String,
        stream_id: String,
        agent_id: String,
        agent_name: String,
        debate_id: Option<String>,
        text: String,
    },
}

/// A stream this instance knows about.
pub struct Stream {
    pub id: String,
    pub thread: String,
    pub agent_id: String,
    pub agent_name: String,
    pub debate_id: Option<String>,
    state: Mutex<StreamState>,
}

#[derive(Default)]
struct StreamState {
    text: String,
    chars: usize,
    watchers: HashMap<u64, Arc<ConnHandle>>,
    /// A mirror that missed chunks: its text is not trustworthy until a snapshot arrives.
    stale: bool,
}

impl Stream {
    fn start_frame(&self) -> Frame {
        frame(&ServerFrame::StreamStart {
            thread: self.thread.clone(),
            stream_id: self.id.clone(),
            agent: AgentRef {
                id: self.agent_id.clone(),
                name: self.agent_name.clone(),
            },
            debate_id: self.debate_id.clone(),
        })
    }

    /// The text generated so far.
    pub fn text(&self) -> String {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .text
            .clone()
    }
}

/// The streams this instance knows, by id and by thread.
#[derive(Default)]
pub struct Streams {
    by_id: RwLock<HashMap<String, Arc<Stream>>>,
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
            } => {
                let stream = Arc::new(Stream {
                    id: stream_id.clone(),
                    thread: thread.clone(),
                    agent_id: agent_id.clone(),
                    agent_name: agent_name.clone(),
                    debate_id: debate_id.clone(),
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
                for conn in hub.live_subscribers(thread) {
                    if conn.send(frame.clone()) {
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
                let frame = frame(&ServerFrame::StreamChunk {
                    thread: thread.clone(),
                    stream_id: stream_id.clone(),
                    offset: *offset,
                    delta: delta.clone(),
                });
                st.watchers.retain(|_, c| c.send(frame.clone()));
                Follow::None
            }
            StreamEvent::Snapshot {
                thread,
                stream_id,
                agent_id,
                agent_name,
                debate_id,
                text,
            } => {
                if self.get(stream_id).is_none() {
                    let start = StreamEvent::Start {
                        thread: thread.clone(),
                        stream_id: stream_id.clone(),
                        agent_id: agent_id.clone(),
                        agent_name: agent_name.clone(),
                        debate_id: debate_id.clone(),
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
                if !st.stale && chars <= st.chars {
                    return Follow::None;
                }
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
                    st.watchers.retain(|_, c| c.send(frame.clone()));
                } else if st.stale {
                    let frame = snapshot_frame(thread, stream_id, text, chars);
                    st.watchers.retain(|_, c| c.send(frame.clone()));
                }
                st.text = text.clone();
                st.chars = chars;
                st.stale = false;
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
            } => {
                let frame = frame(&ServerFrame::StreamError {
                    thread: thread.clone(),
                    stream_id: stream_id.clone(),
                    code: *code,
                    message: message.clone(),
                });
                self.finish(stream_id, &frame);
                Follow::None
            }
            StreamEvent::Cancel { .. } | StreamEvent::SnapshotRequest { .. } => Follow::None,
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
            for c in st.watchers.values() {
                c.send(frame.clone());
            }
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
            conn.send(snapshot_frame(thread, &stream.id, &st.text, st.chars));
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

fn snapshot_frame(thread: &str, stream_id: &str, text: &str, offset: usize) -> Frame {
    frame(&ServerFrame::StreamSnapshot {
        thread: thread.to_string(),
        stream_id: stream_id.to_string(),
        text: text.to_string(),
        offset,
    })
}

/// Stop a stream (or the debate it belongs to), from any member, on any instance.
pub async fn cancel(state: &AppState, user: &Claims, stream_id: &str) -> Result<(), ErrorFrame> {
    let not_found = || ErrorFrame::new(ErrorCode::NotFound, "no such stream");
    let Some(stream) = state.realtime.streams.get(stream_id) else {
        return Err(not_found());
    };
    match is_member(state, &stream.thread, &user.uid).await {
        Ok(true) => {}
        Ok(false) => return Err(not_found()),
        Err(_) => {
            return Err(ErrorFrame::new(
                ErrorCode::Unavailable,
                "the database is unavailable; retry later",
            )
            .retry_after(2000));
        }
    }
    // A typed command to whichever instance runs the stream (this one included).
    state
        .realtime
        .publish(super::Event::Stream(StreamEvent::Cancel {
            stream_id: stream_id.to_string(),
        }));
    Ok(())
}
