//! One authenticated WebSocket's session: the client frames it reads (subscribe, send, debate,
//! cancel, ping), the subscriptions it owns, the acks it turns writer events into, and the
//! liveness rules (pings, dead peers, idle clients, token expiry, flooding). It returns how the
//! connection ended ([`Ending`]), which the connection task counts once.

use std::{
    collections::{HashSet, VecDeque},
    sync::Arc,
    time::{Duration, Instant},
};

use axum::extract::ws::Message as WsMessage;
use tokio::sync::mpsc;

use super::{
    hub::{ConnHandle, Control},
    outcome::Ending,
    protocol::{self, ClientFrame, ErrorFrame},
    wakes::{Others, Woke, poll_woke},
    wire::Wire,
};
use crate::{
    auth::Claims,
    contract::ErrorCode,
    db::{
        DbState, Page, StoreError,
        writer::{Rejection, WriteEvent},
    },
    send::{SendError, SendRequest, submit},
    state::AppState,
    threads::is_member,
};

/// Strikes (rate-limited frames) tolerated per window before closing with 1008.
const FLOOD_STRIKES: usize = 50;
const FLOOD_WINDOW: Duration = Duration::from_secs(10);

pub(super) struct Session {
    state: AppState,
    handle: Arc<ConnHandle>,
    claims: Claims,
    threads: HashSet<String>,
    /// Acks from the writer; created on the first send, so idle sockets do not pay for it.
    events_tx: Option<mpsc::UnboundedSender<WriteEvent>>,
    events_rx: Option<mpsc::UnboundedReceiver<WriteEvent>>,
    strikes: VecDeque<Instant>,
    /// Per-connection frame budget (`None`: off, with the send limit, for load tests).
    frames: Option<crate::limits::rate::DirectLimiter>,
}

impl Session {
    pub(super) fn new(state: AppState, handle: Arc<ConnHandle>, claims: Claims) -> Self {
        let frames = (state.settings.limits.send_rate_per_sec > 0)
            .then(|| crate::limits::rate::direct(FRAME_RATE, FRAME_BURST))
            .flatten();
        Self {
            state,
            handle,
            claims,
            threads: HashSet::new(),
            events_tx: None,
            events_rx: None,
            strikes: VecDeque::new(),
            frames,
        }
    }

    /// Where the writer sends acks for this socket's sends.
    fn reply(&mut self) -> mpsc::UnboundedSender<WriteEvent> {
        if let Some(tx) = &self.events_tx {
            return tx.clone();
        }
        let (tx, rx) = mpsc::unbounded_channel();
        self.events_tx = Some(tx.clone());
        self.events_rx = Some(rx);
        tx
    }

    fn send(&self, frame: protocol::Frame) {
        self.handle.send(frame);
    }

    fn error(&self, e: ErrorFrame) {
        self.send(e.to_frame());
    }

    pub(super) async fn serve(&mut self, wire: &mut Wire) -> Ending {
        let rt = &self.state.settings.realtime;
        let (ping_every, dead_after, idle_after) = (
            Duration::from_millis(rt.ping_interval_ms),
            Duration::from_millis(rt.dead_peer_ms),
            Duration::from_millis(rt.idle_timeout_ms),
        );
        let tick = ping_every
            .min(dead_after / 4)
            .min(idle_after / 4)
            .min(Duration::from_secs(5))
            .max(Duration::from_millis(50));
        // Token expiry is enforced on the open socket, to the second: the one timer fires at
        // the next tick or at expiry, whichever is first.
        let expires_at = tokio::time::Instant::now()
            + Duration::from_millis((self.claims.exp - crate::db::now_ms()).max(0) as u64);
        let timer = tokio::time::sleep_until(expires_at.min(tokio::time::Instant::now() + tick));
        tokio::pin!(timer);
        let (mut last_seen, mut last_frame, mut last_ping) =
            (Instant::now(), Instant::now(), Instant::now());
        let db = self.state.db.state().as_str();
        self.send(protocol::welcome(
            &self.handle.id.to_string(),
            &self.claims.uid,
            &self.claims.name,
            db,
        ));
        self.warm_membership();
        let frames_in = self.state.metrics.ws_frames.with(&["in"]);
        let mut others = Others::new(self.handle.clone());
        loop {
            let woke = std::future::poll_fn(|cx| {
                let acks = self.events_rx.as_mut();
                poll_woke(cx, wire, &mut others, acks, timer.as_mut())
            })
            .await;
            let frame = match woke {
                Woke::Done => return wire.ending(),
                Woke::Killed => return Ending::error(None, "slow consumer"),
                Woke::Control(Control::FillGap { thread, from, to }) => {
                    self.fill_gap(thread, from, to);
                    continue;
                }
                Woke::Ack(event) => {
                    // A commit answers many sends at once: turn them all into frames before
                    // the socket is written, so they leave in one write.
                    self.on_write_event(event);
                    while let Some(event) =
                        self.events_rx.as_mut().and_then(|rx| rx.try_recv().ok())
                    {
                        self.on_write_event(event);
                    }
                    continue;
                }
                Woke::Timer => {
                    let now = Instant::now();
                    // Expiry by both clocks on purpose: the timer's own (it fired at
                    // `expires_at`, which the wall clock in whole ms may not show yet: without
                    // it the timer would be re-armed for an instant already past, again and
                    // again) and the wall clock the token's `exp` is written in (a host whose
                    // clock jumped ahead).
                    if tokio::time::Instant::now() >= expires_at
                        || self.claims.exp <= crate::db::now_ms()
                        || self.state.auth.revocations.is_revoked(&self.claims.sid)
                    {
                        self.error(ErrorFrame::new(
                            ErrorCode::Unauthorized,
                            "the session has expired",
                        ));
                        self.handle.close(4401, "unauthorized");
                        return Ending::closed(Some(4401), "session expired");
                    }
                    if now.duration_since(last_seen) >= dead_after {
                        tracing::info!("closing dead peer");
                        self.handle.close(1001, "no response to pings");
                        return Ending::error(Some(1001), "no response to pings");
                    }
                    if now.duration_since(last_frame) >= idle_after {
                        self.handle.close(4408, "idle timeout");
                        return Ending::closed(Some(4408), "idle timeout");
                    }
                    if now.duration_since(last_ping) >= ping_every {
                        last_ping = now;
                        let _ = self.handle_ping();
                    }
                    timer
                        .as_mut()
                        .reset(expires_at.min(tokio::time::Instant::now() + tick));
                    continue;
                }
                Woke::Read(frame) => frame,
            };
            last_seen = Instant::now();
            match frame {
                None => return Ending::closed(None, "client closed"),
                Some(Err(e)) => return self.read_error(e),
                Some(Ok(WsMessage::Text(text))) => {
                    frames_in.inc();
                    last_frame = Instant::now();
                    // Boxed: the frame handlers' futures (database reads) would otherwise make
                    // every idle connection's task as large as they are.
                    if !wire.pumping(Box::pin(self.on_text(text.as_str()))).await {
                        return Ending::error(Some(1008), "flooding");
                    }
                }
                Some(Ok(WsMessage::Binary(_))) => {
                    frames_in.inc();
                    last_frame = Instant::now();
                    self.error(ErrorFrame::new(
                        ErrorCode::InvalidJson,
                        "binary frames are not accepted; send JSON text",
                    ));
                }
                Some(Ok(WsMessage::Close(frame))) => {
                    return Ending::closed(frame.map(|f| f.code), "client closed");
                }
                Some(Ok(_)) => {} // ping/pong: liveness only
            }
        }
    }

    fn handle_ping(&self) -> bool {
        self.handle.ping()
    }

    /// A read failed: close with the code that says why, when the peer can still hear it.
    fn read_error(&self, e: axum::Error) -> Ending {
        use tungstenite::{Error, error::ProtocolError};
        let inner = e.into_inner();
        match inner.downcast_ref::<Error>() {
            Some(Error::Utf8(_)) => {
                self.handle.close(1007, "invalid UTF-8");
                Ending::error(Some(1007), "invalid UTF-8")
            }
            Some(Error::Capacity(_)) => {
                self.handle.close(1009, "frame too large");
                Ending::error(Some(1009), "frame too large")
            }
            Some(Error::ConnectionClosed | Error::AlreadyClosed) => {
                Ending::closed(None, "client closed")
            }
            Some(Error::Protocol(ProtocolError::ResetWithoutClosingHandshake)) => {
                Ending::error(None, "reset without closing handshake")
            }
            Some(Error::Protocol(p)) => {
                tracing::debug!(error = %p, "websocket protocol error");
                self.handle.close(1002, "protocol error");
                Ending::error(Some(1002), "protocol error")
            }
            _ => Ending::error(None, "I/O error"),
        }
    }

    /// Generic per-connection frame budget, on top of the per-user send limit (and, like it,
    /// off when the send limit is off, for load tests).
    fn take_frame_token(&mut self) -> bool {
        self.frames.as_ref().is_none_or(|l| l.check().is_ok())
    }

    /// Count a rate-limited frame; `false` when the client keeps flooding (close 1008).
    fn strike(&mut self) -> bool {
        let now = Instant::now();
        self.strikes.push_back(now);
        while self
            .strikes
            .front()
            .is_some_and(|t| now.duration_since(*t) > FLOOD_WINDOW)
        {
            self.strikes.pop_front();
        }
        if self.strikes.len() > FLOOD_STRIKES {
            self.handle.close(1008, "flooding");
            return false;
        }
        true
    }

    /// Handle one text frame; `false` ends the session.
    async fn on_text(&mut self, text: &str) -> bool {
        if !self.take_frame_token() {
            self.error(ErrorFrame::new(ErrorCode::RateLimited, "too many frames").retry_after(100));
            return self.strike();
        }
        let frame = match protocol::parse(text) {
            Ok(f) => f,
            Err(e) => {
                self.error(e);
                return true;
            }
        };
        let changes = matches!(
            frame,
            ClientFrame::Send { .. }
                | ClientFrame::Debate { .. }
                | ClientFrame::Cancel { .. }
                | ClientFrame::CancelDebate { .. }
                | ClientFrame::Regenerate(_)
        );
        if changes && !crate::auth::access::may_change(&self.claims) {
            let mut refused = ErrorFrame::new(ErrorCode::Forbidden, "this API token may only read");
            if let ClientFrame::Send { client_id, .. }
            | ClientFrame::Debate { client_id, .. }
            | ClientFrame::Regenerate(crate::regenerate::RegenerateRequest {
                client_id, ..
            }) = &frame
            {
                refused = refused.client(Some(client_id.as_str()));
            }
            self.error(refused);
            return true;
        }
        match frame {
            ClientFrame::Ping { nonce } => self.send(protocol::pong(nonce.as_ref())),
            ClientFrame::Subscribe { thread, after_seq } => self.subscribe(thread, after_seq).await,
            ClientFrame::Unsubscribe { thread } => {
                if self.threads.remove(&thread) {
                    self.state.realtime.unsubscribe(&thread, self.handle.id);
                }
                self.send(protocol::unsubscribed(&thread));
            }
            ClientFrame::Send {
                thread,
                client_id,
                body,
                agent,
                agents,
            } => {
                let cid = client_id.as_str().to_string();
                let agent = match agent {
                    Some(a) => Some(crate::send::AgentAsk::Answer(a)),
                    None if !agents.is_empty() => Some(crate::send::AgentAsk::Several(agents)),
                    None => None,
                };
                let req = SendRequest {
                    thread,
                    client_id,
                    body,
                    agent,
                };
                let reply = self.reply();
                if let Err(e) = submit(&self.state, &self.claims, req, reply).await {
                    return self.send_refused(e, &cid);
                }
            }
            ClientFrame::Debate {
                thread,
                client_id,
                topic,
                agents,
                rounds,
                mediator,
            } => {
                let cid = client_id.as_str().to_string();
                let reply = self.reply();
                if let Err(e) = crate::send::start_debate(
                    &self.state,
                    &self.claims,
                    thread,
                    client_id,
                    topic,
                    agents,
                    rounds,
                    mediator,
                    reply,
                )
                .await
                {
                    return self.send_refused(e, &cid);
                }
            }
            ClientFrame::Cancel { stream_id } => {
                if let Err(e) = super::streams::cancel(&self.state, &self.claims, &stream_id).await
                {
                    self.error(e);
                }
            }
            ClientFrame::CancelDebate { debate_id } => {
                if let Err(e) =
                    super::streams::cancel_debate(&self.state, &self.claims, &debate_id).await
                {
                    self.error(e);
                }
            }
            ClientFrame::Regenerate(req) => {
                let (cid, thread) = (req.client_id.as_str().to_string(), req.thread.clone());
                match crate::regenerate::submit(&self.state, &self.claims, req).await {
                    Ok(version_of) => {
                        self.send(protocol::ack_regenerate(&cid, &thread, &version_of))
                    }
                    Err(e) => return self.send_refused(e, &cid),
                }
            }
        }
        true
    }

    fn send_refused(&mut self, e: SendError, client_id: &str) -> bool {
        let mut frame = ErrorFrame::new(ErrorCode::from(&e), e.message()).client(Some(client_id));
        if let Some(ms) = e.retry_after_ms() {
            frame = frame.retry_after(ms);
        }
        frame = frame.resets_at(e.resets_at());
        self.error(frame);
        // Flood control counts refusals by the per-user send limit only.
        if matches!(e, SendError::RateLimited { .. }) {
            return self.strike();
        }
        true
    }

    fn on_write_event(&self, event: WriteEvent) {
        let frame = match event {
            WriteEvent::Queued {
                thread_id,
                client_id,
            } => protocol::ack_queued(&client_id, &thread_id),
            WriteEvent::Persisted { message, .. } => {
                protocol::ack_persisted(&message.client_id, &message)
            }
            WriteEvent::Rejected {
                client_id, reason, ..
            } => {
                let e = match reason {
                    Rejection::ClientIdTaken => ErrorFrame::new(
                        ErrorCode::Conflict,
                        "client_id already used by another author",
                    ),
                    Rejection::NoThread => ErrorFrame::new(ErrorCode::NotFound, "thread not found"),
                    Rejection::Internal => {
                        ErrorFrame::new(ErrorCode::Internal, "the message could not be stored")
                    }
                };
                e.client(Some(&client_id)).to_frame()
            }
        };
        self.send(frame);
    }

    /// Learn which threads this user belongs to while the database is up, so subscriptions and
    /// sends can be authorised during an outage.
    fn warm_membership(&self) {
        let state = self.state.clone();
        let uid = self.claims.uid.clone();
        tokio::spawn(async move {
            let user = uid.clone();
            if let Ok(threads) = state
                .db
                .run(|s| async move { s.memberships(&user).await })
                .await
            {
                state.members.note_user_threads(&uid, threads);
            }
        });
    }

    async fn subscribe(&mut self, thread: String, after_seq: Option<i64>) {
        let unavailable = || {
            ErrorFrame::new(
                ErrorCode::Unavailable,
                "the database is unavailable; retry later",
            )
            .retry_after(2000)
        };
        match is_member(&self.state, &thread, &self.claims.uid).await {
            Ok(true) => {}
            Ok(false) => {
                return self.error(ErrorFrame::new(ErrorCode::NotFound, "thread not found"));
            }
            Err(_) => return self.error(unavailable()),
        }
        let realtime = &self.state.realtime;
        if self.threads.insert(thread.clone()) {
            realtime.subscribe(&thread, self.handle.clone()).await;
        } else {
            // Subscribing again (a resync): restart the subscription, still followed once.
            realtime.hub.subscribe(&thread, self.handle.clone());
        }
        match self.replay(&thread, after_seq).await {
            Ok(last) => {
                realtime.hub.activate(&thread, self.handle.id, last);
                // Running agent streams: stream_start + stream_snapshot, then live chunks.
                realtime.streams.attach(&thread, &self.handle);
            }
            Err(e) => {
                self.threads.remove(&thread);
                realtime.unsubscribe(&thread, self.handle.id);
                self.error(e);
            }
        }
    }

    /// Send `subscribed` and the missed messages; returns the last `seq` the client now has.
    async fn replay(&self, thread: &str, after_seq: Option<i64>) -> Result<i64, ErrorFrame> {
        let unavailable = || {
            ErrorFrame::new(
                ErrorCode::Unavailable,
                "the database is unavailable; retry later",
            )
            .retry_after(2000)
        };
        let replay_max = self.state.settings.realtime.replay_max as i64;
        let hub = &self.state.realtime.hub;
        if self.state.db.state() == DbState::Up {
            let (id, after) = (thread.to_string(), after_seq);
            let read = self
                .state
                .db
                .run(|s| async move {
                    let head = s
                        .thread(&id)
                        .await?
                        .map(|t| t.last_seq)
                        .ok_or(StoreError::NotFound)?;
                    let missed = match after {
                        Some(a) if head > a && head - a <= replay_max => {
                            s.messages(&id, Page::After(a), replay_max).await?
                        }
                        _ => Vec::new(),
                    };
                    Ok((head, missed))
                })
                .await;
            match read {
                Ok((head, missed)) => {
                    hub.note_head(thread, head);
                    self.send(protocol::subscribed(thread, head));
                    let Some(after) = after_seq else {
                        return Ok(head);
                    };
                    if head - after > replay_max {
                        self.send(protocol::resync(thread));
                        return Ok(head);
                    }
                    let mut last = after.min(head);
                    for m in &missed {
                        self.send(protocol::message_frame(m));
                        last = m.seq;
                    }
                    return Ok(last.max(after.min(head)));
                }
                Err(StoreError::NotFound) => {
                    return Err(ErrorFrame::new(ErrorCode::NotFound, "thread not found"));
                }
                Err(_) => {} // fall through to the in-memory ring
            }
        }
        let Some(head) = hub.head(thread) else {
            return Err(unavailable());
        };
        let after = after_seq.unwrap_or(head);
        if head - after > replay_max {
            self.send(protocol::subscribed(thread, head));
            self.send(protocol::resync(thread));
            return Ok(head);
        }
        let (head, frames) = hub
            .replay_from_ring(thread, after)
            .ok_or_else(unavailable)?;
        self.send(protocol::subscribed(thread, head));
        for f in frames {
            self.send(f);
        }
        Ok(head.max(after))
    }

    /// A gap in a thread's sequence (messages from several instances can arrive out of order):
    /// hold briefly, then fill from the database what has still not arrived.
    fn fill_gap(&self, thread: String, from: i64, to: i64) {
        let state = self.state.clone();
        let conn = self.handle.id;
        tokio::spawn(async move {
            tokio::time::sleep(GAP_HOLD).await;
            // Retry while the database is unavailable; stop once the gap is gone.
            for attempt in 0u32..120 {
                if !state.realtime.hub.still_missing(&thread, conn, from) {
                    return;
                }
                let id = thread.clone();
                let limit = (to - from + 1).clamp(1, 1000);
                match state
                    .db
                    .run(|s| async move { s.messages(&id, Page::After(from - 1), limit).await })
                    .await
                {
                    Ok(messages) => return state.realtime.hub.fill(&thread, conn, &messages),
                    Err(e) if attempt == 0 => {
                        tracing::warn!(error = %e, thread, "could not fill a delivery gap yet")
                    }
                    Err(_) => {}
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        });
    }

    pub(super) fn cleanup(&mut self) {
        for t in self.threads.drain() {
            self.state.realtime.unsubscribe(&t, self.handle.id);
        }
    }
}

/// How long an out-of-order message waits for the ones before it before they are read from
/// the database.
const GAP_HOLD: Duration = Duration::from_millis(50);

/// Per-connection budget for all frames (sends also have their per-user limit).
const FRAME_RATE: f64 = 200.0;
const FRAME_BURST: u32 = 400;
