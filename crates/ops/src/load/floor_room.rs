//! The loopback floor (`emergence load floor-room`, hidden: benchmarks only): the least a
//! WebSocket broadcast room can do per delivery on this machine. A text frame read from one
//! connection is encoded once and written to every open connection straight from the task that
//! read it: one `write` per delivery, no queue, no task wake-up, no JSON, no storage. Only a
//! socket whose kernel buffer is full gets its bytes parked, flushed by its own task when it is
//! writable again. `bench/run fanout` runs it beside Emergence, Node `ws` and FastAPI with the
//! same load generator and the same protocol as those peers (every text frame goes to every open
//! connection, the sender included; a `{"type":"ping"` text gets a pong), so every system's
//! figure can be read against what one write per delivery allows on this machine.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use anyhow::Context;
use tokio::{
    io::AsyncWriteExt,
    net::{TcpListener, TcpStream},
    sync::Notify,
};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

/// Bytes parked for one slow socket before it is dropped.
pub(super) const MAX_PARKED: usize = 16 << 20;
/// Largest frame accepted from a client.
const MAX_FRAME: usize = 256 << 10;

struct Client {
    stream: TcpStream,
    parked: Mutex<Vec<u8>>,
    wake: Notify,
}

impl Client {
    /// One write of `frame`; what the kernel does not take is parked for the flusher.
    fn send(&self, frame: &[u8]) -> bool {
        let mut parked = self.parked.lock().unwrap_or_else(|e| e.into_inner());
        if !parked.is_empty() {
            parked.extend_from_slice(frame);
            return parked.len() <= MAX_PARKED;
        }
        let rest = match self.stream.try_write(frame) {
            Ok(n) if n == frame.len() => return true,
            Ok(n) => &frame[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => frame,
            Err(_) => return false,
        };
        parked.extend_from_slice(rest);
        drop(parked);
        self.wake.notify_one();
        true
    }

    /// Drain parked bytes whenever the socket is writable again.
    async fn flush_parked(self: Arc<Self>) {
        loop {
            self.wake.notified().await;
            loop {
                if self.stream.writable().await.is_err() {
                    return;
                }
                let mut parked = self.parked.lock().unwrap_or_else(|e| e.into_inner());
                if parked.is_empty() {
                    break;
                }
                match self.stream.try_write(&parked) {
                    Ok(n) => {
                        parked.drain(..n);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(_) => return,
                }
            }
        }
    }
}

/// The open connections.
#[derive(Default)]
struct Room(Mutex<HashMap<u64, Arc<Client>>>);

/// Serve the room on `listen` until the process is stopped.
pub async fn serve(listen: SocketAddr) -> anyhow::Result<()> {
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    eprintln!("floor room listening on ws://{listen}/ws");
    let room = Arc::new(Room::default());
    accept_each(listener, |stream, id| {
        tokio::spawn(connection(stream, id, room.clone()));
    })
    .await
}

/// Accept connections until the listener fails, numbering them, with Nagle off.
pub(super) async fn accept_each(
    listener: TcpListener,
    mut each: impl FnMut(TcpStream, u64),
) -> anyhow::Result<()> {
    for id in 0.. {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        each(stream, id);
    }
    Ok(())
}

async fn connection(stream: TcpStream, id: u64, room: Arc<Room>) {
    let Some((stream, buf)) = upgrade(stream).await else {
        return;
    };
    let client = Arc::new(Client {
        stream,
        parked: Mutex::new(Vec::new()),
        wake: Notify::new(),
    });
    let flusher = tokio::spawn(client.clone().flush_parked());
    room.0
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(id, client.clone());
    serve_frames(&*room, &client, &client.stream, buf).await;
    room.0.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
    flusher.abort();
}

impl Frames for Room {
    type Client = Client;

    fn reply(&self, to: &Client, frame: &[u8]) {
        to.send(frame);
    }

    fn broadcast(&self, frame: &[u8]) {
        // Writes never block, so they are made under the room's lock; a socket that failed is
        // dropped by its own reader.
        for c in self.0.lock().unwrap_or_else(|e| e.into_inner()).values() {
            let _ = c.send(frame);
        }
    }
}

/// Answer the WebSocket upgrade (or `/readyz`, then `None`): the stream and what the client
/// sent after its request.
pub(super) async fn upgrade(mut stream: TcpStream) -> Option<(TcpStream, Vec<u8>)> {
    let mut buf = Vec::with_capacity(4096);
    let key = handshake(&mut stream, &mut buf).await?;
    let accept = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n\r\n",
        derive_accept_key(key.as_bytes())
    );
    stream.write_all(accept.as_bytes()).await.ok()?;
    Some((stream, buf))
}

/// Read the upgrade request (or answer `/readyz` and return `None`). What follows the request
/// is left in `buf`.
async fn handshake(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<String> {
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > 16 << 10 || !read_more(stream, buf).await {
            return None;
        }
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    buf.drain(..end);
    let key = head.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("sec-websocket-key")
            .then(|| value.trim().to_string())
    });
    if key.is_none() {
        let body = r#"{"status":"ready"}"#;
        let reply = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
             connection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = stream.write_all(reply.as_bytes()).await;
    }
    key
}

async fn read_more(stream: &TcpStream, buf: &mut Vec<u8>) -> bool {
    loop {
        if stream.readable().await.is_err() {
            return false;
        }
        buf.reserve(4096);
        let len = buf.len();
        let spare = buf.capacity() - len;
        buf.resize(len + spare, 0);
        match stream.try_read(&mut buf[len..]) {
            Ok(0) => {
                buf.truncate(len);
                return false;
            }
            Ok(n) => {
                buf.truncate(len + n);
                return true;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => buf.truncate(len),
            Err(_) => {
                buf.truncate(len);
                return false;
            }
        }
    }
}

/// A client frame: opcode, unmasked payload, and the bytes it took.
type Parsed = (u8, Vec<u8>, usize);

/// The first frame in `buf`: `None` until it is whole, `Err` for what the room does not take
/// (a fragment, an unmasked or oversized frame).
fn parse(buf: &[u8]) -> Option<Result<Parsed, ()>> {
    if buf.len() < 2 {
        return None;
    }
    let (fin, opcode, masked) = (buf[0] & 0x80 != 0, buf[0] & 0x0f, buf[1] & 0x80 != 0);
    if !fin || !masked {
        return Some(Err(()));
    }
    let (len, mut at) = match buf[1] & 0x7f {
        126 if buf.len() >= 4 => (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4),
        127 if buf.len() >= 10 => (u64::from_be_bytes(buf[2..10].try_into().ok()?) as usize, 10),
        126 | 127 => return None,
        n => (n as usize, 2),
    };
    if len > MAX_FRAME {
        return Some(Err(()));
    }
    if buf.len() < at + 4 + len {
        return None;
    }
    let mask = [buf[at], buf[at + 1], buf[at + 2], buf[at + 3]];
    at += 4;
    let payload = buf[at..at + len]
        .iter()
        .enumerate()
        .map(|(i, b)| b ^ mask[i % 4])
        .collect();
    Some(Ok((opcode, payload, at + len)))
}

/// A server frame (unmasked, one fragment).
pub(super) fn encode(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(payload.len() + 10);
    f.push(0x80 | opcode);
    match payload.len() {
        n if n < 126 => f.push(n as u8),
        n if n <= u16::MAX as usize => {
            f.push(126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    f.extend_from_slice(payload);
    f
}

/// Where a connection's frames go: a reply to that connection, or every open connection.
pub(super) trait Frames {
    type Client;
    fn reply(&self, to: &Self::Client, frame: &[u8]);
    fn broadcast(&self, frame: &[u8]);
}

/// Read one connection's frames until it closes or sends what the room does not take: a text
/// `{"type":"ping"` gets a pong, other text and binary frames go to every connection, a ping
/// its pong, a close its close.
pub(super) async fn serve_frames<R: Frames>(
    room: &R,
    client: &R::Client,
    stream: &TcpStream,
    mut buf: Vec<u8>,
) {
    loop {
        while let Some(parsed) = parse(&buf) {
            let Ok((opcode, payload, used)) = parsed else {
                return;
            };
            buf.drain(..used);
            match opcode {
                1 if payload.len() < 64 && payload.starts_with(br#"{"type":"ping""#) => {
                    room.reply(client, &encode(1, br#"{"type":"pong","nonce":null}"#));
                }
                1 | 2 => room.broadcast(&encode(opcode, &payload)),
                9 => room.reply(client, &encode(10, &payload)),
                8 => {
                    room.reply(client, &encode(8, &[]));
                    return;
                }
                _ => {}
            }
        }
        if !read_more(stream, &mut buf).await {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_masked_client_frame_parses_and_a_server_frame_encodes() {
        let payload = b"hello floor";
        let mask = [1u8, 2, 3, 4];
        let mut f = vec![0x81, 0x80 | payload.len() as u8];
        f.extend_from_slice(&mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        assert!(parse(&f[..5]).is_none(), "incomplete");
        let (op, got, used) = parse(&f).unwrap().unwrap();
        assert_eq!((op, got.as_slice(), used), (1, &payload[..], f.len()));
        assert_eq!(encode(1, payload)[..2], [0x81, payload.len() as u8]);
        assert_eq!(encode(1, &[0; 300])[..4], [0x81, 126, 1, 44]);
    }
}
