//! One connection's side of the hub: its outgoing queue ([`ConnHandle`]), filled by whoever
//! sends to it and written by its shard's sweeper (`realtime::sweep`), and the handle used as
//! the waker of the connection task's sources (`realtime::wakes`).

use std::{
    collections::VecDeque,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    task::{Wake, Waker},
};

use tokio_util::sync::CancellationToken;

use super::super::{
    protocol::Frame,
    sweep::{Listing, Shard},
};
use crate::{
    http::socket::{self, Socket, Written},
    metrics::{Counter, Metrics},
};

/// Where a connection's frames are written: its socket, by its shard's sweeper.
pub struct Writer {
    pub socket: Arc<Socket>,
    pub shard: Arc<Shard>,
    pub frames_out: Arc<Counter>,
}

/// What a connection's task writes to its socket.
#[derive(Debug)]
pub enum Outbound {
    Frame(Frame),
    Ping,
    Close(u16, &'static str),
}

/// Requests from the hub to a connection's task.
#[derive(Debug)]
pub enum Control {
    /// Read messages `from..=to` of `thread` from the database and hand them to [`Hub::fill`].
    FillGap { thread: String, from: i64, to: i64 },
}

/// A connection's outgoing queue: filled by whoever sends to it (the hub, streams, the
/// connection itself), written by its sweeper. A plain locked queue: no channel blocks are
/// allocated for an idle socket, and a send is a push and, when the connection was clean, a
/// place on its shard's dirty list.
#[derive(Default)]
struct Outbox {
    frames: VecDeque<Outbound>,
    control: Vec<Control>,
    /// The task's waker while it waits for a control: taken (and consumed) by the change that
    /// wakes it. The same task's waker is also kept in `task`, which a wake-up does not take.
    waker: Option<Waker>,
    /// The task's waker for everything else it waits for (kept, not taken, by a wake-up):
    /// see [`ConnHandle`]'s `Wake`.
    task: Option<Waker>,
    /// The task's waker while it waits for the queue to be written out (the end of a session).
    drained: Option<Waker>,
    /// A close frame is queued (or the connection is gone): nothing more is accepted.
    closed: bool,
    /// On the shard's dirty list: the sweeper will come.
    queued: bool,
    /// The sweep reached the close frame: the task sends it.
    closing: Option<(u16, &'static str)>,
    /// A sweeper is writing what it took.
    sweeping: bool,
}

impl Outbox {
    /// Have the next change wake `waker` (kept as it is when it already wakes the same task).
    fn register(&mut self, waker: &Waker) {
        match &self.waker {
            Some(w) if w.will_wake(waker) => {}
            _ => self.waker = Some(waker.clone()),
        }
    }
}

/// The hub's handle on one WebSocket connection.
pub struct ConnHandle {
    pub id: u64,
    pub user_id: String,
    pub session_id: String,
    outbox: Mutex<Outbox>,
    capacity: usize,
    kill: CancellationToken,
    metrics: Arc<Metrics>,
    /// Something other than a delivery woke the task since it last looked (`realtime::wakes`).
    others_woken: AtomicBool,
    /// A sweep found the socket parked and left the queue alone: the task lists it again once
    /// the parked bytes are written ([`resume`](Self::resume)).
    skipped: AtomicBool,
    writer: Writer,
}

/// The waker the connection's task polls everything but its queue with (client frames, acks,
/// its timer, the kill switch): a wake-up through it is remembered, so a wake-up for a
/// delivery alone polls none of them (`realtime::wakes`).
impl Wake for ConnHandle {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref()
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.wake_others();
    }
}

impl ConnHandle {
    pub fn new(
        id: u64,
        user_id: String,
        session_id: String,
        capacity: usize,
        kill: CancellationToken,
        metrics: Arc<Metrics>,
        writer: Writer,
    ) -> Self {
        Self {
            id,
            user_id,
            session_id,
            outbox: Mutex::default(),
            capacity: capacity.max(1),
            kill,
            metrics,
            others_woken: AtomicBool::new(true),
            skipped: AtomicBool::new(false),
            writer,
        }
    }

    pub(crate) fn writer(&self) -> &Writer {
        &self.writer
    }

    fn wake_others(&self) {
        self.others_woken.store(true, Ordering::Release);
        if let Some(w) = &self.outbox().task {
            w.wake_by_ref();
        }
    }

    /// Disconnect a client that cannot keep up: the token says so, and the task hears it
    /// among its other sources.
    fn kill(&self) {
        self.kill.cancel();
        self.wake_others();
    }

    /// The queue overflowed (or the connection is over).
    pub(crate) fn is_killed(&self) -> bool {
        self.kill.is_cancelled()
    }

    /// Keep `task` as the waker that a wake-up through this handle (as a [`Waker`]) wakes.
    pub(crate) fn set_task(&self, task: &Waker) {
        self.outbox().task = Some(task.clone());
    }

    /// Whether something woke the task through this handle since the last call (the first
    /// call says yes).
    pub(crate) fn take_others_woken(&self) -> bool {
        self.others_woken.swap(false, Ordering::AcqRel)
    }

    /// Have the next [`take_others_woken`](Self::take_others_woken) say yes.
    pub(crate) fn others_again(&self) {
        self.others_woken.store(true, Ordering::Release);
    }

    fn outbox(&self) -> std::sync::MutexGuard<'_, Outbox> {
        self.outbox.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Change the outbox and, if it changed (`Ok`), wake the connection's task if it waits.
    fn notify(&self, change: impl FnOnce(&mut Outbox) -> Result<(), bool>) -> Result<(), bool> {
        let waker = {
            let mut o = self.outbox();
            change(&mut o)?;
            o.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
        Ok(())
    }

    /// Take from the outbox, or register `waker` for the next change when there is nothing.
    fn take<T>(&self, waker: &Waker, take: impl FnOnce(&mut Outbox) -> Option<T>) -> Option<T> {
        let mut o = self.outbox();
        let next = take(&mut o);
        if next.is_none() {
            o.register(waker);
        }
        next
    }

    /// Queue `m` unless a close is already queued; `Ok(true)` when the connection was clean and
    /// must now be listed on its shard (see [`Listing`]); `Err(true)` when the queue is full.
    fn push(&self, m: Outbound) -> Result<bool, bool> {
        let mut o = self.outbox();
        if o.closed {
            return Err(false);
        }
        if o.frames.len() >= self.capacity {
            return Err(true);
        }
        o.closed = matches!(m, Outbound::Close(..));
        o.frames.push_back(m);
        Ok(!std::mem::replace(&mut o.queued, true))
    }

    /// Back on the dirty list if a sweep skipped it (parked bytes) and frames wait: call once
    /// the parked bytes are written. Cheap when no sweep skipped it: one atomic load.
    pub(crate) fn resume(self: &Arc<Self>) {
        if !self.skipped.swap(false, Ordering::SeqCst) {
            return;
        }
        let list = {
            let mut o = self.outbox();
            !o.frames.is_empty() && !std::mem::replace(&mut o.queued, true)
        };
        if list {
            self.writer.shard.push(self.clone());
        }
    }

    /// Write everything queued in one write (the sweeper's part), up to a close frame, which
    /// is left to the task once what precedes it is written. A connection with parked bytes is
    /// skipped: its task resumes it once they are written.
    pub(crate) fn sweep(&self, buf: &mut Vec<u8>) {
        let w = &self.writer;
        let mut o = self.outbox();
        o.queued = false;
        if w.socket.is_parked() {
            // Said before looking again: either the task, writing the parked bytes, sees this
            // and resumes the queue, or this sweep sees them written and goes on.
            self.skipped.store(true, Ordering::SeqCst);
            if w.socket.is_parked() {
                return;
            }
        }
        buf.clear();
        let (mut text, mut close) = (0, None);
        while let Some(m) = o.frames.pop_front() {
            match m {
                Outbound::Frame(f) => {
                    socket::encode(buf, socket::TEXT, f.as_str().as_bytes());
                    text += 1;
                }
                Outbound::Ping => socket::encode(buf, socket::PING, &[]),
                Outbound::Close(code, reason) => {
                    close = Some((code, reason));
                    break;
                }
            }
        }
        if buf.is_empty() && close.is_none() {
            return;
        }
        o.sweeping = true;
        drop(o);
        let written = if buf.is_empty() {
            Written::All
        } else {
            w.socket.write_swept(buf)
        };
        // Counted once per sweep: the counter is shared by every connection.
        if text > 0 {
            w.frames_out.add(text);
        }
        let (drained, task) = {
            let mut o = self.outbox();
            o.sweeping = false;
            if close.is_some() {
                o.closing = close;
            }
            let wake = close.is_some() || written != Written::All;
            (o.drained.take(), wake.then(|| o.task.clone()).flatten())
        };
        if let Some(t) = task {
            t.wake();
        }
        if let Some(d) = drained {
            d.wake();
        }
    }

    /// The close frame the sweep reached, for the task to send (it stays here until the task
    /// [takes](Self::take_closing) it, so the queue is not written out before it is sent).
    pub(crate) fn closing(&self) -> Option<(u16, &'static str)> {
        self.outbox().closing
    }

    /// The close frame is handed to the WebSocket library.
    pub(crate) fn take_closing(&self) {
        self.outbox().closing = None;
    }

    /// Whether everything queued is written (or handed to the task); if not, `waker` is woken
    /// after the next sweep.
    pub(crate) fn written_out(&self, waker: &Waker) -> bool {
        let mut o = self.outbox();
        let done = o.frames.is_empty() && o.closing.is_none() && !o.sweeping;
        if !done {
            o.drained = Some(waker.clone());
        }
        done
    }

    /// Queue a frame; a full queue means a slow consumer, which is disconnected.
    pub fn send(self: &Arc<Self>, frame: Frame) -> bool {
        self.send_then(frame, |conn| conn.list(true))
    }

    /// [`send`](Self::send), leaving the shard listing to `listing` (a fan-out lists every
    /// connection it made dirty at once, one lock per shard).
    pub fn send_listed(self: &Arc<Self>, frame: Frame, listing: &mut Listing) -> bool {
        self.send_then(frame, |conn| listing.add(conn))
    }

    fn send_then(self: &Arc<Self>, frame: Frame, list: impl FnOnce(&Arc<Self>)) -> bool {
        match self.push(Outbound::Frame(frame)) {
            Ok(listed) => {
                if listed {
                    list(self);
                }
                true
            }
            Err(true) => {
                if !self.kill.is_cancelled() {
                    self.metrics.slow_consumer_disconnects.inc();
                    tracing::info!(conn = self.id, "slow consumer disconnected");
                    self.kill();
                }
                false
            }
            Err(false) => false,
        }
    }

    /// Close the connection with a WebSocket close code (after what is already queued). Already
    /// closing (a second close, say a revocation seen twice): the first close frame stands.
    pub fn close(self: &Arc<Self>, code: u16, reason: &'static str) {
        match self.push(Outbound::Close(code, reason)) {
            Ok(list) => self.list(list),
            Err(true) => self.kill(),
            Err(false) => {}
        }
    }

    /// Queue a WebSocket ping (liveness of the peer).
    pub fn ping(self: &Arc<Self>) -> bool {
        self.push(Outbound::Ping)
            .map(|list| self.list(list))
            .is_ok()
    }

    fn list(self: &Arc<Self>, list: bool) {
        if list {
            self.writer.shard.push(self.clone());
        }
    }

    /// Ask the connection's task to fill a delivery gap.
    pub(super) fn control(&self, c: Control) {
        let _ = self.notify(|o| {
            o.control.push(c);
            Ok(())
        });
    }

    /// The next queued frame, or `None` after registering `waker` to be woken by the next one
    /// (a test reading the queue instead of a sweeper).
    #[cfg(test)]
    pub(crate) fn next_outbound(&self, waker: &Waker) -> Option<Outbound> {
        self.take(waker, |o| o.frames.pop_front())
    }

    /// The next hub request, or `None` after registering `waker`.
    pub(crate) fn next_control(&self, waker: &Waker) -> Option<Control> {
        self.take(waker, |o| o.control.pop())
    }
}

/// A writer onto a real loopback socket whose peer is `peer` (call within a Tokio runtime), on
/// a shard of its own that no sweeper sweeps: a test sweeps it, or reads the queue, itself.
#[cfg(test)]
pub(crate) fn test_writer() -> (Writer, std::net::TcpStream) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let peer = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, _) = listener.accept().unwrap();
    server.set_nonblocking(true).unwrap();
    let socket = Arc::new(Socket::new(
        tokio::net::TcpStream::from_std(server).unwrap(),
    ));
    socket.to_frames();
    let writer = Writer {
        socket,
        shard: Arc::new(Shard::default()),
        frames_out: Arc::new(Counter::default()),
    };
    (writer, peer)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::{io::AsyncReadExt, net::TcpStream};

    use super::*;

    async fn pair() -> (Arc<ConnHandle>, TcpStream) {
        let (writer, peer) = test_writer();
        peer.set_nonblocking(true).unwrap();
        // Until the reactor has seen the new socket writable, a `try_write` would park.
        writer.socket.stream.writable().await.unwrap();
        let metrics = Arc::new(Metrics::default());
        let kill = CancellationToken::new();
        let h = ConnHandle::new(1, "u".into(), "s".into(), 4, kill, metrics, writer);
        (Arc::new(h), TcpStream::from_std(peer).unwrap())
    }

    fn expect_frames(frames: &[&str], ping: bool) -> Vec<u8> {
        let mut want = Vec::new();
        for f in frames {
            socket::encode(&mut want, socket::TEXT, f.as_bytes());
        }
        if ping {
            socket::encode(&mut want, socket::PING, &[]);
        }
        want
    }

    /// A send puts the connection on its shard's list once; one sweep writes the whole queue as
    /// WebSocket frames in order and stops at the close frame, which goes to the task only
    /// after what precedes it is written.
    #[tokio::test]
    async fn one_sweep_writes_the_queue_and_hands_the_close_to_the_task() {
        let (h, mut client) = pair().await;
        let shard = h.writer().shard.clone();
        assert!(h.send(Frame::from("a".to_string())));
        assert!(h.send(Frame::from("b".to_string())));
        assert!(h.ping());
        let dirty = shard.take_dirty();
        assert_eq!(dirty.len(), 1, "listed once however many frames wait");
        h.close(1000, "bye");
        assert!(shard.take_dirty().is_empty(), "still listed: not again");
        assert!(!h.send(Frame::from("late".to_string())), "closed: refused");
        assert!(!h.written_out(Waker::noop()));
        let mut buf = Vec::new();
        dirty[0].sweep(&mut buf);
        assert_eq!(h.closing(), Some((1000, "bye")));
        assert!(
            !h.written_out(Waker::noop()),
            "not out until the task sends the close"
        );
        h.take_closing();
        assert!(h.written_out(Waker::noop()));
        let want = expect_frames(&["a", "b"], true);
        let mut got = vec![0u8; want.len()];
        tokio::time::timeout(Duration::from_secs(5), client.read_exact(&mut got))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got, want);
        assert_eq!(h.writer().frames_out.get(), 2);
    }

    /// While bytes are parked the sweeper leaves the queue alone (so a slow reader fills it and
    /// is disconnected); once they are written, `resume` lists the connection again.
    #[tokio::test]
    async fn a_parked_socket_is_skipped_until_resumed_and_overflow_kills() {
        let (h, mut client) = pair().await;
        let w = h.writer();
        let shard = w.shard.clone();
        socket2::SockRef::from(&w.socket.stream)
            .set_send_buffer_size(4096)
            .unwrap();
        socket2::SockRef::from(&client)
            .set_recv_buffer_size(4096)
            .unwrap();
        let big = "x".repeat(256 * 1024);
        let mut buf = Vec::new();
        assert!(h.send(Frame::from(big.clone())));
        shard.take_dirty()[0].sweep(&mut buf);
        assert!(w.socket.is_parked(), "256 KiB into small buffers: parked");
        for i in 0..4 {
            assert!(h.send(Frame::from(format!("f{i}"))));
        }
        let listed = shard.take_dirty();
        listed[0].sweep(&mut buf);
        assert!(!h.written_out(Waker::noop()), "skipped: still queued");
        assert!(!h.send(Frame::from("over".to_string())), "capacity 4: full");
        assert!(h.is_killed(), "a full queue disconnects the slow consumer");
        // The reader catches up: the parked bytes go, then the queue is listed again.
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            let _ =
                tokio::time::timeout(Duration::from_secs(5), client.read_to_end(&mut got)).await;
            got
        });
        std::future::poll_fn(|cx| w.socket.poll_flush_parked(cx))
            .await
            .unwrap();
        h.resume();
        let listed = shard.take_dirty();
        assert_eq!(listed.len(), 1);
        listed[0].sweep(&mut buf);
        assert!(h.written_out(Waker::noop()));
        w.socket.shutdown().unwrap();
        let got = reader.await.unwrap();
        let mut want = expect_frames(&[&big], false);
        want.extend(expect_frames(&["f0", "f1", "f2", "f3"], false));
        assert_eq!(got.len(), want.len());
        assert!(got == want, "every frame once, in order");
    }
}
