//! A WebSocket test client speaking the JSON protocol.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
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

impl WsClient {
    pub async fn connect(url: &str) -> Result<WsClient, tokio_tungstenite::tungstenite::Error> {
        let (stream, _) = tokio_tungstenite::connect_async(url).await?;
        Ok(WsClient {
            stream,
            closed: None,
        })
    }

    pub async fn connect_request(
        req: tokio_tungstenite::tungstenite::handshake::client::Request,
    ) -> Result<WsClient, tokio_tungstenite::tungstenite::Error> {
        let (stream, _) = tokio_tungstenite::connect_async(req).await?;
        Ok(WsClient {
            stream,
            closed: None,
        })
    }

    pub async fn send(&mut self, v: Value) {
        self.stream
            .send(Message::Text(v.to_string().into()))
            .await
            .expect("ws send");
    }

    pub async fn send_raw(
        &mut self,
        m: Message,
    ) -> Result<(), tokio_tungstenite::tungstenite::Error> {
        self.stream.send(m).await
    }

    /// The next JSON frame, or `None` when closed or on timeout.
    pub async fn recv(&mut self) -> Option<Value> {
        self.recv_within(WAIT).await
    }

    pub async fn recv_within(&mut self, wait: Duration) -> Option<Value> {
        loop {
            let next = tokio::time::timeout(wait, self.stream.next())
                .await
                .ok()??;
            match next {
                Ok(Message::Text(t)) => {
                    return Some(serde_json::from_str(t.as_str()).expect("server frames are JSON"));
                }
                Ok(Message::Close(frame)) => {
                    self.closed = Some(frame);
                    return None;
                }
                Ok(_) => continue,
                Err(_) => return None,
            }
        }
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
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while tokio::time::Instant::now() < deadline {
            match tokio::time::timeout(Duration::from_secs(20), self.stream.next()).await {
                Ok(Some(Ok(Message::Close(frame)))) => {
                    self.closed = Some(frame.clone());
                    return frame.map(|f| f.code.into());
                }
                Ok(Some(Ok(_))) => continue,
                _ => break,
            }
        }
        self.closed.clone().flatten().map(|f| f.code.into())
    }

    pub async fn subscribe(&mut self, thread: &str, after_seq: Option<i64>) -> Value {
        let mut v = serde_json::json!({"type": "subscribe", "thread": thread});
        if let Some(a) = after_seq {
            v["after_seq"] = a.into();
        }
        self.send(v).await;
        self.recv_type("subscribed").await
    }

    pub async fn send_message(&mut self, thread: &str, client_id: &str, body: &str) {
        self.send(serde_json::json!({"type": "send", "thread": thread, "client_id": client_id, "body": body})).await;
    }
}
