//! A WebSocket test client speaking the JSON protocol, on the shared typed client's functions
//! (`emergence_client::ws`), with the panicking helpers tests read best (`send`, `recv_type`,
//! ...). The connection stays a public field, so a test may split it or send raw frames.

use std::time::Duration;

use emergence_client::{Incoming, Socket, contract::ClientFrameShape, ws};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::{
    MaybeTlsStream, WebSocketStream,
    tungstenite::{Message, protocol::CloseFrame},
};

pub struct WsClient {
    pub stream: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// The close frame, once received.
    pub closed: Option<Option<CloseFrame>>,
}

/// How long a test waits for one frame.
pub const WAIT: Duration = Duration::from_secs(10);

impl From<Socket> for WsClient {
    fn from(socket: Socket) -> WsClient {
        WsClient {
            stream: socket.stream,
            closed: socket.closed,
        }
    }
}

impl WsClient {
    pub async fn connect(url: &str) -> Result<WsClient, tokio_tungstenite::tungstenite::Error> {
        Ok(Socket::connect(url).await?.into())
    }

    pub async fn connect_request(
        req: tokio_tungstenite::tungstenite::handshake::client::Request,
    ) -> Result<WsClient, tokio_tungstenite::tungstenite::Error> {
        Ok(Socket::connect_request(req).await?.into())
    }

    pub async fn send(&mut self, v: Value) {
        ws::send_json(&mut self.stream, &v).await.expect("ws send");
    }

    pub async fn send_raw(
        &mut self,
        m: Message,
    ) -> Result<(), tokio_tungstenite::tungstenite::Error> {
        futures_util::SinkExt::send(&mut self.stream, m).await
    }

    /// The next frame, typed by the contract (`ServerFrame`).
    pub async fn recv_frame(
        &mut self,
        wait: Duration,
    ) -> Result<emergence_client::contract::ServerFrame, String> {
        match self.recv_text(wait).await {
            Some(t) => serde_json::from_str(&t).map_err(|e| format!("{e}: {t}")),
            None => Err(format!("no frame; close: {:?}", self.closed)),
        }
    }

    async fn recv_text(&mut self, wait: Duration) -> Option<String> {
        match ws::next_text(&mut self.stream, wait).await {
            Incoming::Text(t) => Some(t),
            Incoming::Closed(frame) => {
                self.closed = Some(frame);
                None
            }
            Incoming::Ended(_) | Incoming::TimedOut => None,
        }
    }

    /// The next JSON frame, or `None` when closed or on timeout.
    pub async fn recv(&mut self) -> Option<Value> {
        self.recv_within(WAIT).await
    }

    pub async fn recv_within(&mut self, wait: Duration) -> Option<Value> {
        let text = self.recv_text(wait).await?;
        Some(serde_json::from_str(&text).expect("server frames are JSON"))
    }

    /// Frames until one matches (returned), skipping others. Panics on timeout.
    pub async fn recv_until(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        loop {
            match self.recv().await {
                Some(v) if pred(&v) => return v,
                Some(_) => continue,
                None => panic!(
                    "connection ended or timed out waiting for {what}; close: {:?}",
                    self.closed
                ),
            }
        }
    }

    pub async fn recv_type(&mut self, kind: &str) -> Value {
        self.recv_until(kind, |v| v["type"] == kind).await
    }

    /// Read until the server closes; returns the close code.
    pub async fn close_code(&mut self) -> Option<u16> {
        if let Some(frame) = ws::read_until_close(&mut self.stream, Duration::from_secs(20)).await {
            self.closed = Some(frame);
        }
        self.closed.clone().flatten().map(|f| f.code.into())
    }

    pub async fn subscribe(&mut self, thread: &str, after_seq: Option<i64>) -> Value {
        let frame = ClientFrameShape::Subscribe {
            thread: thread.to_string(),
            after_seq,
        };
        ws::send_frame(&mut self.stream, &frame)
            .await
            .expect("ws send");
        self.recv_type("subscribed").await
    }

    /// Ask for a new version of the agent answer `message_id` (by `agent`, or its own).
    pub async fn regenerate(
        &mut self,
        thread: &str,
        client_id: &str,
        message_id: &str,
        agent: Option<&str>,
    ) {
        let frame = ClientFrameShape::Regenerate {
            thread: thread.to_string(),
            client_id: client_id.to_string(),
            message_id: message_id.to_string(),
            agent: agent.map(str::to_string),
        };
        ws::send_frame(&mut self.stream, &frame)
            .await
            .expect("ws send");
    }

    pub async fn send_message(&mut self, thread: &str, client_id: &str, body: &str) {
        let frame = ClientFrameShape::Send {
            thread: thread.to_string(),
            client_id: client_id.to_string(),
            body: body.to_string(),
            agent: None,
            agents: None,
        };
        ws::send_frame(&mut self.stream, &frame)
            .await
            .expect("ws send");
    }
}

/// A client that breaks the WebSocket protocol: it completes the upgrade (authenticated with
/// `token`), then sends an unmasked frame, which RFC 6455 forbids from a client. The server
/// must end the connection with 1002 (protocol error). Returns the close code seen, if any.
pub async fn break_protocol(port: u16, token: &str) -> Option<u16> {
    // FIN + text, no mask bit, 2 bytes of payload.
    raw_session(port, token, &[0x81, 0x02, b'h', b'i']).await
}

/// A text frame whose payload is not UTF-8 (masked, as a client must): the server closes 1007.
pub async fn send_invalid_utf8(port: u16, token: &str) -> Option<u16> {
    // FIN + text, mask bit + length 2, mask key 0 (payload unchanged), bytes 0xFF 0xFE.
    raw_session(port, token, &[0x81, 0x82, 0, 0, 0, 0, 0xff, 0xfe]).await
}

/// Upgrade over a raw TCP connection, write `frame` as is, then read the server's frames until
/// its close frame or the end of the connection; the close code, if any.
pub async fn raw_session(port: u16, token: &str, frame: &[u8]) -> Option<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
    let request = format!(
        "GET /ws?token={token} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n"
    );
    tcp.write_all(request.as_bytes()).await.ok()?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(WAIT, tcp.read(&mut byte))
            .await
            .ok()?
            .ok()?;
        if n == 0 {
            return None;
        }
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "upgrade refused: {}",
        String::from_utf8_lossy(&head)
    );
    tcp.write_all(frame).await.ok()?;
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(WAIT, async {
        let mut buf = [0u8; 4096];
        while let Ok(n) = tcp.read(&mut buf).await {
            if n == 0 {
                break;
            }
            rest.extend_from_slice(&buf[..n]);
        }
    })
    .await;
    // Walk the (unmasked, server-sent) frames to find the close frame's code.
    let mut i = 0;
    while i + 2 <= rest.len() {
        let opcode = rest[i] & 0x0f;
        let (len, header) = match rest[i + 1] & 0x7f {
            126 if i + 4 <= rest.len() => {
                (u16::from_be_bytes([rest[i + 2], rest[i + 3]]) as usize, 4)
            }
            126 | 127 => return None,
            n => (n as usize, 2),
        };
        let body = i + header;
        if opcode == 0x8 && len >= 2 && body + 2 <= rest.len() {
            return Some(u16::from_be_bytes([rest[body], rest[body + 1]]));
        }
        i = body + len;
    }
    None
}
