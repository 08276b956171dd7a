//! A TCP fault proxy for resilience tests, placed between the server and PostgreSQL (or Redis):
//! pass-through, refuse new connections, reset every connection (open ones with `reset_all`, new
//! ones on accept with `Mode::Reset`), blackhole (accept and swallow bytes, never answer, never
//! RST), and added latency.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::watch,
};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Pass,
    /// Not listening: connection attempts are refused.
    Refuse,
    /// Accept and swallow; existing connections stop forwarding (no RST ever).
    Blackhole,
    /// Accept each new connection and reset it at once (RST), like a server process that
    /// crashes on every connection or a firewall rejecting with TCP resets.
    Reset,
    /// Forward each chunk after this delay.
    Latency(Duration),
}

pub struct FaultProxy {
    pub port: u16,
    mode: watch::Sender<Mode>,
    conns: Arc<Mutex<Vec<(TcpStreamHandle, CancellationToken)>>>,
    stop: CancellationToken,
}

/// Enough of a connection to reset it.
struct TcpStreamHandle(std::os::fd::RawFd);

impl FaultProxy {
    /// Start proxying a fresh local port to `upstream`.
    pub async fn start(upstream: SocketAddr) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (mode, rx) = watch::channel(Mode::Pass);
        let conns = Arc::new(Mutex::new(Vec::new()));
        let stop = CancellationToken::new();
        tokio::spawn(accept_loop(
            listener,
            port,
            upstream,
            rx,
            conns.clone(),
            stop.clone(),
        ));
        FaultProxy {
            port,
            mode,
            conns,
            stop,
        }
    }

    pub fn set(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }

    /// Reset every open connection (RST), as a restarted server or `pg_terminate_backend` would.
    pub fn reset_all(&self) {
        let conns = std::mem::take(&mut *self.conns.lock().unwrap());
        for (handle, cancel) in conns {
            set_linger_zero(handle.0);
            cancel.cancel();
        }
    }

    pub fn open_connections(&self) -> usize {
        self.conns
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, c)| !c.is_cancelled())
            .count()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.cancel();
        self.reset_all();
    }
}

fn set_linger_zero(fd: std::os::fd::RawFd) {
    let linger = libc_linger {
        l_onoff: 1,
        l_linger: 0,
    };
    unsafe {
        setsockopt(
            fd,
            1,  /* SOL_SOCKET */
            13, /* SO_LINGER */
            &linger as *const _ as *const u8,
            std::mem::size_of::<libc_linger>() as u32,
        );
    }
}

#[repr(C)]
struct libc_linger {
    l_onoff: i32,
    l_linger: i32,
}

unsafe extern "C" {
    fn setsockopt(fd: i32, level: i32, name: i32, value: *const u8, len: u32) -> i32;
}

async fn accept_loop(
    mut listener: TcpListener,
    port: u16,
    upstream: SocketAddr,
    mut mode: watch::Receiver<Mode>,
    conns: Arc<Mutex<Vec<(TcpStreamHandle, CancellationToken)>>>,
    stop: CancellationToken,
) {
    loop {
        if *mode.borrow() == Mode::Refuse {
            drop(listener);
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = mode.wait_for(|m| *m != Mode::Refuse) => {}
            }
            listener = loop {
                match TcpListener::bind(("127.0.0.1", port)).await {
                    Ok(l) => break l,
                    Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            };
            continue;
        }
        let accepted = tokio::select! {
            _ = stop.cancelled() => return,
            _ = mode.changed() => continue,
            a = listener.accept() => a,
        };
        let Ok((client, _)) = accepted else { continue };
        // A connection accepted after `set(Refuse)` (before this task dropped the listener) is
        // refused too: without this, a client reconnecting within those microseconds got through.
        if matches!(*mode.borrow(), Mode::Reset | Mode::Refuse) {
            use std::os::fd::AsRawFd;
            set_linger_zero(client.as_raw_fd());
            drop(client);
            continue;
        }
        let cancel = CancellationToken::new();
        {
            use std::os::fd::AsRawFd;
            conns
                .lock()
                .unwrap()
                .push((TcpStreamHandle(client.as_raw_fd()), cancel.clone()));
        }
        tokio::spawn(handle(client, upstream, mode.clone(), cancel));
    }
}

async fn handle(
    client: TcpStream,
    upstream: SocketAddr,
    mode: watch::Receiver<Mode>,
    cancel: CancellationToken,
) {
    let _ = client.set_nodelay(true);
    if *mode.borrow() == Mode::Blackhole {
        // Accept and swallow: the peer waits forever.
        let mut client = client;
        let mut buf = [0u8; 4096];
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                r = client.read(&mut buf) => if matches!(r, Ok(0) | Err(_)) { return },
            }
        }
    }
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let _ = server.set_nodelay(true);
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    let a = tokio::spawn(pump(cr, sw, mode.clone(), cancel.clone()));
    let b = tokio::spawn(pump(sr, cw, mode, cancel.clone()));
    let _ = tokio::join!(a, b);
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mode: watch::Receiver<Mode>,
    cancel: CancellationToken,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = tokio::select! {
            _ = cancel.cancelled() => return,
            r = from.read(&mut buf) => match r { Ok(0) | Err(_) => { cancel.cancel(); return }, Ok(n) => n },
        };
        let current = *mode.borrow();
        match current {
            Mode::Blackhole => continue,
            Mode::Latency(d) => tokio::time::sleep(d).await,
            Mode::Pass | Mode::Refuse | Mode::Reset => {}
        }
        if to.write_all(&buf[..n]).await.is_err() {
            cancel.cancel();
            return;
        }
    }
}
