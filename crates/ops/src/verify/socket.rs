//! One probe WebSocket: the upgrade (the typed client's, through reqwest, so `https://` gets
//! `wss://` on the same TLS stack), `welcome`, a ping/pong round trip, and `subscribe`. None of
//! it needs the database except the subscription, whose `unavailable` refusal during an outage
//! is told apart from a broken connection.

use std::{
    fmt,
    time::{Duration, Instant},
};

use emergence_client::{
    Error, Incoming,
    contract::{ClientFrameShape, ServerFrame},
    ws::TokenIn,
};
use serde_json::Value;

pub(super) use emergence_client::ws::close_reason;

use super::{CONNECT_TIMEOUT, Ctx, probe::Identity};

/// A probe's WebSocket, opened through reqwest's upgrade.
pub(super) type Socket = emergence_client::Socket<emergence_client::reqwest::Upgraded>;

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
    let frame = ClientFrameShape::Ping {
        nonce: Some(Value::from(nonce)),
    };
    ws.send_frame(&frame)
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
    let frame = ClientFrameShape::Subscribe {
        thread: thread.to_string(),
        after_seq: None,
    };
    ws.send_frame(&frame)
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
    // Probe tokens go in the URL (the browser's way): they are revoked at the end, so seeing
    // them in request logs does no harm. An operator's own token stays out of URLs.
    let how = if id.ours {
        TokenIn::Query
    } else {
        TokenIn::Header
    };
    match ctx.ws_api.with_token(&id.token).socket(how).await {
        Ok(ws) => Ok(ws),
        Err(Error::WebSocket(why)) => Err(why),
        Err(e) => {
            ctx.count_error(&e);
            Err(e.to_string())
        }
    }
}

/// Read frames until one of type `kind`; an error frame or the end of the connection first is a
/// refusal. Other frames are skipped. Frames are read as JSON, not as [`ServerFrame`]s, so that
/// a server newer than this tool (a frame type it does not know) is not a refusal.
async fn wait_for(ws: &mut Socket, kind: &str) -> Result<Value, Refusal> {
    loop {
        match ws.next_text(Duration::MAX).await {
            Incoming::Text(t) => {
                let v: Value = serde_json::from_str(&t).unwrap_or(Value::Null);
                if v["type"] == kind {
                    return Ok(v);
                }
                if let Ok(ServerFrame::Error { code, .. }) = serde_json::from_value(v) {
                    return Err(Refusal::ErrorFrame(code.as_str().to_string()));
                }
            }
            Incoming::Closed(frame) => return Err(Refusal::Ended(close_reason(frame.as_ref()))),
            Incoming::Ended(why) => return Err(Refusal::Ended(why)),
            Incoming::TimedOut => return Err(Refusal::TimedOut(format!("no {kind}"))),
        }
    }
}
