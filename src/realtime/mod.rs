//! Real-time delivery: the WebSocket endpoint, the fan-out hub, resumable agent streams, and the
//! broker that carries events between instances.
//!
//! Every event (a stored message, a revocation, a membership change, an agent stream frame) is
//! applied to this instance first and then handed to the broker for the others; an instance
//! ignores its own echoes. Stored messages arrive from the writer as [`Stored`] events
//! ([`Realtime::deliver`]); stream commands (cancel, snapshot requests) leave as typed values on
//! a channel to whoever runs streams, which this module does not know.

pub mod broker;
pub mod connection;
pub mod hub;
mod inbound;
mod interest;
pub mod outcome;
pub mod protocol;
pub mod redis;
mod session;
pub mod streams;
pub(crate) mod sweep;
mod wakes;
mod wire;

use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc, RwLock,
        atomic::{AtomicU64, Ordering},
    },
};

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

pub use broker::{Broker, BrokerState, Inbound};
pub use connection::routes;
pub use hub::{ConnHandle, Hub};
pub use inbound::apply_inbound;
use protocol::Frame;

use crate::{
    auth::Auth,
    contract::{ErrorCode, MemberView, RemovedReason, ServerFrame},
    db::{Message, writer::Stored},
    metrics::Metrics,
    threads::Membership,
};
use streams::{Follow, StreamEvent, Streams};
use sweep::Listing;

/// Something every instance must learn.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    Message {
        message: WireMessage,
    },
    Revoked {
        session_id: String,
        expires_at: i64,
    },
    MemberAdded {
        thread_id: String,
        user_id: String,
    },
    /// Title, agents or owner changed, after message `at_seq` (`thread_updated`).
    ThreadChanged {
        thread_id: String,
        at_seq: i64,
        title: String,
        owner_id: String,
        agents: Vec<String>,
    },
    /// The member list changed, after message `at_seq` (`members_updated`).
    MembersChanged {
        thread_id: String,
        at_seq: i64,
        members: Vec<MemberView>,
    },
    /// A member lost access (removed or left): their subscriptions end at once (`removed`).
    MemberRemoved {
        thread_id: String,
        user_id: String,
        reason: RemovedReason,
    },
    /// The thread was deleted: every subscription ends at once (`removed`, reason `deleted`),
    /// and the members' other sockets learn it too (their thread lists).
    ThreadDeleted {
        thread_id: String,
        /// The members at deletion (empty from an instance that predates the field).
        #[serde(default)]
        members: Vec<String>,
    },
    /// A lifecycle frame (`thread_updated`, `members_updated`) for the thread lists of the
    /// `users`' sockets that do not follow `thread` (those get the copy ordered with the
    /// messages). Instance-wide: every instance holds some member's socket.
    Notice {
        users: Vec<String>,
        thread: String,
        frame: Box<ServerFrame>,
    },
    /// A frame for every socket of `user_id`, on every instance, whatever they follow (their
    /// memory items changed: `memory`).
    ToUser {
        user_id: String,
        frame: Box<ServerFrame>,
    },
    /// A document of the thread was uploaded, changed state or was deleted (`document`).
    Document {
        thread_id: String,
        document: crate::contract::documents::DocumentView,
        #[serde(default)]
        deleted: bool,
    },
    /// Agent stream events (start, chunks, end, error) and requests to the running instance.
    Stream(StreamEvent),
}

impl Event {
    pub fn message(m: &Message) -> Event {
        Event::Message {
            message: WireMessage::from(m),
        }
    }

    /// The thread the event concerns; `None` for instance-wide events (revocations, stream
    /// requests addressed by stream id).
    pub fn thread(&self) -> Option<&str> {
        match self {
            Event::Message { message } => Some(&message.thread_id),
            Event::MemberAdded { thread_id, .. }
            | Event::ThreadChanged { thread_id, .. }
            | Event::MembersChanged { thread_id, .. }
            | Event::MemberRemoved { thread_id, .. }
            | Event::ThreadDeleted { thread_id, .. }
            | Event::Document { thread_id, .. } => Some(thread_id),
            Event::Revoked { .. } | Event::Notice { .. } | Event::ToUser { .. } => None,
            Event::Stream(s) => s.thread(),
        }
    }
}

/// A message as carried between instances.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WireMessage {
    pub id: String,
    pub thread_id: String,
    pub seq: i64,
    pub client_id: String,
    pub author_kind: String,
    pub author_id: String,
    pub author_name: String,
    pub body: String,
    pub created_at: i64,
    pub status: Option<String>,
    #[serde(default)]
    pub prompt_tokens: Option<i64>,
    #[serde(default)]
    pub completion_tokens: Option<i64>,
    #[serde(default)]
    pub meta: Option<Box<crate::db::MessageMeta>>,
}

impl From<&Message> for WireMessage {
    fn from(m: &Message) -> Self {
        Self {
            id: m.id.clone(),
            thread_id: m.thread_id.clone(),
            seq: m.seq,
            client_id: m.client_id.clone(),
            author_kind: m.author.kind.as_str().to_string(),
            author_id: m.author.id.clone(),
            author_name: m.author.name.clone(),
            body: m.body.clone(),
            created_at: m.created_at,
            status: m.status.clone(),
            prompt_tokens: m.prompt_tokens,
            completion_tokens: m.completion_tokens,
            meta: m.meta.clone(),
        }
    }
}

impl From<&WireMessage> for Message {
    fn from(w: &WireMessage) -> Self {
        use crate::db::{Author, AuthorKind};
        Message {
            id: w.id.clone(),
            thread_id: w.thread_id.clone(),
            seq: w.seq,
            client_id: w.client_id.clone(),
            author: Author {
                kind: if w.author_kind == "agent" {
                    AuthorKind::Agent
                } else {
                    AuthorKind::User
                },
                id: w.author_id.clone(),
                name: w.author_name.clone(),
            },
            body: w.body.clone(),
            created_at: w.created_at,
            status: w.status.clone(),
            prompt_tokens: w.prompt_tokens,
            completion_tokens: w.completion_tokens,
            meta: w.meta.clone(),
        }
    }
}

/// The instance's real-time state: hub, open connections, and the broker.
pub struct Realtime {
    pub hub: Hub,
    conns: RwLock<HashMap<u64, Arc<ConnHandle>>>,
    next_id: AtomicU64,
    broker: Arc<dyn Broker>,
    /// Agent streams known to this instance (running here or elsewhere).
    pub streams: Streams,
    /// Cancel and snapshot requests, for whoever runs streams on this instance.
    stream_commands: mpsc::UnboundedSender<StreamEvent>,
    auth: Arc<Auth>,
    members: Arc<Membership>,
    pub metrics: Arc<Metrics>,
    /// The writers of every socket's deliveries.
    pub sweepers: sweep::Sweepers,
}

impl Realtime {
    pub fn new(
        ring_size: usize,
        auth: Arc<Auth>,
        members: Arc<Membership>,
        metrics: Arc<Metrics>,
        stream_commands: mpsc::UnboundedSender<StreamEvent>,
        broker: Arc<dyn Broker>,
    ) -> Self {
        Self {
            hub: Hub::new(ring_size),
            conns: RwLock::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            broker,
            streams: Streams::default(),
            stream_commands,
            auth,
            members,
            metrics,
            sweepers: sweep::Sweepers::default(),
        }
    }

    pub fn broker(&self) -> &Arc<dyn Broker> {
        &self.broker
    }

    pub fn broker_state(&self) -> BrokerState {
        self.broker.state()
    }

    /// Apply an event here, then share it with the other instances.
    pub fn publish(&self, event: Event) {
        if let Event::Stream(e) = &event {
            self.streams.note_local(e);
        }
        self.apply(&event);
        self.broker.publish(&event);
    }

    /// A socket starts following `thread`: its live messages are buffered until
    /// [`Hub::activate`]. Returns once the other instances' events for the thread reach this
    /// instance (sharded fan-out), so that whatever the caller reads from the database next
    /// and whatever arrives live leave no gap between them. Pair with [`Realtime::unsubscribe`].
    pub async fn subscribe(&self, thread: &str, conn: Arc<ConnHandle>) {
        self.hub.subscribe(thread, conn);
        self.broker.follow(thread).await;
    }

    /// A socket stops following `thread`; some time after the last one here, the instance
    /// stops receiving the thread's events ([`Inbound::Unfollowed`]).
    pub fn unsubscribe(&self, thread: &str, conn_id: u64) {
        self.hub.unsubscribe(thread, conn_id);
        self.streams.detach(thread, conn_id);
        self.broker.unfollow(thread);
    }

    /// The thread's events no longer reach this instance: forget what it knew of the thread
    /// (a ring, a head and stream mirrors kept would go stale), unless a socket came back.
    pub fn forget(&self, thread: &str) {
        if self.hub.forget(thread) {
            self.streams.forget_mirrors(thread);
        }
    }

    /// Apply an event (from this instance or another).
    pub fn apply(&self, event: &Event) {
        match event {
            Event::Message { message } => self.hub.publish(&Message::from(message)),
            Event::Revoked {
                session_id,
                expires_at,
            } => {
                self.auth.revocations.insert(session_id, *expires_at);
                self.close_session(session_id);
            }
            Event::MemberAdded { thread_id, user_id } => self.members.add(thread_id, user_id),
            Event::ThreadChanged {
                thread_id,
                at_seq,
                title,
                owner_id,
                agents,
            } => {
                let frame = protocol::frame(&ServerFrame::ThreadUpdated {
                    thread: thread_id.clone(),
                    title: title.clone(),
                    owner_id: owner_id.clone(),
                    agents: agents.clone(),
                });
                self.hub.publish_change(thread_id, *at_seq, &frame);
            }
            Event::MembersChanged {
                thread_id,
                at_seq,
                members,
            } => {
                self.members.set(
                    thread_id,
                    members.iter().map(|m| m.user_id.clone()).collect(),
                );
                let frame = protocol::frame(&ServerFrame::MembersUpdated {
                    thread: thread_id.clone(),
                    members: members.clone(),
                });
                self.hub.publish_change(thread_id, *at_seq, &frame);
            }
            Event::MemberRemoved {
                thread_id,
                user_id,
                reason,
            } => {
                self.members.remove(thread_id, user_id);
                self.end_subscriptions(
                    thread_id,
                    Some(user_id),
                    *reason,
                    std::slice::from_ref(user_id),
                );
            }
            Event::ThreadDeleted { thread_id, members } => {
                self.members.forget_thread(thread_id);
                self.end_subscriptions(thread_id, None, RemovedReason::Deleted, members);
            }
            Event::Notice {
                users,
                thread,
                frame,
            } => self.tell_lists(users, thread, frame),
            Event::ToUser { user_id, frame } => self.tell_user(user_id, frame),
            Event::Document {
                thread_id,
                document,
                deleted,
            } => {
                let frame = protocol::frame(&ServerFrame::Document {
                    thread: thread_id.clone(),
                    document: document.clone(),
                    deleted: *deleted,
                });
                let mut listing = Listing::default();
                for conn in self.hub.live_subscribers(thread_id) {
                    conn.send_listed(frame.clone(), &mut listing);
                }
            }
            Event::Stream(e) => {
                if let Follow::NeedSnapshot(stream_id) = self.streams.apply(e, &self.hub) {
                    self.broker
                        .publish(&Event::Stream(StreamEvent::SnapshotRequest { stream_id }));
                }
                if matches!(
                    e,
                    StreamEvent::Cancel { .. }
                        | StreamEvent::CancelDebate { .. }
                        | StreamEvent::SnapshotRequest { .. }
                ) {
                    let _ = self.stream_commands.send(e.clone());
                }
            }
        }
    }

    /// Deliver what the writer stores, in commit order (here and on every instance), then hand
    /// each event on to `next` (the agents), so a question is delivered before its answer starts,
    /// and a copy of each message stored for the first time to `heard` (the memory capture).
    pub fn deliver(
        self: &Arc<Self>,
        mut stored: mpsc::UnboundedReceiver<Stored>,
        next: mpsc::UnboundedSender<Stored>,
        heard: mpsc::UnboundedSender<Message>,
    ) {
        let me = self.clone();
        tokio::spawn(async move {
            while let Some(s) = stored.recv().await {
                match (&s.stream_id, s.first) {
                    // An agent's answer: `stream_end` (carrying it), then the message.
                    (Some(stream_id), true) => {
                        me.publish(Event::Stream(StreamEvent::End {
                            thread: s.message.thread_id.clone(),
                            stream_id: stream_id.clone(),
                            message: WireMessage::from(&s.message),
                        }));
                        me.publish_message(&s.message);
                    }
                    // A repeated answer was delivered with its stream already.
                    (Some(_), false) => {}
                    (None, _) => me.publish_message(&s.message),
                }
                if s.first {
                    let _ = heard.send(s.message.clone());
                }
                if s.request.is_some() && next.send(s).is_err() {
                    return;
                }
            }
        });
    }

    /// Publish a stored message (fan-out here and on every instance).
    pub fn publish_message(&self, message: &Message) {
        self.hub.publish(message);
        self.broker.publish(&Event::message(message));
    }

    pub fn next_conn_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    pub fn register(&self, conn: Arc<ConnHandle>) {
        self.conns
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(conn.id, conn);
    }

    pub fn unregister(&self, id: u64) {
        self.conns
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
    }

    pub fn connection_count(&self) -> usize {
        self.conns.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    fn all(&self) -> Vec<Arc<ConnHandle>> {
        self.conns
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// Send a frame to every connection (status changes).
    pub fn broadcast_all(&self, frame: &Frame) {
        let mut listing = Listing::default();
        for c in self.all() {
            c.send_listed(frame.clone(), &mut listing);
        }
    }

    /// Close every connection with `code` (1012 when draining).
    pub fn close_all(&self, code: u16, reason: &'static str) {
        for c in self.all() {
            c.close(code, reason);
        }
    }

    /// End subscriptions to a thread (of one user, or everyone's) with a `removed` frame; they
    /// also stop following the thread's agent streams.
    fn end_subscriptions(
        &self,
        thread: &str,
        user: Option<&str>,
        reason: RemovedReason,
        members: &[String],
    ) {
        let removed = ServerFrame::Removed {
            thread: thread.to_string(),
            reason,
        };
        let ended: HashSet<u64> = self
            .hub
            .end_subscriptions(thread, user, &protocol::frame(&removed))
            .into_iter()
            .collect();
        for conn in &ended {
            self.streams.detach(thread, *conn);
        }
        // The members' other sockets: their thread lists drop the thread too.
        self.tell_lists_except(members, thread, &removed, &ended);
    }

    /// Send `frame` to the sockets of `users` on this instance that are not subscribed to
    /// `thread` (a subscriber gets its own copy, in order with the thread's messages).
    fn tell_lists(&self, users: &[String], thread: &str, frame: &ServerFrame) {
        self.tell_lists_except(users, thread, frame, &HashSet::new());
    }

    /// [`Realtime::tell_lists`], skipping the connections in `told` as well.
    fn tell_lists_except(
        &self,
        users: &[String],
        thread: &str,
        frame: &ServerFrame,
        told: &HashSet<u64>,
    ) {
        if users.is_empty() {
            return;
        }
        let mut following = self.hub.subscriber_ids(thread);
        following.extend(told);
        let (mut out, mut listing) = (None, Listing::default());
        for c in self.all() {
            if following.contains(&c.id) || !users.iter().any(|u| *u == c.user_id) {
                continue;
            }
            c.send_listed(
                out.get_or_insert_with(|| protocol::frame(frame)).clone(),
                &mut listing,
            );
        }
    }

    /// Send `frame` to every socket of `user_id` on this instance.
    fn tell_user(&self, user_id: &str, frame: &ServerFrame) {
        let mut out = None;
        for c in self.all().into_iter().filter(|c| c.user_id == user_id) {
            c.send(out.get_or_insert_with(|| protocol::frame(frame)).clone());
        }
    }

    /// Close the connections of a revoked session with 4401.
    pub fn close_session(&self, session_id: &str) {
        for c in self
            .all()
            .into_iter()
            .filter(|c| c.session_id == session_id)
        {
            c.send(
                protocol::ErrorFrame::new(ErrorCode::Unauthorized, "the session has ended")
                    .to_frame(),
            );
            c.close(4401, "unauthorized");
        }
    }
}
