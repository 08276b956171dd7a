//! One probe WebSocket: the upgrade (through reqwest, so `https://` gets `wss://` on the same TLS
//! stack), `welcome`, a ping/pong round trip, and `subscribe`. None of it needs the database
//! except the subscription, whose `unavailable` refusal during an outage is told apart from a
//! broken connection.

use std::{
    fmt,
    time::{Duration, Instant},
};

use futures_util::{SinkExt, StreamExt};
use reqwest::{StatusCode, header};
use serde_json::{Value, json};
use tokio_tungstenite::{
    WebSocketStream,
    tungstenite::{self, Message, protocol::Role},
};

use super::{CONNECT_TIMEOUT, Ctx, api_error, error_chain, probe::Identity, web::header_str};

pub(super) type Socket = WebSocketStream<reqwest::Upgraded>;

/// An open WebSocket that answered a ping.
pub(super) struct Opened {
    pub ws: Socket,
    /// `welcome` said `"db":"down"`.
    pub db_down: bool,
    /// The ping/pong round trip.
    pub rtt: Duration,
}

/// Why waiting for a frame ended without it.
#[derive(Debug, Clone)]
pub(super) enum Refusal {
    /// An error frame came first, with this code.
    ErrorFrame(String),
    /// The connection ended (closed, failed) first.
    Ended(String),
    /// Nothing within [`CONNECT_TIMEOUT`].
    TimedOut(String),
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::ErrorFrame(code) => write!(f, "error frame {code}"),
            Refusal::Ended(why) | Refusal::TimedOut(why) => f.write_str(why),
        }
    }
}

/// Upgrade, wait for `welcome`, then time one ping/pong: a connection that does all three works.
pub(super) async fn open(ctx: &Ctx, id: &Identity, nonce: &str) -> Result<Opened, String> {
    let mut ws = tokio::time::timeout(CONNECT_TIMEOUT, upgrade(ctx, id))
        .await
        .map_err(|_| "no answer to the upgrade within 5 s".to_string())??;
    let welcome = within(wait_for(&mut ws, "welcome"), "welcome")
        .await
        .map_err(|e| format!("{e} before welcome"))?;
    let rtt = ping(&mut ws, nonce)
        .await
        .map_err(|e| format!("{e} before pong"))?;
    Ok(Opened {
        ws,
        db_down: welcome["db"] == "down",
        rtt,
    })
}

/// An app-level ping (the kind browsers send) and the time to its pong.
pub(super) async fn ping(ws: &mut Socket, nonce: &str) -> Result<Duration, Refusal> {
    let started = Instant::now();
    let frame = json!({"type": "ping", "nonce": nonce});
    ws.send(Message::Text(frame.to_string().into()))
        .await
        .map_err(|e| Refusal::Ended(format!("ping: {e}")))?;
    within(
        async {
            loop {
                let pong = wait_for(ws, "pong").await?;
                if pong["nonce"] == nonce {
                    return Ok(started.elapsed());
                }
            }
        },
        "pong",
    )
    .await
}

/// Subscribe and wait for `subscribed`.
pub(super) async fn subscribe(ws: &mut Socket, thread: &str) -> Result<(), Refusal> {
    let frame = json!({"type": "subscribe", "thread": thread});
    ws.send(Message::Text(frame.to_string().into()))
        .await
        .map_err(|e| Refusal::Ended(format!("subscribe: {e}")))?;
    within(wait_for(ws, "subscribed"), "subscribed")
        .await
        .map(|_| ())
}

async fn within<T>(f: impl Future<Output = Result<T, Refusal>>, what: &str) -> Result<T, Refusal> {
    tokio::time::timeout(CONNECT_TIMEOUT, f)
        .await
        .unwrap_or_else(|_| Err(Refusal::TimedOut(format!("no {what} within 5 s"))))
}

async fn upgrade(ctx: &Ctx, id: &Identity) -> Result<Socket, String> {
    let mut url = ctx.url("/ws");
    if id.ours {
        // The browser's way. Probe tokens are revoked at the end, so seeing them in request logs
        // does no harm.
        url.query_pairs_mut().append_pair("token", &id.token);
    }
    let key = tungstenite::handshake::client::generate_key();
    let mut req = ctx
        .ws_http
        .get(url)
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, "websocket")
        .header(header::SEC_WEBSOCKET_VERSION, "13")
        .header(header::SEC_WEBSOCKET_KEY, key.as_str());
    if !id.ours {
        // An operator's own token stays out of URLs, and so out of request logs.
        req = req.bearer_auth(&id.token);
    }
    let r = ctx
        .send(req)
        .await
        .map_err(|e| format!("upgrade: {}", error_chain(&e.without_url())))?;
    if r.status() != StatusCode::SWITCHING_PROTOCOLS {
        let status = r.status();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        return Err(format!("HTTP {} {}", status.as_u16(), api_error(&body)));
    }
    let expected = tungstenite::handshake::derive_accept_key(key.as_bytes());
    if header_str(&r, header::SEC_WEBSOCKET_ACCEPT).as_deref() != Some(expected.as_str()) {
        return Err("bad Sec-WebSocket-Accept in the handshake".into());
    }
    let upgraded = r
        .upgrade()
        .await
        .map_err(|e| format!("upgrade: {}", error_chain(&e)))?;
    Ok(WebSocketStream::from_raw_socket(upgraded, Role::Client, None).await)
}

/// Read frames until one of type `kind`; an error frame or the end of the connection first is a
/// refusal. Other frames are skipped.
async fn wait_for(ws: &mut Socket, kind: &str) -> Result<Value, Refusal> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => {
                let v: Value = serde_json::from_str(t.as_str()).unwrap_or(Value::Null);
                if v["type"] == kind {
                    return Ok(v);
                }
                if v["type"] == "error" {
                    let code = v["code"].as_str().unwrap_or("?").to_string();
                    return Err(Refusal::ErrorFrame(code));
                }
            }
            Some(Ok(Message::Close(frame))) => {
                return Err(Refusal::Ended(close_reason(frame.as_ref())));
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(Refusal::Ended(e.to_string())),
            None => return Err(Refusal::Ended("connection ended".into())),
        }
    }
}

/// "closed 4401 unauthorized", from a close frame.
pub(super) fn close_reason(frame: Option<&tungstenite::protocol::CloseFrame>) -> String {
    match frame {
        Some(f) => format!("closed {} {}", u16::from(f.code), f.reason.as_str()),
        None => "closed".into(),
    }
}
