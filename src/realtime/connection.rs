//! The WebSocket endpoint `GET /ws`: admission before the upgrade (rate limit, capacity,
//! cross-origin cookies), then one session per socket.
//!
//! Each socket has one task: it reads client frames, owns the subscriptions, turns writer events
//! into acks ([`Session`]), and runs the closing handshake ([`Wire`]). What is queued for the
//! connection ([`ConnHandle`]) is written by its shard's sweeper (`realtime::sweep`), whatever
//! is queued in one write, without waking the task; deliveries keep flowing while a frame's
//! handling waits (a subscribe reading the database). A client that cannot keep up fills its
//! queue and is disconnected; nobody else waits for it.
//! Nothing here needs the database to accept or keep a connection. Every attempt is counted once,
//! by how it ended ([`outcome`](super::outcome)).

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use axum::{
    Router,
    extract::{
        Query, State, WebSocketUpgrade,
        ws::{Message as WsMessage, WebSocket, rejection::WebSocketUpgradeRejection},
    },
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use futures_util::SinkExt;
use tokio_util::sync::CancellationToken;

use super::{
    hub::{ConnHandle, Writer},
    outcome::{self, Connection, Ending},
    protocol::ErrorFrame,
    session::Session,
    wire::{Wire, close_message},
};
use crate::{
    auth::{AuthError, Claims, Source, credential, origin_allowed},
    contract::{ErrorBody, ErrorCode, ErrorDetail},
    error::ApiError,
    http::{
        client_ip::ClientIp,
        socket::{Socket, Upgradable},
    },
    limits::{CapExceeded, ConnectionSlot, client_key, count_rate_limited, retry_after_secs},
    state::AppState,
};

pub fn routes() -> Router<AppState> {
    Router::new().route("/ws", get(upgrade))
}

/// Refuse an upgrade with the contract's error body (the statuses `ApiError` does not build
/// with these headers: 429 and 503 before the upgrade).
fn refuse(
    status: StatusCode,
    retry_after: Option<u64>,
    code: ErrorCode,
    message: &str,
) -> Response {
    let body = ErrorBody {
        error: ErrorDetail {
            code,
            message: message.to_string(),
            fields: None,
            resets_at: None,
        },
    };
    let mut r = (status, axum::Json(body)).into_response();
    if let Some(secs) = retry_after {
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    r
}

/// The WebSocket endpoint (`docs/protocol.md` §7).
///
/// A `GET` with the WebSocket upgrade headers; after `101 Switching Protocols` every frame is
/// one JSON object in a text frame: the server sends the `ServerFrame` union, the client the
/// `ClientFrameShape` union (both in `components.schemas`). A missing, bad, expired or revoked
/// credential does not refuse the upgrade: the server sends
/// `{"type":"error","code":"unauthorized"}` and closes with 4401.
#[utoipa::path(
    get,
    path = "/ws",
    operation_id = "websocket",
    tag = "realtime",
    params(
        ("token" = Option<String>, Query, description = "The session token, for clients that cannot set headers (browsers use the cookie)"),
        ("Upgrade" = String, Header, description = "`websocket`"),
        ("Connection" = String, Header, description = "`Upgrade`"),
        ("Sec-WebSocket-Version" = String, Header, description = "`13`"),
        ("Sec-WebSocket-Key" = String, Header, description = "The client's handshake nonce"),
    ),
    security(("bearer" = []), ("cookie" = []), ("token" = [])),
    responses(
        (status = 101, description = "Switching Protocols: the WebSocket is open; the first frame is `welcome` (or `error` + close 4401 without valid credentials)"),
        (status = 400, response = crate::error::responses::BadRequest),
        (status = 403, response = crate::error::responses::Forbidden),
        (status = 429, description = "`rate_limited`: too many open connections for this user", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
        (status = 503, response = crate::error::responses::Unavailable),
    )
)]
pub(crate) async fn upgrade(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    uri: axum::http::Uri,
    Query(query): Query<HashMap<String, String>>,
    upgradable: Option<axum::Extension<Upgradable>>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let metrics = &state.metrics;
    if state.lifecycle.is_draining() {
        outcome::record(metrics, Ending::refused(503, "draining"), None);
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            Some(1),
            ErrorCode::Unavailable,
            "the instance is restarting",
        );
    }
    let address = client_key(ip);
    if let Err(wait) = state.limits.ws_connect.check(&address) {
        count_rate_limited(metrics, "ws_connect");
        outcome::record(
            metrics,
            Ending::refused(503, "too many connection attempts"),
            None,
        );
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            Some(retry_after_secs(wait)),
            ErrorCode::Unavailable,
            "too many connection attempts",
        );
    }
    if state.realtime.connection_count() >= state.settings.server.max_websockets {
        outcome::record(metrics, Ending::refused(503, "at capacity"), None);
        metrics.overload_rejections.inc();
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            Some(5),
            ErrorCode::Unavailable,
            "the instance is at capacity",
        );
    }
    let found = credential(&headers, query.get("token").map(String::as_str));
    if let Some((_, Source::Cookie)) = &found
        && !origin_allowed(&headers, &uri, &state.settings)
    {
        outcome::record(metrics, Ending::refused(403, "cross-origin"), None);
        return ApiError::Forbidden("cross-origin WebSocket refused").into_response();
    }
    let auth = match found {
        Some((token, _)) => state.auth.authenticate(&token),
        None => Err(AuthError::Missing),
    };
    let user = auth.as_ref().ok().map(|c| c.uid.as_str());
    let slot = match state.limits.connections.admit(address, user) {
        Ok(slot) => slot,
        Err(cap) => return refuse_over_cap(&state, cap),
    };
    let (ws, tcp) = match (ws, upgradable) {
        (Ok(ws), Some(axum::Extension(Upgradable(tcp)))) => (ws, tcp),
        _ => {
            outcome::record(
                metrics,
                Ending::refused(400, "not an upgrade request"),
                None,
            );
            return ApiError::BadRequest("this endpoint needs a WebSocket upgrade request".into())
                .into_response();
        }
    };
    let max = state.settings.realtime.max_frame_bytes;
    let failed = state.metrics.clone();
    // A small read buffer: it grows for large frames, and idle connections stay cheap (the
    // default 128 KiB per socket would dominate the memory of 10,000 idle clients).
    ws.max_message_size(max)
        .max_frame_size(max)
        .read_buffer_size(2 * 1024)
        .on_failed_upgrade(move |e| {
            tracing::debug!(error = %e, "websocket upgrade failed");
            outcome::record(&failed, Ending::error(None, "upgrade failed"), None);
        })
        .on_upgrade(move |socket| {
            // From here on the connection carries frames: the sweepers write to it too.
            tcp.to_frames();
            run(state, socket, tcp, auth, slot)
        })
}

/// Too many sockets open for this user (429) or from this address (503, like a connection flood).
fn refuse_over_cap(state: &AppState, cap: CapExceeded) -> Response {
    match cap {
        CapExceeded::User => {
            count_rate_limited(&state.metrics, "ws_per_user");
            outcome::record(
                &state.metrics,
                Ending::refused(429, "too many connections for this user"),
                None,
            );
            refuse(
                StatusCode::TOO_MANY_REQUESTS,
                Some(5),
                ErrorCode::RateLimited,
                "too many open connections for this user",
            )
        }
        CapExceeded::Address => {
            count_rate_limited(&state.metrics, "ws_per_ip");
            outcome::record(
                &state.metrics,
                Ending::refused(503, "too many connections from this address"),
                None,
            );
            refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                Some(5),
                ErrorCode::Unavailable,
                "too many open connections from this address",
            )
        }
    }
}

/// One socket's life. `slot` holds its place under the per-user and per-address caps until
/// the session has ended (not during the closing handshake).
async fn run(
    state: AppState,
    mut socket: WebSocket,
    tcp: Arc<Socket>,
    auth: Result<Claims, AuthError>,
    slot: ConnectionSlot,
) {
    let claims = match auth {
        Ok(claims) => claims,
        Err(e) => {
            let (code, close) = match e {
                AuthError::KeyUnknown => (ErrorCode::Unavailable, 1013),
                _ => (ErrorCode::Unauthorized, 4401),
            };
            outcome::record(&state.metrics, Ending::rejected(close, code.as_str()), None);
            let refuse = async {
                let error = ErrorFrame::new(code, "authentication failed").to_frame();
                socket.send(WsMessage::Text(error)).await?;
                socket.send(close_message(close, code.as_str())).await
            };
            let _ = tokio::time::timeout(Duration::from_secs(5), refuse).await;
            return;
        }
    };
    // A token issued to an account waiting for approval: 4403 while it still waits (the only
    // case where the handshake asks the database, and only until this instance sees it approved).
    let status = match crate::auth::access::account_status(&state, &claims).await {
        Ok(status) => status,
        Err(_) => crate::db::accounts::Status::Pending,
    };
    if status != crate::db::accounts::Status::Active {
        let (code, close, why) = if status == crate::db::accounts::Status::Pending {
            (
                ErrorCode::PendingApproval,
                4403,
                "this account is waiting for an administrator's approval",
            )
        } else {
            (ErrorCode::Unauthorized, 4401, "the session has ended")
        };
        outcome::record(&state.metrics, Ending::rejected(close, code.as_str()), None);
        let refuse = async {
            socket
                .send(WsMessage::Text(ErrorFrame::new(code, why).to_frame()))
                .await?;
            socket.send(close_message(close, code.as_str())).await
        };
        let _ = tokio::time::timeout(Duration::from_secs(5), refuse).await;
        return;
    }
    let opened = Instant::now();
    state.metrics.ws_active.inc();
    let kill = CancellationToken::new();
    let id = state.realtime.next_conn_id();
    let writer = Writer {
        socket: tcp,
        shard: state.realtime.sweepers.shard(id),
        frames_out: state.metrics.ws_frames.with(&["out"]),
    };
    let handle = Arc::new(ConnHandle::new(
        id,
        claims.uid.clone(),
        claims.sid.clone(),
        state.settings.realtime.socket_queue,
        kill.clone(),
        state.metrics.clone(),
        writer,
    ));
    state.realtime.register(handle.clone());
    let mut wire = Wire::new(socket, handle.clone());
    let span = tracing::info_span!("ws", connection_id = handle.id, user_id = %claims.uid);
    let user_id = claims.uid.clone();
    let mut session = Session::new(state.clone(), handle.clone(), claims);
    let ending = tracing::Instrument::instrument(session.serve(&mut wire), span).await;
    let connection = Connection {
        id: handle.id,
        user_id: &user_id,
        lasted: opened.elapsed(),
    };
    outcome::record(&state.metrics, ending, Some(connection));
    session.cleanup();
    state.realtime.unregister(handle.id);
    state.metrics.ws_active.dec();
    drop(session);
    drop(handle);
    // The socket no longer counts under the per-user and per-address caps while it closes.
    drop(slot);
    if !kill.is_cancelled() {
        // What is still queued (a close frame, an error) goes out, within bounds.
        let _ = tokio::time::timeout(Duration::from_secs(5), wire.drain()).await;
    }
    kill.cancel();
    // The closing handshake: read (and drop) until the peer's close frame, so unread client
    // frames do not turn our close into a reset that loses the close frame on the way. After a
    // read error (1009, 1007, 1002) the socket yields nothing more while the client may still
    // be sending the rest of its message: the socket is then kept open (unread) for a moment,
    // so the client reads our close frame before a close with unread data resets the
    // connection.
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        let _ = wire.socket.close().await;
        loop {
            match futures_util::StreamExt::next(&mut wire.socket).await {
                Some(Ok(axum::extract::ws::Message::Close(_))) => return,
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    if peer_gone(e) {
                        return;
                    }
                    break;
                }
                None => break,
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    })
    .await;
}

/// A read error after which nothing more can come from the peer.
fn peer_gone(e: axum::Error) -> bool {
    use tungstenite::Error;
    matches!(
        e.into_inner().downcast_ref::<Error>(),
        None | Some(Error::ConnectionClosed | Error::AlreadyClosed | Error::Io(_))
    )
}
