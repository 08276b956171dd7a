//! The coalescing floor (`emergence load floor-room --sweep`, hidden: benchmarks only): the least
//! a WebSocket broadcast room can do per delivery when every socket gets everything queued for it
//! in one write. A text frame read from one connection is encoded once and appended to every
//! open connection's buffer (a copy, no syscall); one sweeper per core owns a shard of the
//! sockets and writes each dirty socket's whole buffer in one `write`, again and again while
//! frames keep coming. No task wake-up per socket, no JSON, no storage: what it reaches on a
//! machine is what a server that coalesces perfectly could reach there, the bound beside the
//! loopback floor's one write per delivery (`floor_room`). Same protocol as the other peers.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex, MutexGuard},
};

use anyhow::Context;
use tokio::{
    net::{TcpListener, TcpStream},
    sync::Notify,
};

use super::floor_room::{Frames, MAX_PARKED, accept_each, serve_frames, upgrade};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What is waiting to be written to one socket.
#[derive(Default)]
struct Out {
    bytes: Vec<u8>,
    /// The socket is on its shard's dirty list (or waits to be writable): appending to `bytes`
    /// is enough, the sweeper will come.
    queued: bool,
    /// A write failed or the buffer overflowed: nothing more is taken.
    dead: bool,
}

struct Client {
    stream: TcpStream,
    out: Mutex<Out>,
    shard: usize,
    /// The kernel buffer was full: the client's flusher waits for it to drain.
    blocked: Notify,
}

impl Client {
    /// Append `frame`; `true` when the socket has to be put on its shard's dirty list.
    fn append(&self, frame: &[u8]) -> bool {
        let mut out = lock(&self.out);
        if out.dead {
            return false;
        }
        if out.bytes.len() + frame.len() > MAX_PARKED {
            out.dead = true;
            out.bytes = Vec::new();
            return false;
        }
        out.bytes.extend_from_slice(frame);
        !std::mem::replace(&mut out.queued, true)
    }

    /// One write of everything queued; what the kernel does not take waits for the flusher.
    fn write(&self) {
        let mut out = lock(&self.out);
        match self.stream.try_write(&out.bytes) {
            Ok(n) => {
                out.bytes.drain(..n);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => {
                out.dead = true;
                out.bytes = Vec::new();
            }
        }
        if out.bytes.is_empty() {
            out.queued = false;
        } else {
            drop(out);
            self.blocked.notify_one();
        }
    }
}

/// The sockets one sweeper writes.
#[derive(Default)]
struct Shard {
    dirty: Mutex<Vec<Arc<Client>>>,
    wake: Notify,
}

impl Shard {
    fn push(&self, clients: impl IntoIterator<Item = Arc<Client>>) {
        lock(&self.dirty).extend(clients);
        self.wake.notify_one();
    }
}

struct Room {
    clients: Mutex<HashMap<u64, Arc<Client>>>,
    shards: Vec<Shard>,
}

impl Frames for Room {
    type Client = Arc<Client>;

    fn reply(&self, to: &Arc<Client>, frame: &[u8]) {
        if to.append(frame) {
            self.shards[to.shard].push([to.clone()]);
        }
    }

    /// Queue `frame` for every open connection, and wake the sweepers with new dirty sockets.
    fn broadcast(&self, frame: &[u8]) {
        let mut dirty: Vec<Vec<Arc<Client>>> = vec![Vec::new(); self.shards.len()];
        for c in lock(&self.clients).values() {
            if c.append(frame) {
                dirty[c.shard].push(c.clone());
            }
        }
        for (shard, clients) in self.shards.iter().zip(dirty) {
            if !clients.is_empty() {
                shard.push(clients);
            }
        }
    }
}

/// One shard's writer: every dirty socket gets one write of all it has queued; sockets made
/// dirty meanwhile are taken on the next pass.
async fn sweep(room: Arc<Room>, shard: usize) {
    let mut pass = Vec::new();
    loop {
        std::mem::swap(&mut *lock(&room.shards[shard].dirty), &mut pass);
        if pass.is_empty() {
            room.shards[shard].wake.notified().await;
            continue;
        }
        for c in pass.drain(..) {
            c.write();
        }
        // The readers (and the other sweeper, on a busy core) get their turn between passes.
        tokio::task::yield_now().await;
    }
}

/// A socket whose kernel buffer was full goes back on its shard's list once it is writable.
async fn flusher(room: Arc<Room>, client: Arc<Client>) {
    loop {
        client.blocked.notified().await;
        if client.stream.writable().await.is_err() {
            return;
        }
        room.shards[client.shard].push([client.clone()]);
    }
}

/// Serve the room on `listen` with one sweeper per worker thread until the process is stopped.
pub async fn serve(listen: SocketAddr, sweepers: usize) -> anyhow::Result<()> {
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    eprintln!("coalescing floor room listening on ws://{listen}/ws");
    let room = Arc::new(Room {
        clients: Mutex::default(),
        shards: (0..sweepers.max(1)).map(|_| Shard::default()).collect(),
    });
    for shard in 0..room.shards.len() {
        tokio::spawn(sweep(room.clone(), shard));
    }
    accept_each(listener, |stream, id| {
        tokio::spawn(connection(stream, id, room.clone()));
    })
    .await
}

async fn connection(stream: TcpStream, id: u64, room: Arc<Room>) {
    let Some((stream, buf)) = upgrade(stream).await else {
        return;
    };
    let client = Arc::new(Client {
        stream,
        out: Mutex::default(),
        shard: id as usize % room.shards.len(),
        blocked: Notify::new(),
    });
    let flush = tokio::spawn(flusher(room.clone(), client.clone()));
    lock(&room.clients).insert(id, client.clone());
    serve_frames(&*room, &client, &client.stream, buf).await;
    lock(&room.clients).remove(&id);
    flush.abort();
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::{super::floor_room::encode, *};

    /// A masked client text frame.
    fn client_frame(payload: &[u8]) -> Vec<u8> {
        let mask = [7u8, 1, 9, 3];
        let mut f = vec![0x81, 0x80 | payload.len() as u8];
        f.extend_from_slice(&mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        f
    }

    async fn open(addr: SocketAddr) -> TcpStream {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(
            b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        )
        .await
        .unwrap();
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut b = [0u8; 1];
            s.read_exact(&mut b).await.unwrap();
            head.push(b[0]);
        }
        assert!(head.starts_with(b"HTTP/1.1 101"));
        s
    }

    fn free_addr() -> SocketAddr {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        ([127, 0, 0, 1], port).into()
    }

    /// Every connection, the sender included, gets every frame once and in order.
    async fn every_frame_reaches_every_connection(addr: SocketAddr) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut socks = Vec::new();
        for _ in 0..5 {
            socks.push(open(addr).await);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let frames: Vec<Vec<u8>> = (0..200).map(|i| format!("m{i:03}").into_bytes()).collect();
        let mut sender = socks.remove(0);
        for f in &frames {
            sender.write_all(&client_frame(f)).await.unwrap();
        }
        socks.push(sender);
        let expected: Vec<u8> = frames.iter().flat_map(|f| encode(1, f)).collect();
        for s in &mut socks {
            let mut got = vec![0u8; expected.len()];
            tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut got))
                .await
                .expect("all frames arrive")
                .unwrap();
            assert_eq!(got, expected);
        }
    }

    /// Through the sweepers' coalesced writes.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_coalescing_floor_delivers_every_frame_in_order() {
        let addr = free_addr();
        tokio::spawn(serve(addr, 2));
        every_frame_reaches_every_connection(addr).await;
    }

    /// Through one write per delivery.
    #[tokio::test]
    async fn the_one_write_floor_delivers_every_frame_in_order() {
        let addr = free_addr();
        tokio::spawn(super::super::floor_room::serve(addr));
        every_frame_reaches_every_connection(addr).await;
    }
}
