//! Zero-copy writes of the embedded web UI: at start-up the bodies of the embedded files are
//! copied once into a sealed in-memory file (`memfd`); a socket write whose buffer lies inside
//! one of those bodies is then sent with `sendfile(2)` from that file, so the kernel takes the
//! pages by reference instead of copying the body out of our memory for every response (what
//! nginx does with `sendfile on`). The headers before such a body go out with `MSG_MORE`, so
//! headers and body still leave in one segment. Every other write is a plain write.
//!
//! Linux only; where the file cannot be made (or on other systems) every write is a plain write.
//!
//! Once a connection carries WebSocket frames, its writes go through [`Socket::write`] instead:
//! they never wait and never split a frame (see [`super::socket`]).

use std::{
    io,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::socket::{Socket, Written};

/// Bodies smaller than this are written as usual: below it a copy costs less than the second
/// system call that sending headers and body apart needs.
pub const MIN_LEN: usize = 4096;

/// One registered body: where it is in our memory and where its copy is in the file.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
struct Region {
    start: usize,
    len: usize,
    offset: u64,
}

/// The registered bodies and the sealed file that holds their copies.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
pub struct Pages {
    file: std::fs::File,
    /// Sorted by `start`.
    regions: Vec<Region>,
}

impl Pages {
    /// Copy `bodies` into a sealed in-memory file, once per process (the result is kept for
    /// the life of the process). Bodies shorter than [`MIN_LEN`] are left out. `None` where
    /// the file cannot be made: every write is then a plain write.
    pub fn leak(bodies: impl Iterator<Item = &'static [u8]>) -> Option<&'static Pages> {
        match build(bodies) {
            Ok(pages) => Some(Box::leak(Box::new(pages))),
            Err(e) => {
                tracing::info!(error = %e, "embedded assets are written without sendfile");
                None
            }
        }
    }

    /// Where `buf` is in the file, if all of it lies inside one registered body.
    fn lookup(&self, buf: &[u8]) -> Option<u64> {
        let p = buf.as_ptr() as usize;
        let i = self.regions.partition_point(|r| r.start <= p);
        let r = self.regions.get(i.checked_sub(1)?)?;
        (p + buf.len() <= r.start + r.len).then(|| r.offset + (p - r.start) as u64)
    }
}

#[cfg(target_os = "linux")]
fn build(bodies: impl Iterator<Item = &'static [u8]>) -> io::Result<Pages> {
    use std::{
        io::Write,
        os::fd::{AsRawFd, FromRawFd, OwnedFd},
    };
    // SAFETY: a NUL-terminated name and valid flags; the descriptor is owned right below.
    let fd = unsafe {
        libc::memfd_create(
            c"emergence-assets".as_ptr(),
            libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by memfd_create and nothing else owns it.
    let mut file = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    let mut regions = Vec::new();
    let mut offset = 0u64;
    for body in bodies.filter(|b| b.len() >= MIN_LEN) {
        file.write_all(body)?;
        regions.push(Region {
            start: body.as_ptr() as usize,
            len: body.len(),
            offset,
        });
        offset += body.len() as u64;
    }
    if regions.is_empty() {
        return Err(io::Error::other("no body large enough"));
    }
    // Sealed: nothing can change what the sockets are sent.
    let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE | libc::F_SEAL_SEAL;
    // SAFETY: fcntl on a descriptor we own.
    if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_ADD_SEALS, seals) } < 0 {
        return Err(io::Error::last_os_error());
    }
    regions.sort_by_key(|r| r.start);
    Ok(Pages { file, regions })
}

#[cfg(not(target_os = "linux"))]
fn build(_: impl Iterator<Item = &'static [u8]>) -> io::Result<Pages> {
    Err(io::Error::other("sendfile from memory is Linux only"))
}

/// A server-side TCP connection whose writes of registered bodies use `sendfile`.
pub struct Conn {
    socket: Arc<Socket>,
    pages: Option<&'static Pages>,
    /// Bytes sent from the file so far.
    from_file: u64,
}

impl Conn {
    pub fn new(socket: Arc<Socket>, pages: Option<&'static Pages>) -> Self {
        Self {
            socket,
            pages,
            from_file: 0,
        }
    }

    fn stream(&self) -> &tokio::net::TcpStream {
        &self.socket.stream
    }

    /// A plain write (`write` on the stream), waiting for the socket to be writable.
    fn poll_plain(
        &self,
        cx: &mut Context<'_>,
        write: impl Fn(&tokio::net::TcpStream) -> io::Result<usize>,
    ) -> Poll<io::Result<usize>> {
        let stream = self.stream();
        loop {
            std::task::ready!(stream.poll_write_ready(cx))?;
            match write(stream) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                other => return Poll::Ready(other),
            }
        }
    }

    /// A write once the connection carries frames: taken whole, now or parked.
    fn write_frames(&self, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.socket.write(buf) {
            Written::Failed => Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())),
            Written::All | Written::Parked => Poll::Ready(Ok(buf.len())),
        }
    }

    /// Bytes this connection sent from the file rather than from memory.
    pub fn sent_from_file(&self) -> u64 {
        self.from_file
    }

    fn lookup(&self, buf: &[u8]) -> Option<u64> {
        self.pages?.lookup(buf)
    }

    #[cfg(target_os = "linux")]
    fn poll_sendfile(
        &mut self,
        cx: &mut Context<'_>,
        buf: &[u8],
        at: u64,
    ) -> Poll<io::Result<usize>> {
        use std::os::fd::AsRawFd;
        let Some(pages) = self.pages else {
            return Poll::Ready(Err(io::Error::other("no registered bodies")));
        };
        loop {
            std::task::ready!(self.stream().poll_write_ready(cx))?;
            let sent = self.stream().try_io(tokio::io::Interest::WRITABLE, || {
                let mut off = at as libc::off_t;
                // SAFETY: both descriptors are open for the call; `off` is a valid pointer.
                let n = unsafe {
                    libc::sendfile(
                        self.stream().as_raw_fd(),
                        pages.file.as_raw_fd(),
                        &mut off,
                        buf.len(),
                    )
                };
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            });
            match sent {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Ok(n) => {
                    self.from_file += n as u64;
                    return Poll::Ready(Ok(n));
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    /// Write `bufs` with `MSG_MORE`: a body follows at once, so the kernel holds these bytes
    /// back to leave in the same segment.
    #[cfg(target_os = "linux")]
    fn poll_send_more(
        &self,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        use std::os::fd::AsRawFd;
        loop {
            std::task::ready!(self.stream().poll_write_ready(cx))?;
            let sent = self.stream().try_io(tokio::io::Interest::WRITABLE, || {
                // SAFETY: `IoSlice` is ABI-compatible with `iovec` on Unix; the slices outlive
                // the call and the kernel only reads them.
                let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
                msg.msg_iov = bufs.as_ptr() as *mut libc::iovec;
                msg.msg_iovlen = bufs.len() as _;
                // SAFETY: an open socket and a valid message header.
                let n = unsafe {
                    libc::sendmsg(
                        self.stream().as_raw_fd(),
                        &msg,
                        libc::MSG_MORE | libc::MSG_NOSIGNAL,
                    )
                };
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            });
            match sent {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                other => return Poll::Ready(other),
            }
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let stream = self.stream();
        loop {
            std::task::ready!(stream.poll_read_ready(cx))?;
            // SAFETY: the kernel only writes into the spare capacity (never reads it), and
            // exactly the `n` bytes it wrote are then marked initialised and filled (what
            // tokio's own `TcpStream` does).
            let read = unsafe {
                let unfilled = &mut *(buf.unfilled_mut() as *mut [_] as *mut [u8]);
                stream.try_read(unfilled).inspect(|&n| buf.assume_init(n))
            };
            match read {
                Ok(n) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.socket.carries_frames() {
            return self.write_frames(buf);
        }
        #[cfg(target_os = "linux")]
        if let Some(at) = self.lookup(buf) {
            return self.get_mut().poll_sendfile(cx, buf, at);
        }
        self.poll_plain(cx, |s| s.try_write(buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.socket.carries_frames() {
            // Rare (the WebSocket library writes one buffer): joined, so the write holds whole
            // frames as `Socket::write` expects.
            let joined: Vec<u8> = bufs.iter().flat_map(|b| b.iter().copied()).collect();
            return self.write_frames(&joined);
        }
        #[cfg(target_os = "linux")]
        if let Some(first) = bufs.iter().position(|b| !b.is_empty()) {
            // A registered body first: sendfile it. Bytes before one: send them with MSG_MORE.
            if let Some(at) = self.lookup(&bufs[first]) {
                return self.get_mut().poll_sendfile(cx, &bufs[first], at);
            }
            if let Some(body) = (first + 1..bufs.len()).find(|&i| self.lookup(&bufs[i]).is_some()) {
                return self.poll_send_more(cx, &bufs[first..body]);
            }
        }
        self.poll_plain(cx, |s| s.try_write_vectored(bufs))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    /// Once frames are carried, a flush waits until nothing is parked.
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.socket.carries_frames() {
            return self.socket.poll_flush_parked(cx).map_ok(|_| ());
        }
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.as_mut().poll_flush(cx))?;
        Poll::Ready(self.socket.shutdown())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::{
        io::{AsyncReadExt, AsyncWriteExt},
        net::TcpStream,
    };

    static BODY: [u8; 3 * MIN_LEN] = {
        let mut b = [0u8; 3 * MIN_LEN];
        let mut i = 0;
        while i < b.len() {
            b[i] = (i * 7 % 251) as u8;
            i += 1;
        }
        b
    };

    #[tokio::test]
    async fn a_registered_body_arrives_whole_after_its_headers() {
        let pages = Pages::leak(std::iter::once(&BODY[..])).expect("memfd on Linux");
        assert_eq!(pages.lookup(&BODY[10..20]), Some(10));
        assert_eq!(pages.lookup(&BODY[MIN_LEN..]), Some(MIN_LEN as u64));
        assert_eq!(pages.lookup(&[1u8, 2, 3][..]), None);

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::spawn(async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            let mut got = Vec::new();
            s.read_to_end(&mut got).await.unwrap();
            got
        });
        let (server, _) = listener.accept().await.unwrap();
        let mut conn = Conn::new(Arc::new(Socket::new(server)), Some(pages));
        let head = b"HTTP/1.1 200 OK\r\n\r\n".to_vec();
        // Headers, a registered body from its middle (as after a partial write), plain bytes.
        let tail = b"tail".to_vec();
        let parts = [&head[..], &BODY[5..], &tail[..]];
        let mut written = 0;
        let total: usize = parts.iter().map(|p| p.len()).sum();
        while written < total {
            let mut skip = written;
            let mut slices = Vec::new();
            for p in parts {
                if skip >= p.len() {
                    skip -= p.len();
                } else {
                    slices.push(io::IoSlice::new(&p[skip..]));
                    skip = 0;
                }
            }
            written += conn.write_vectored(&slices).await.unwrap();
        }
        conn.shutdown().await.unwrap();
        assert_eq!(
            conn.sent_from_file(),
            (BODY.len() - 5) as u64,
            "the body went through sendfile"
        );
        drop(conn);
        let got = client.await.unwrap();
        let want: Vec<u8> = parts.concat();
        assert_eq!(got.len(), want.len());
        assert!(got == want, "the bytes sent are the bytes given");
    }
}
