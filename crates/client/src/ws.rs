//! The WebSocket (`GET /ws`): [`Socket`] sends [`ClientFrameShape`]s (or any JSON, for callers
//! that test the server's refusals) and reads [`ServerFrame`]s, with a bounded wait for each.
//!
//! Two ways to open one: [`Socket::connect`] (tokio-tungstenite's own connector, plain `ws://`:
//! the tests and the load generator) and [`Client::socket`] (the upgrade through reqwest, so an
//! `https://` deployment gets `wss://` on the same TLS stack as every other request: verify).

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use reqwest::{Method, StatusCode, header};
use serde_json::Value;
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::TcpStream,
};
use tokio_tungstenite::{
    MaybeTlsStream, WebSocketStream,
    tungstenite::{
        self, Message,
        handshake::client::Request,
        protocol::{CloseFrame, Role},
    },
};

use crate::{
    Client, Error,
    contract::{ClientFrameShape, ServerFrame},
    error_chain,
    http::refusal,
};

/// An open WebSocket to Emergence.
pub struct Socket<S = MaybeTlsStream<TcpStream>> {
    /// The connection itself, for what the typed methods do not cover (raw frames, close).
    pub stream: WebSocketStream<S>,
    /// The server's close frame, once received.
    pub closed: Option<Option<CloseFrame>>,
}

/// What reading the next frame gave.
#[derive(Debug)]
pub enum Incoming {
    /// A text frame.
    Text(String),
    /// The server closed the connection (its close frame, if any).
    Closed(Option<CloseFrame>),
    /// The connection failed or ended without a close frame.
    Ended(String),
    /// Nothing within the wait.
    TimedOut,
}

/// How a [`Client::socket`] authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenIn {
    /// `?token=` in the URL (the browser's way).
    Query,
    /// `Authorization: Bearer` (keeps the token out of request logs).
    Header,
}

impl Socket {
    /// Connect to `url` (`ws://host:port/ws?token=...`).
    pub async fn connect(url: &str) -> Result<Socket, tungstenite::Error> {
        let (stream, _) = tokio_tungstenite::connect_async(url).await?;
        Ok(Socket::from_stream(stream))
    }

    /// Connect with a request of the caller's own (extra headers: `Origin`, cookies).
    pub async fn connect_request(req: Request) -> Result<Socket, tungstenite::Error> {
        let (stream, _) = tokio_tungstenite::connect_async(req).await?;
        Ok(Socket::from_stream(stream))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Socket<S> {
    /// Wrap a connection opened elsewhere (a custom connector or configuration).
    pub fn from_stream(stream: WebSocketStream<S>) -> Socket<S> {
        Socket {
            stream,
            closed: None,
        }
    }

    /// Send one client frame.
    pub async fn send_frame(&mut self, frame: &ClientFrameShape) -> Result<(), tungstenite::Error> {
        send_frame(&mut self.stream, frame).await
    }

    /// Send any JSON value as a text frame (also frames the contract refuses).
    pub async fn send_json(&mut self, value: &Value) -> Result<(), tungstenite::Error> {
        send_json(&mut self.stream, value).await
    }

    /// Send any WebSocket message (text, binary, ping, close).
    pub async fn send_raw(&mut self, m: Message) -> Result<(), tungstenite::Error> {
        self.stream.send(m).await
    }

    /// The next text frame within `wait`, skipping control and binary frames.
    /// (`Duration::MAX` waits for ever.)
    pub async fn next_text(&mut self, wait: Duration) -> Incoming {
        let next = next_text(&mut self.stream, wait).await;
        if let Incoming::Closed(frame) = &next {
            self.closed = Some(frame.clone());
        }
        next
    }

    /// The next frame as JSON; `None` when closed, ended or nothing came within `wait`.
    pub async fn recv_json(&mut self, wait: Duration) -> Option<Value> {
        match self.next_text(wait).await {
            Incoming::Text(t) => serde_json::from_str(&t).ok(),
            _ => None,
        }
    }

    /// The next frame, typed. A frame the contract does not know is an [`Error::Decode`].
    pub async fn recv_frame(&mut self, wait: Duration) -> Result<ServerFrame, Error> {
        match self.next_text(wait).await {
            Incoming::Text(t) => serde_json::from_str(&t)
                .map_err(|e| Error::Decode(format!("{e}: {}", truncated(&t)))),
            Incoming::Closed(f) => Err(Error::WebSocket(close_reason(f.as_ref()))),
            Incoming::Ended(why) => Err(Error::WebSocket(why)),
            Incoming::TimedOut => Err(Error::WebSocket(format!(
                "no frame within {} ms",
                wait.as_millis()
            ))),
        }
    }

    /// Read until the server closes (at most `wait`); its close code, if any.
    pub async fn close_code(&mut self, wait: Duration) -> Option<u16> {
        if let Some(frame) = read_until_close(&mut self.stream, wait).await {
            self.closed = Some(frame);
        }
        self.closed.clone().flatten().map(|f| f.code.into())
    }
}

// The same, on a bare connection (for callers that keep the `WebSocketStream` themselves).

/// Send one client frame on `stream`.
pub async fn send_frame<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut WebSocketStream<S>,
    frame: &ClientFrameShape,
) -> Result<(), tungstenite::Error> {
    let text = serde_json::to_string(frame).expect("client frames always serialise");
    stream.send(Message::Text(text.into())).await
}

/// Send any JSON value as a text frame on `stream`.
pub async fn send_json<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut WebSocketStream<S>,
    value: &Value,
) -> Result<(), tungstenite::Error> {
    stream.send(Message::Text(value.to_string().into())).await
}

/// The next text frame on `stream` within `wait`, skipping control and binary frames.
pub async fn next_text<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut WebSocketStream<S>,
    wait: Duration,
) -> Incoming {
    let deadline = tokio::time::Instant::now().checked_add(wait);
    loop {
        let next = match deadline {
            Some(at) => tokio::time::timeout_at(at, stream.next()).await,
            None => Ok(stream.next().await),
        };
        let next = match next {
            Err(_) => return Incoming::TimedOut,
            Ok(None) => return Incoming::Ended("connection ended".into()),
            Ok(Some(next)) => next,
        };
        match next {
            Ok(Message::Text(t)) => return Incoming::Text(t.as_str().to_owned()),
            Ok(Message::Close(frame)) => return Incoming::Closed(frame),
            Ok(_) => continue,
            Err(e) => return Incoming::Ended(error_chain(&e)),
        }
    }
}

/// Read `stream` until the server's close frame (returned) or, after at most `wait`, nothing.
pub async fn read_until_close<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut WebSocketStream<S>,
    wait: Duration,
) -> Option<Option<CloseFrame>> {
    let deadline = tokio::time::Instant::now() + wait;
    while tokio::time::Instant::now() < deadline {
        match tokio::time::timeout_at(deadline, stream.next()).await {
            Ok(Some(Ok(Message::Close(frame)))) => return Some(frame),
            Ok(Some(Ok(_))) => continue,
            _ => break,
        }
    }
    None
}

impl Client {
    /// Open `GET /ws` through reqwest's HTTP upgrade (an `http1_only` client is needed: pass one
    /// with [`Client::with_http`]), authenticated with this client's token as `how` says.
    pub async fn socket(&self, how: TokenIn) -> Result<Socket<reqwest::Upgraded>, Error> {
        let mut url = self.url("/ws");
        let token = self.token().map(str::to_owned);
        if let (TokenIn::Query, Some(t)) = (how, &token) {
            url.query_pairs_mut().append_pair("token", t);
        }
        let key = tungstenite::handshake::client::generate_key();
        let mut req = self
            .http()
            .request(Method::GET, url)
            .header(header::CONNECTION, "Upgrade")
            .header(header::UPGRADE, "websocket")
            .header(header::SEC_WEBSOCKET_VERSION, "13")
            .header(header::SEC_WEBSOCKET_KEY, key.as_str());
        if let (TokenIn::Header, Some(t)) = (how, &token) {
            req = req.bearer_auth(t);
        }
        let r = req
            .send()
            .await
            .map_err(|e| Error::WebSocket(format!("upgrade: {}", error_chain(&e.without_url()))))?;
        if r.status() != StatusCode::SWITCHING_PROTOCOLS {
            return Err(refusal(r).await);
        }
        let expected = tungstenite::handshake::derive_accept_key(key.as_bytes());
        let accept = r
            .headers()
            .get(header::SEC_WEBSOCKET_ACCEPT)
            .and_then(|v| v.to_str().ok());
        if accept != Some(expected.as_str()) {
            return Err(Error::WebSocket(
                "bad Sec-WebSocket-Accept in the handshake".into(),
            ));
        }
        let upgraded = r
            .upgrade()
            .await
            .map_err(|e| Error::WebSocket(format!("upgrade: {}", error_chain(&e))))?;
        Ok(Socket::from_stream(
            WebSocketStream::from_raw_socket(upgraded, Role::Client, None).await,
        ))
    }
}

/// "closed 4401 unauthorized", from a close frame.
pub fn close_reason(frame: Option<&CloseFrame>) -> String {
    match frame {
        Some(f) => format!("closed {} {}", u16::from(f.code), f.reason.as_str()),
        None => "closed".into(),
    }
}

fn truncated(text: &str) -> String {
    text.chars().take(200).collect()
}
