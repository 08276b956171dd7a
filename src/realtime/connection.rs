//! The WebSocket endpoint `GET /ws`: admission before the upgrade (rate limit, capacity,
//! cross-origin cookies), then one session per socket.
//!
//! Each socket has one task, which owns the socket unsplit: it reads client frames, owns the
//! subscriptions, turns writer events into acks, and drains the connection's queue
//! ([`ConnHandle`]) into the socket, coalescing whatever is queued into one flush. Deliveries keep
//! flowing while a frame's handling waits (a subscribe reading the database). A client that cannot
//! keep up fills its queue and is disconnected; nobody else waits for it. Nothing here needs the
//! database to accept or keep a connection.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::{Duration, Instant},
};

use axum::{
    Router,
    extract::{
        Query, State, WebSocketUpgrade,
        ws::{CloseFrame, Message as WsMessage, WebSocket, rejection::WebSocketUpgradeRejection},
    },
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use futures_util::{Sink, SinkExt, Stream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{
    hub::{ConnHandle, Control, Outbound},
    protocol::{self, ClientFrame, ErrorFrame},
};
use crate::{
    auth::{AuthError, Claims, Source, credential, origin_allowed},
    contract::ErrorCode,
    db::{
        DbState, Page, StoreError,
        writer::{Rejection, WriteEvent},
    },
    error::ApiError,
    http::client_ip::ClientIp,
    limits::{CapExceeded, ConnectionSlot, client_key, retry_after_secs},
    send::{SendError, SendRequest, submit},
    state::AppState,
    threads::is_member,
};

pub fn routes() -> Router<AppState> {
    Router::new().route("/ws", get(upgrade))
}

fn refuse(status: StatusCode, retry_after: Option<u64>, code: &str, message: &str) -> Response {
    let body = serde_json::json!({"error": {"code": code, "message": message}});
    let mut r = (status, axum::Json(body)).into_response();
    if let Some(secs) = retry_after {
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    r
}

async fn upgrade(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    uri: axum::http::Uri,
    Query(query): Query<HashMap<String, String>>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let metrics = &state.metrics;
    if state.lifecycle.is_draining() {
        metrics.ws_connections.with(&["rejected"]).inc();
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            Some(1),
            "unavailable",
            "the instance is restarting",
        );
    }
    let address = client_key(ip);
    if let Err(wait) = state.limits.ws_connect.check(&address) {
        metrics.ws_connections.with(&["rejected"]).inc();
        metrics.rate_limited.with(&["ws_connect"]).inc();
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            Some(retry_after_secs(wait)),
            "unavailable",
            "too many connection attempts",
        );
    }
    if state.realtime.connection_count() >= state.settings.server.max_websockets {
        metrics.ws_connections.with(&["rejected"]).inc();
        metrics.overload_rejections.inc();
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            Some(5),
            "unavailable",
            "the instance is at capacity",
        );
    }
    let found = credential(&headers, query.get("token").map(String::as_str));
    if let Some((_, Source::Cookie)) = &found
        && !origin_allowed(&headers, &uri, &state.settings)
    {
        metrics.ws_connections.with(&["rejected"]).inc();
        return ApiError::Forbidden("cross-origin WebSocket refused").into_response();
    }
    let auth = match found {
        Some((token, _)) => state.auth.authenticate(&token),
        None => Err(AuthError::Missing),
    };
    let user = auth.as_ref().ok().map(|c| c.uid.as_str());
    let slot = match state.limits.connections.admit(address, user) {
        Ok(slot) => slot,
        Err(cap) => {
            metrics.ws_connections.with(&["rejected"]).inc();
            return refuse_over_cap(&state, cap);
        }
    };
    let ws = match ws {
        Ok(ws) => ws,
        Err(rejection) => {
            metrics.ws_connections.with(&["error"]).inc();
            let _ = rejection;
            return ApiError::BadRequest("this endpoint needs a WebSocket upgrade request".into())
                .into_response();
        }
    };
    let max = state.settings.realtime.max_frame_bytes;
    // A small read buffer: it grows for large frames, and idle connections stay cheap (the
    // default 128 KiB per socket would dominate the memory of 10,000 idle clients).
    ws.max_message_size(max)
        .max_frame_size(max)
        .read_buffer_size(2 * 1024)
        .on_upgrade(move |socket| run(state, socket, auth, slot))
}

/// Too many sockets open for this user (429) or from this address (503, like a connection flood).
fn refuse_over_cap(state: &AppState, cap: CapExceeded) -> Response {
    match cap {
        CapExceeded::User => {
            state.metrics.rate_limited.with(&["ws_per_user"]).inc();
            refuse(
                StatusCode::TOO_MANY_REQUESTS,
                Some(5),
                "rate_limited",
                "too many open connections for this user",
            )
        }
        CapExceeded::Address => {
            state.metrics.rate_limited.with(&["ws_per_ip"]).inc();
            refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                Some(5),
                "unavailable",
                "too many open connections from this address",
            )
        }
    }
}

/// One socket's life. `_slot` holds its place under the per-user and per-address caps until
/// the task ends.
async fn run(
    state: AppState,
    mut socket: WebSocket,
    auth: Result<Claims, AuthError>,
    _slot: ConnectionSlot,
) {
    let claims = match auth {
        Ok(claims) => claims,
        Err(e) => {
            let (code, close) = match e {
                AuthError::KeyUnknown => (ErrorCode::Unavailable, 1013),
                _ => (ErrorCode::Unauthorized, 4401),
            };
            state.metrics.ws_connections.with(&["rejected"]).inc();
            let refuse = async {
                let error = ErrorFrame::new(code, "authentication failed").to_frame();
                socket.send(WsMessage::Text(error)).await?;
                socket.send(close_message(close, code.as_str())).await
            };
            let _ = tokio::time::timeout(Duration::from_secs(5), refuse).await;
            return;
        }
    };
    state.metrics.ws_connections.with(&["accepted"]).inc();
    state.metrics.ws_active.inc();
    let kill = CancellationToken::new();
    let handle = Arc::new(ConnHandle::new(
        state.realtime.next_conn_id(),
        claims.uid.clone(),
        claims.sid.clone(),
        state.settings.realtime.socket_queue,
        kill.clone(),
        state.metrics.clone(),
    ));
    state.realtime.register(handle.clone());
    let mut wire = Wire {
        socket,
        handle: handle.clone(),
        frames_out: state.metrics.ws_frames.with(&["out"]),
        unflushed: false,
        finished: false,
    };
    let span = tracing::info_span!("ws", connection_id = handle.id, user_id = %claims.uid);
    let mut session = Session::new(state.clone(), handle.clone(), claims);
    let outcome = tracing::Instrument::instrument(session.serve(&mut wire), span).await;
    if outcome == End::Error {
        state.metrics.ws_connections.with(&["error"]).inc();
    }
    session.cleanup();
    state.realtime.unregister(handle.id);
    state.metrics.ws_active.dec();
    drop(session);
    drop(handle);
    if !kill.is_cancelled() {
        // What is still queued (a close frame, an error) goes out, within bounds.
        let _ = tokio::time::timeout(Duration::from_secs(5), wire.drain()).await;
    }
    kill.cancel();
    // The closing handshake: read (and drop) until the peer's close frame, so unread client
    // frames do not turn our close into a reset that loses the close frame on the way.
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = wire.socket.close().await;
        while let Some(Ok(_)) = futures_util::StreamExt::next(&mut wire.socket).await {}
    })
    .await;
}

fn close_message(code: u16, reason: &'static str) -> WsMessage {
    WsMessage::Close(Some(CloseFrame {
        code,
        reason: reason.into(),
    }))
}

/// The socket and its write state, owned by the connection's task.
struct Wire {
    socket: WebSocket,
    handle: Arc<ConnHandle>,
    frames_out: Arc<crate::ops::metrics::Counter>,
    /// Frames were handed to the socket since its last flush.
    unflushed: bool,
    /// A close frame was handed to the socket, or the socket failed: nothing more goes out.
    finished: bool,
}

/// What the socket has for the connection's task.
enum Io {
    Read(Option<Result<WsMessage, axum::Error>>),
    Control(Control),
    /// The close frame is out, or the socket failed.
    Done,
}

impl Wire {
    /// Hand everything queued to the socket and flush once (one write for many frames);
    /// `Ready` once the socket is finished (close frame written, or failed).
    fn poll_write(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        while !self.finished {
            match Pin::new(&mut self.socket).poll_ready(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(_)) => return self.fail(),
                Poll::Pending => break, // woken when the socket drains
            }
            let Some(m) = self.handle.next_outbound(cx.waker()) else {
                break; // woken by the next send
            };
            let msg = match m {
                Outbound::Frame(f) => {
                    self.frames_out.inc();
                    WsMessage::Text(f)
                }
                Outbound::Ping => WsMessage::Ping(Default::default()),
                Outbound::Close(code, reason) => {
                    self.finished = true;
                    close_message(code, reason)
                }
            };
            if Pin::new(&mut self.socket).start_send(msg).is_err() {
                return self.fail();
            }
            self.unflushed = true;
        }
        if self.unflushed {
            match Pin::new(&mut self.socket).poll_flush(cx) {
                Poll::Ready(Ok(())) => self.unflushed = false,
                Poll::Ready(Err(_)) => return self.fail(),
                Poll::Pending => return Poll::Pending,
            }
        }
        if self.finished {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    fn fail(&mut self) -> Poll<()> {
        self.finished = true;
        self.unflushed = false;
        Poll::Ready(())
    }

    fn poll_io(&mut self, cx: &mut Context<'_>) -> Poll<Io> {
        if self.poll_write(cx).is_ready() {
            return Poll::Ready(Io::Done);
        }
        if let Some(c) = self.handle.next_control(cx.waker()) {
            return Poll::Ready(Io::Control(c));
        }
        Pin::new(&mut self.socket).poll_next(cx).map(Io::Read)
    }

    /// Until everything queued is written (or the socket is finished).
    async fn drain(&mut self) {
        std::future::poll_fn(|cx| {
            let done = self.poll_write(cx).is_ready();
            if done || (!self.unflushed && self.handle.queue_is_empty()) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await
    }

    /// Run `op` while the queue keeps flowing out (reads wait; deliveries do not).
    async fn pumping<T>(&mut self, op: impl Future<Output = T>) -> T {
        let mut op = std::pin::pin!(op);
        std::future::poll_fn(|cx| {
            if let Poll::Ready(v) = op.as_mut().poll(cx) {
                return Poll::Ready(v);
            }
            let _ = self.poll_write(cx);
            Poll::Pending
        })
        .await
    }
}

#[derive(Debug, PartialEq, Eq)]
enum End {
    Normal,
    Error,
}

/// Strikes (rate-limited frames) tolerated per window before closing with 1008.
const FLOOD_STRIKES: usize = 50;
const FLOOD_WINDOW: Duration = Duration::from_secs(10);

struct Session {
    state: AppState,
    handle: Arc<ConnHandle>,
    claims: Claims,
    threads: HashSet<String>,
    /// Acks from the writer; created on the first send, so idle sockets do not pay for it.
    events_tx: Option<mpsc::UnboundedSender<WriteEvent>>,
    events_rx: Option<mpsc::UnboundedReceiver<WriteEvent>>,
    strikes: VecDeque<Instant>,
    frame_tokens: (f64, Instant),
}

impl Session {
    fn new(state: AppState, handle: Arc<ConnHandle>, claims: Claims) -> Self {
        Self {
            state,
            handle,
            claims,
            threads: HashSet::new(),
            events_tx: None,
            events_rx: None,
            strikes: VecDeque::new(),
            frame_tokens: (FRAME_BURST, Instant::now()),
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

    async fn serve(&mut self, wire: &mut Wire) -> End {
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
        // Token expiry is enforced on the open socket, to the second.
        let expires_in =
            Duration::from_millis((self.claims.exp - crate::db::now_ms()).max(0) as u64);
        let expiry = tokio::time::sleep(expires_in);
        tokio::pin!(expiry);
        let mut ticker = tokio::time::interval(tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
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
        let kill = self.handle_kill();
        loop {
            tokio::select! {
                _ = kill.cancelled() => return End::Normal,
                io = std::future::poll_fn(|cx| wire.poll_io(cx)) => {
                    let frame = match io {
                        Io::Done => return End::Normal,
                        Io::Control(Control::FillGap { thread, from, to }) => {
                            self.fill_gap(thread, from, to);
                            continue;
                        }
                        Io::Read(frame) => frame,
                    };
                    last_seen = Instant::now();
                    match frame {
                        None => return End::Normal,
                        Some(Err(e)) => return self.read_error(e),
                        Some(Ok(WsMessage::Text(text))) => {
                            frames_in.inc();
                            last_frame = Instant::now();
                            // Boxed: the frame handlers' futures (database reads) would
                            // otherwise make every idle connection's task as large as they are.
                            if !wire.pumping(Box::pin(self.on_text(text.as_str()))).await {
                                return End::Normal;
                            }
                        }
                        Some(Ok(WsMessage::Binary(_))) => {
                            frames_in.inc();
                            last_frame = Instant::now();
                            self.error(ErrorFrame::new(ErrorCode::InvalidJson, "binary frames are not accepted; send JSON text"));
                        }
                        Some(Ok(WsMessage::Close(_))) => return End::Normal,
                        Some(Ok(_)) => {} // ping/pong: liveness only
                    }
                }
                Some(event) = next_event(&mut self.events_rx) => {
                    // A commit answers many sends at once: turn them all into frames before
                    // the socket is written, so they leave in one write.
                    self.on_write_event(event);
                    while let Some(event) = self.events_rx.as_mut().and_then(|rx| rx.try_recv().ok()) {
                        self.on_write_event(event);
                    }
                }
                () = &mut expiry => {
                    self.error(ErrorFrame::new(ErrorCode::Unauthorized, "the session has expired"));
                    self.handle.close(4401, "unauthorized");
                    return End::Normal;
                }
                _ = ticker.tick() => {
                    let now = Instant::now();
                    if now.duration_since(last_seen) >= dead_after {
                        tracing::info!("closing dead peer");
                        self.handle.close(1001, "no response to pings");
                        return End::Normal;
                    }
                    if now.duration_since(last_frame) >= idle_after {
                        self.handle.close(4408, "idle timeout");
                        return End::Normal;
                    }
                    if self.claims.exp <= crate::db::now_ms() || self.state.auth.revocations.is_revoked(&self.claims.sid) {
                        self.error(ErrorFrame::new(ErrorCode::Unauthorized, "the session has expired"));
                        self.handle.close(4401, "unauthorized");
                        return End::Normal;
                    }
                    if now.duration_since(last_ping) >= ping_every {
                        last_ping = now;
                        let _ = self.handle_ping();
                    }
                }
            }
        }
    }

    fn handle_kill(&self) -> CancellationToken {
        self.handle.kill_token()
    }

    fn handle_ping(&self) -> bool {
        self.handle.ping()
    }
    fn read_error(&self, e: axum::Error) -> End {
        let inner = e.into_inner();
        match inner.downcast_ref::<tungstenite::Error>() {
            Some(tungstenite::Error::Utf8(_)) => {
                self.handle.close(1007, "invalid UTF-8");
                End::Normal
            }
            Some(tungstenite::Error::Capacity(_)) => {
                self.handle.close(1009, "frame too large");
                End::Normal
            }
            Some(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
                End::Normal
            }
            Some(tungstenite::Error::Protocol(p)) => {
                tracing::debug!(error = %p, "websocket protocol error");
                self.handle.close(1002, "protocol error");
                End::Error
            }
            _ => End::Error,
        }
    }

    /// Generic per-connection frame budget, on top of the per-user send limit (and, like it,
    /// off when the send limit is off, for load tests).
    fn take_frame_token(&mut self) -> bool {
        if self.state.settings.limits.send_rate_per_sec == 0 {
            return true;
        }
        let now = Instant::now();
        let (tokens, at) = &mut self.frame_tokens;
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * FRAME_RATE).min(FRAME_BURST);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
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
        match frame {
            ClientFrame::Ping { nonce } => self.send(protocol::pong(nonce.as_ref())),
            ClientFrame::Subscribe { thread, after_seq } => self.subscribe(thread, after_seq).await,
            ClientFrame::Unsubscribe { thread } => {
                if self.threads.remove(&thread) {
                    self.state.realtime.hub.unsubscribe(&thread, self.handle.id);
                    self.state.realtime.streams.detach(&thread, self.handle.id);
                }
                self.send(protocol::unsubscribed(&thread));
            }
            ClientFrame::Send {
                thread,
                client_id,
                body,
                agent,
            } => {
                let cid = client_id.as_str().to_string();
                let req = SendRequest {
                    thread,
                    client_id,
                    body,
                    agent: agent.map(crate::send::AgentAsk::Answer),
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
        }
        true
    }

    fn send_refused(&mut self, e: SendError, client_id: &str) -> bool {
        let frame = match e {
            SendError::NotFound(what) => ErrorFrame::new(ErrorCode::NotFound, what),
            SendError::Unavailable { retry_after_ms } => ErrorFrame::new(
                ErrorCode::Unavailable,
                "the database is unavailable; retry later",
            )
            .retry_after(retry_after_ms),
            SendError::RateLimited { retry_after_ms } => {
                self.error(
                    ErrorFrame::new(ErrorCode::RateLimited, "too many messages")
                        .client(Some(client_id))
                        .retry_after(retry_after_ms),
                );
                return self.strike();
            }
            SendError::Validation(why) => ErrorFrame::new(ErrorCode::Validation, why),
            SendError::UnknownAgent => ErrorFrame::new(ErrorCode::NotFound, "unknown agent"),
            SendError::TooMany(why) => {
                ErrorFrame::new(ErrorCode::RateLimited, why).retry_after(1000)
            }
        };
        self.error(frame.client(Some(client_id)));
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
        let hub = &self.state.realtime.hub;
        hub.subscribe(&thread, self.handle.clone());
        self.threads.insert(thread.clone());
        match self.replay(&thread, after_seq).await {
            Ok(last) => {
                hub.activate(&thread, self.handle.id, last);
                // Running agent streams: stream_start + stream_snapshot, then live chunks.
                self.state.realtime.streams.attach(&thread, &self.handle);
            }
            Err(e) => {
                hub.unsubscribe(&thread, self.handle.id);
                self.threads.remove(&thread);
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

    fn cleanup(&mut self) {
        for t in self.threads.drain() {
            self.state.realtime.hub.unsubscribe(&t, self.handle.id);
            self.state.realtime.streams.detach(&t, self.handle.id);
        }
    }
}

/// The next writer event, or never while no send was made.
async fn next_event(rx: &mut Option<mpsc::UnboundedReceiver<WriteEvent>>) -> Option<WriteEvent> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// How long an out-of-order message waits for the ones before it before they are read from
/// the database.
const GAP_HOLD: Duration = Duration::from_millis(50);

/// Per-connection budget for all frames (sends also have their per-user limit).
const FRAME_RATE: f64 = 200.0;
const FRAME_BURST: f64 = 400.0;
