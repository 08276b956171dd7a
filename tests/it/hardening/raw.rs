//! Helpers of the hardening tests: raw HTTP over a `TcpStream` (so the server sees the bytes an
//! attacker would send), dribbling and silent sockets, floods, and small measurements.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use tokio_tungstenite::tungstenite::{
    Message,
    protocol::frame::{
        Frame,
        coding::{Data, OpCode},
    },
};

use crate::support::{TestApp, WsClient};

/// A JSON object whose text is exactly `size` bytes: `prefix` (an unclosed object), spaces, `}`.
pub(super) fn padded_object(prefix: &str, size: usize) -> Vec<u8> {
    let mut v = prefix.as_bytes().to_vec();
    v.resize(size - 1, b' ');
    v.push(b'}');
    v
}

pub(super) async fn post_bytes(
    app: &TestApp,
    path: &str,
    token: Option<&str>,
    body: Vec<u8>,
) -> reqwest::Response {
    let mut req = app
        .http
        .post(app.url(path))
        .header("content-type", "application/json")
        .body(body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.expect("request")
}

/// An HTTP answer read off a raw socket.
pub(super) struct RawResponse {
    pub(super) status: u16,
    pub(super) body: Vec<u8>,
}

impl RawResponse {
    pub(super) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub(super) fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// Send bytes exactly as given (no client-side normalisation) and read one answer. The write
/// runs alongside the read, so an early answer (413) is seen even if the rest is refused.
pub(super) async fn raw_http(port: u16, request: Vec<u8>) -> RawResponse {
    raw_http_within(port, request, Duration::from_secs(15))
        .await
        .expect("an answer within 15 s")
}

/// [`raw_http`], or `None` when no complete answer came within `wait` (details on stderr).
pub(super) async fn raw_http_within(
    port: u16,
    request: Vec<u8>,
    wait: Duration,
) -> Option<RawResponse> {
    // The request line and headers, for failure messages.
    let line: String = String::from_utf8_lossy(&request[..request.len().min(600)])
        .split("\r\n\r\n")
        .next()
        .unwrap_or_default()
        .to_string();
    let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let (mut rd, mut wr) = stream.into_split();
    let writer = tokio::spawn(async move {
        let _ = wr.write_all(&request).await;
        let _ = wr.flush().await;
        wr
    });
    let mut raw = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, rd.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => {
                raw.extend_from_slice(&buf[..n]);
                if complete(&raw) {
                    break;
                }
            }
            Err(_) => {
                eprintln!(
                    "{line}\n: no complete answer within {wait:?}: {}",
                    String::from_utf8_lossy(&raw)
                );
                return None;
            }
        }
    }
    writer.abort();
    Some(parse_response(&raw))
}

/// Whether `raw` holds a whole response (headers plus a Content-Length body).
pub(super) fn complete(raw: &[u8]) -> bool {
    let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok());
    length.is_some_and(|n| raw.len() >= end + 4 + n)
}

pub(super) fn parse_response(raw: &[u8]) -> RawResponse {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP answer: {:?}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line: {head}"));
    let mut body = raw[end + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    RawResponse { status, body }
}

pub(super) fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(line_end) = data.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(String::from_utf8_lossy(&data[..line_end]).trim(), 16)
            .unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = line_end + 2;
        out.extend_from_slice(&data[start..(start + size).min(data.len())]);
        data = &data[(start + size + 2).min(data.len())..];
    }
    out
}

/// Write `bytes` one at a time, `every` apart, then keep trickling filler, until the server
/// closes; how long it took from the first byte (`None`: still open after 12 s).
pub(super) async fn dribble(port: u16, bytes: Vec<u8>, every: Duration) -> Option<Duration> {
    let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let (mut rd, mut wr) = stream.into_split();
    let started = Instant::now();
    let reader = tokio::spawn(async move {
        let mut buf = [0u8; 1024];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => return Instant::now(),
                Ok(_) => {} // an error answer (408/400) may come before the close
            }
        }
    });
    let filler = std::iter::repeat(b'a');
    for b in bytes.into_iter().chain(filler) {
        if reader.is_finished() || started.elapsed() > Duration::from_secs(12) {
            break;
        }
        if wr.write_all(&[b]).await.is_err() {
            break;
        }
        tokio::time::sleep(every).await;
    }
    match tokio::time::timeout(Duration::from_secs(1), reader).await {
        Ok(Ok(at)) => Some(at.duration_since(started)),
        _ => None,
    }
}

/// Open `n` TCP connections that never send anything.
pub(super) async fn open_silent(port: u16, n: usize) -> Vec<TcpStream> {
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        v.push(TcpStream::connect(("127.0.0.1", port)).await.unwrap());
    }
    v
}

/// Send `n` messages as fast as possible; count `rate_limited` frames until the close.
pub(super) async fn flood(ws: &mut WsClient, thread: &str, n: usize) -> (usize, Option<u16>) {
    let (limited, _, close) = flood_counting_acks(ws, thread, n).await;
    (limited, close)
}

/// [`flood`], also returning the client ids acknowledged `persisted` before the close.
pub(super) async fn flood_counting_acks(
    ws: &mut WsClient,
    thread: &str,
    n: usize,
) -> (usize, Vec<String>, Option<u16>) {
    for i in 0..n {
        let frame = json!({"type": "send", "thread": thread, "client_id": format!("flood-{i}"), "body": "spam"});
        if ws
            .send_raw(Message::Text(frame.to_string().into()))
            .await
            .is_err()
        {
            break;
        }
    }
    let (mut limited, mut acked) = (0, Vec::new());
    loop {
        match ws.recv().await {
            Some(f) if f["code"] == "rate_limited" => {
                assert!(
                    f["retry_after_ms"].as_u64().is_some_and(|ms| ms > 0),
                    "rate_limited without retry_after_ms: {f}"
                );
                assert!(
                    f["client_id"]
                        .as_str()
                        .is_some_and(|c| c.starts_with("flood-")),
                    "{f}"
                );
                limited += 1;
            }
            Some(f) if f["type"] == "ack" && f["status"] == "persisted" => {
                acked.push(f["client_id"].as_str().unwrap_or_default().to_string());
            }
            Some(_) => {}
            None => {
                return (
                    limited,
                    acked,
                    ws.closed.clone().flatten().map(|c| u16::from(c.code)),
                );
            }
        }
    }
}

/// A ping frame of exactly `size` bytes.
pub(super) fn ping_of_size(size: usize, tag: &str) -> String {
    let shell = format!(r#"{{"type":"ping","nonce":"{tag}"}}"#);
    let pad = size - shell.len();
    format!(r#"{{"type":"ping","nonce":"{tag}{}"}}"#, "x".repeat(pad))
}

/// Send one text message split into `parts` WebSocket fragments.
pub(super) async fn send_fragmented(ws: &mut WsClient, bytes: Vec<u8>, parts: usize) {
    let size = bytes.len().div_ceil(parts);
    let chunks: Vec<Vec<u8>> = bytes.chunks(size).map(<[u8]>::to_vec).collect();
    let n = chunks.len();
    for (i, chunk) in chunks.into_iter().enumerate() {
        let opcode = if i == 0 {
            OpCode::Data(Data::Text)
        } else {
            OpCode::Data(Data::Continue)
        };
        let _ = ws
            .send_raw(Message::Frame(Frame::message(chunk, opcode, i + 1 == n)))
            .await;
    }
}

pub(super) async fn assert_pong(ws: &mut WsClient, what: &str) {
    let nonce = format!("{what}-{}", uuid::Uuid::new_v4());
    ws.send(json!({"type": "ping", "nonce": nonce})).await;
    let pong = ws
        .recv_until("pong", |v| {
            v["type"] == "pong" && v["nonce"] == nonce.as_str()
        })
        .await;
    assert_eq!(pong["type"], "pong", "{what}");
}

pub(super) fn split_token(token: &str) -> (&str, &str) {
    let mut parts = token.split('.');
    assert_eq!(parts.next(), Some("v1"));
    (parts.next().unwrap(), parts.next().unwrap())
}

pub(super) fn median(v: &mut [Duration]) -> Duration {
    v.sort_unstable();
    v[v.len() / 2]
}

/// `a` and `b` are within `factor` of each other, or `slack` apart at most.
pub(super) fn within(a: Duration, b: Duration, factor: f64, slack: Duration) -> bool {
    let (lo, hi) = if a < b { (a, b) } else { (b, a) };
    hi.abs_diff(lo) <= slack || hi.as_secs_f64() <= lo.as_secs_f64() * factor
}
