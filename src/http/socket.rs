//! One accepted TCP connection, shared between the HTTP stack that reads and writes it and, once
//! it is a WebSocket, the realtime sweepers that write frames to it directly (`realtime::sweep`).
//!
//! Before an upgrade the socket is an ordinary stream. After it ([`Socket::to_frames`]) a write
//! never waits and never writes part of what it was given: what the kernel does not take is
//! parked, in order, and the connection's task writes it once the socket is writable
//! ([`Socket::poll_flush_parked`]). Every write, the WebSocket library's (pongs, the closing
//! handshake) and a sweeper's (deliveries), goes through one lock, so the frames on the wire stay
//! whole and in the order they were written.

use std::{
    io,
    sync::{
        Mutex, MutexGuard,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll},
};

use tokio::net::TcpStream;

/// Parked bytes beyond this fail the socket: a peer that never reads cannot grow our memory
/// without bound (deliveries wait in the connection's queue while bytes are parked, so only the
/// WebSocket library's own writes could reach it).
pub const MAX_PARKED: usize = 4 << 20;

/// The request's connection, for a handler that upgrades it (`/ws`).
#[derive(Clone)]
pub struct Upgradable(pub std::sync::Arc<Socket>);

/// What a [`Socket::write`] did with the bytes it was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// The kernel took all of them.
    All,
    /// Some (or all) are parked until the socket is writable.
    Parked,
    /// The socket failed (or was sealed): nothing more goes out.
    Failed,
}

#[derive(Default)]
struct Out {
    parked: Vec<u8>,
    /// The closing frame went out: a sweeper's late frames are dropped.
    sealed: bool,
}

/// A TCP stream with a shared, frame-preserving write side.
pub struct Socket {
    pub(crate) stream: TcpStream,
    out: Mutex<Out>,
    frames: AtomicBool,
    /// `out.parked` is not empty (changed under its lock; read without it by the sweepers).
    parked: AtomicBool,
    /// A write failed, or the parked bytes overflowed (set under the lock of `out`).
    failed: AtomicBool,
}

impl Socket {
    pub fn new(stream: TcpStream) -> Socket {
        Socket {
            stream,
            out: Mutex::default(),
            frames: AtomicBool::new(false),
            parked: AtomicBool::new(false),
            failed: AtomicBool::new(false),
        }
    }

    fn out(&self) -> MutexGuard<'_, Out> {
        self.out.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The socket carries WebSocket frames from now on: writes park instead of waiting.
    pub fn to_frames(&self) {
        self.frames.store(true, Ordering::Release);
    }

    /// Whether writes park ([`to_frames`](Self::to_frames) was called).
    pub fn carries_frames(&self) -> bool {
        self.frames.load(Ordering::Acquire)
    }

    /// The WebSocket library's write (whole frames: pongs, the closing frame): written now or
    /// parked; a close frame among them seals the socket against the sweepers.
    pub fn write(&self, bytes: &[u8]) -> Written {
        let mut out = self.out();
        if has_close_frame(bytes) {
            out.sealed = true;
        }
        self.write_locked(&mut out, bytes)
    }

    /// A sweeper's write (whole frames): dropped once the closing frame went out.
    pub fn write_swept(&self, bytes: &[u8]) -> Written {
        let mut out = self.out();
        if out.sealed {
            return Written::Failed;
        }
        self.write_locked(&mut out, bytes)
    }

    /// Write `bytes` now, or park what the kernel does not take; never partly dropped, never
    /// reordered with another write.
    fn write_locked(&self, out: &mut Out, bytes: &[u8]) -> Written {
        if self.failed() {
            return Written::Failed;
        }
        if bytes.is_empty() {
            return if out.parked.is_empty() {
                Written::All
            } else {
                Written::Parked
            };
        }
        let from = if out.parked.is_empty() {
            match self.stream.try_write(bytes) {
                Ok(n) if n == bytes.len() => return Written::All,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
                Err(_) => {
                    self.fail(out);
                    return Written::Failed;
                }
            }
        } else {
            0
        };
        if out.parked.len() + bytes.len() - from > MAX_PARKED {
            self.fail(out);
            return Written::Failed;
        }
        out.parked.extend_from_slice(&bytes[from..]);
        self.parked.store(true, Ordering::SeqCst);
        Written::Parked
    }

    /// Whether bytes wait for the socket to be writable.
    pub fn is_parked(&self) -> bool {
        self.parked.load(Ordering::SeqCst)
    }

    /// Whether a write failed.
    pub fn failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }

    /// Nothing more goes out (called under the lock of `out`).
    fn fail(&self, out: &mut Out) {
        self.failed.store(true, Ordering::Release);
        out.parked = Vec::new();
        self.parked.store(false, Ordering::SeqCst);
    }

    /// Nothing more from the sweepers: the closing frame is being written.
    pub fn seal(&self) {
        self.out().sealed = true;
    }

    /// Write the parked bytes as the socket takes them; `Ready(Ok(true))` once they are all
    /// written (`false`: there were none). Only the connection's own task calls this (directly
    /// or through the WebSocket library's flush), so the socket's one write-readiness waker is
    /// its.
    pub fn poll_flush_parked(&self, cx: &mut Context<'_>) -> Poll<io::Result<bool>> {
        let mut wrote = false;
        loop {
            let mut out = self.out();
            if self.failed() {
                return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
            }
            if out.parked.is_empty() {
                return Poll::Ready(Ok(wrote));
            }
            match self.stream.try_write(&out.parked) {
                Ok(n) => {
                    out.parked.drain(..n);
                    if out.parked.is_empty() {
                        self.parked.store(false, Ordering::SeqCst);
                    }
                    wrote = true;
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => {
                    self.fail(&mut out);
                    return Poll::Ready(Err(e));
                }
            }
            drop(out);
            std::task::ready!(self.stream.poll_write_ready(cx))?;
        }
    }

    /// Close the write direction (after the parked bytes, which the caller flushed).
    pub fn shutdown(&self) -> io::Result<()> {
        socket2::SockRef::from(&self.stream).shutdown(std::net::Shutdown::Write)
    }
}

/// Append one unmasked server frame (`opcode` with FIN) carrying `payload` (RFC 6455 §5.2).
pub fn encode(buf: &mut Vec<u8>, opcode: u8, payload: &[u8]) {
    let len = payload.len();
    buf.push(0x80 | opcode);
    if len < 126 {
        buf.push(len as u8);
    } else if len <= u16::MAX as usize {
        buf.push(126);
        buf.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        buf.push(127);
        buf.extend_from_slice(&(len as u64).to_be_bytes());
    }
    buf.extend_from_slice(payload);
}

/// Text frame opcode.
pub const TEXT: u8 = 0x1;
/// Ping frame opcode.
pub const PING: u8 = 0x9;

/// Whether the whole server frames in `bytes` (unmasked, as a server writes them) include a
/// close frame (opcode 8).
fn has_close_frame(mut bytes: &[u8]) -> bool {
    while bytes.len() >= 2 {
        if bytes[0] & 0x0f == 0x8 {
            return true;
        }
        let masked = bytes[1] & 0x80 != 0;
        let (len, header) = match bytes[1] & 0x7f {
            126 if bytes.len() >= 4 => (u16::from_be_bytes([bytes[2], bytes[3]]) as usize, 4),
            127 if bytes.len() >= 10 => {
                let mut n = [0u8; 8];
                n.copy_from_slice(&bytes[2..10]);
                (u64::from_be_bytes(n) as usize, 10)
            }
            126 | 127 => return false,
            n => (n as usize, 2),
        };
        let skip = header + if masked { 4 } else { 0 } + len;
        bytes = bytes.get(skip..).unwrap_or(&[]);
    }
    false
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio::io::AsyncReadExt;

    use super::*;

    fn frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        encode(&mut b, opcode, payload);
        b
    }

    #[test]
    fn a_close_frame_is_found_among_whole_frames() {
        let mut bytes = frame(0x1, &[b'x'; 300]);
        bytes.extend(frame(0xA, b""));
        assert!(!has_close_frame(&bytes));
        bytes.extend(frame(0x8, &[0x03, 0xe8]));
        assert!(has_close_frame(&bytes));
        assert!(has_close_frame(&frame(0x8, b"")));
        assert!(!has_close_frame(&frame(0x1, &[8u8; 70_000])));
    }

    /// A peer that does not read: what the kernel does not take is parked, in order, written
    /// once the peer reads; the sweepers' frames stop at the library's close frame.
    #[tokio::test]
    async fn parked_bytes_go_out_in_order_and_a_close_seals() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut client = TcpStream::connect(addr).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        // Small kernel buffers: the kernel takes little, the rest parks.
        socket2::SockRef::from(&server)
            .set_send_buffer_size(8192)
            .unwrap();
        socket2::SockRef::from(&client)
            .set_recv_buffer_size(8192)
            .unwrap();
        let socket = Arc::new(Socket::new(server));
        socket.to_frames();
        let mut sent = Vec::new();
        let mut parked = false;
        for i in 0..200u32 {
            let f = frame(0x1, &[(i % 251) as u8; 16 * 1024]);
            sent.extend_from_slice(&f);
            parked |= socket.write_swept(&f) == Written::Parked;
        }
        assert!(parked, "3 MiB unread by the peer: some of it parked");
        assert!(socket.is_parked());
        let close = frame(0x8, &[0x03, 0xe8]);
        assert_eq!(
            socket.write(&close),
            Written::Parked,
            "behind the parked bytes"
        );
        sent.extend_from_slice(&close);
        assert_eq!(socket.write_swept(&frame(0x1, b"late")), Written::Failed);
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            client.read_to_end(&mut got).await.unwrap();
            got
        });
        std::future::poll_fn(|cx| socket.poll_flush_parked(cx))
            .await
            .unwrap();
        socket.shutdown().unwrap();
        let got = reader.await.unwrap();
        assert_eq!(got.len(), sent.len());
        assert!(got == sent, "every byte, in order, nothing after the close");
    }

    /// Every length class decodes back with tungstenite's own frame parser.
    #[test]
    fn frames_decode_with_the_websocket_library() {
        for len in [0usize, 1, 125, 126, 127, 65_535, 65_536, 100_000] {
            let payload: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
            let mut buf = Vec::new();
            encode(&mut buf, TEXT, &payload);
            let mut cursor = std::io::Cursor::new(buf);
            let (header, length) = tungstenite::protocol::frame::FrameHeader::parse(&mut cursor)
                .unwrap()
                .expect("a whole header");
            assert!(header.is_final);
            assert_eq!(
                header.opcode,
                tungstenite::protocol::frame::coding::OpCode::Data(
                    tungstenite::protocol::frame::coding::Data::Text
                )
            );
            assert!(header.mask.is_none(), "server frames are not masked");
            assert_eq!(length as usize, len);
            let at = cursor.position() as usize;
            assert_eq!(&cursor.into_inner()[at..], &payload[..]);
        }
    }
}
