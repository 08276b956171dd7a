//! One connection's side of the hub: its outgoing queue ([`ConnHandle`]), filled by whoever
//! sends to it and drained by the connection's one task, and the handle used as the waker of
//! the task's other sources (`realtime::wakes`).

use std::{
    collections::VecDeque,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    task::{Wake, Waker},
};

use tokio_util::sync::CancellationToken;

use super::super::protocol::Frame;
use crate::metrics::Metrics;

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
/// connection itself), drained by the connection's one task. A plain locked queue plus the
/// task's waker: no channel blocks are allocated for an idle socket, and a send is a push and
/// at most one wake-up.
#[derive(Default)]
struct Outbox {
    frames: VecDeque<Outbound>,
    control: Vec<Control>,
    /// The task's waker while it waits for a frame or a control: taken (and consumed) by the
    /// change that wakes it, so a delivery's wake-up costs no reference count of its own. The
    /// same task's waker is also kept in `task`, which a wake-up does not take.
    waker: Option<Waker>,
    /// The task's waker for everything else it waits for (kept, not taken, by a wake-up):
    /// see [`ConnHandle`]'s `Wake`.
    task: Option<Waker>,
    /// A close frame is queued (or the connection is gone): nothing more is accepted.
    closed: bool,
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

/// What [`ConnHandle::take_outbound`] took.
pub(crate) struct Taken {
    pub frames: usize,
    pub drained: bool,
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
        }
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

    /// Queue `m` unless a close is already queued; `Err(true)` when the queue is full.
    fn push(&self, m: Outbound) -> Result<(), bool> {
        self.notify(|o| {
            if o.closed {
                return Err(false);
            }
            if o.frames.len() >= self.capacity {
                return Err(true);
            }
            o.closed = matches!(m, Outbound::Close(..));
            o.frames.push_back(m);
            Ok(())
        })
    }

    /// Queue a frame; a full queue means a slow consumer, which is disconnected.
    pub fn send(&self, frame: Frame) -> bool {
        match self.push(Outbound::Frame(frame)) {
            Ok(()) => true,
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
    pub fn close(&self, code: u16, reason: &'static str) {
        if self.push(Outbound::Close(code, reason)) == Err(true) {
            self.kill();
        }
    }

    /// Queue a WebSocket ping (liveness of the peer).
    pub fn ping(&self) -> bool {
        self.push(Outbound::Ping).is_ok()
    }

    /// Ask the connection's task to fill a delivery gap.
    pub(super) fn control(&self, c: Control) {
        let _ = self.notify(|o| {
            o.control.push(c);
            Ok(())
        });
    }

    /// The next queued frame, or `None` after registering `waker` to be woken by the next one.
    #[cfg(test)]
    pub(crate) fn next_outbound(&self, waker: &Waker) -> Option<Outbound> {
        self.take(waker, |o| o.frames.pop_front())
    }

    /// Move up to `out.len()` queued frames, in order, into `out` under one lock; how many. When
    /// that empties the queue, `waker` is registered for the next one (the caller need not ask
    /// again to learn that nothing is left), and `drained` says so.
    pub(crate) fn take_outbound(&self, waker: &Waker, out: &mut [Option<Outbound>]) -> Taken {
        let mut o = self.outbox();
        let mut frames = 0;
        for slot in out.iter_mut() {
            match o.frames.pop_front() {
                Some(m) => *slot = Some(m),
                None => break,
            }
            frames += 1;
        }
        let drained = o.frames.is_empty();
        if drained {
            o.register(waker);
        }
        Taken { frames, drained }
    }

    /// Put frames taken by [`take_outbound`](Self::take_outbound) back at the front of the queue,
    /// in order (the socket could not take them yet). They were accepted once, so neither a close
    /// queued since nor the capacity refuses them.
    pub(crate) fn put_back(&self, frames: impl DoubleEndedIterator<Item = Outbound>) {
        let mut o = self.outbox();
        for m in frames.rev() {
            o.frames.push_front(m);
        }
    }

    /// The next hub request, or `None` after registering `waker`.
    pub(crate) fn next_control(&self, waker: &Waker) -> Option<Control> {
        self.take(waker, |o| o.control.pop())
    }

    /// Nothing is waiting to be written.
    pub(crate) fn queue_is_empty(&self) -> bool {
        self.outbox().frames.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    /// A waker that counts its wake-ups.
    #[derive(Default)]
    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn handle(capacity: usize) -> ConnHandle {
        let metrics = Arc::new(Metrics::default());
        let kill = CancellationToken::new();
        ConnHandle::new(1, "u".into(), "s".into(), capacity, kill, metrics)
    }

    fn text(m: &Outbound) -> String {
        match m {
            Outbound::Frame(f) => f.as_str().to_string(),
            Outbound::Ping => "ping".into(),
            Outbound::Close(code, _) => format!("close {code}"),
        }
    }

    fn take_all(h: &ConnHandle, waker: &Waker) -> Vec<String> {
        let mut all = Vec::new();
        loop {
            let mut out: [Option<Outbound>; 4] = Default::default();
            let taken = h.take_outbound(waker, &mut out);
            all.extend(
                out[..taken.frames]
                    .iter()
                    .map(|m| text(m.as_ref().unwrap())),
            );
            if taken.drained {
                return all;
            }
        }
    }

    /// Frames the socket could not take yet go back in front, in order, even when the queue
    /// is full or closed meanwhile; a batch that empties the queue registers for the next frame.
    #[test]
    fn put_back_keeps_order_past_capacity_and_close() {
        let count = Arc::new(Count::default());
        let waker = Waker::from(count.clone());
        let h = handle(6);
        for i in 0..6 {
            assert!(h.send(Frame::from(format!("f{i}"))));
        }
        let mut out: [Option<Outbound>; 4] = Default::default();
        let taken = h.take_outbound(&waker, &mut out);
        assert_eq!((taken.frames, taken.drained), (4, false));
        // The socket took f0 only; f1..f3 go back. Meanwhile the queue fills and a close comes.
        assert!(h.send(Frame::from("f6".to_string())));
        assert!(h.send(Frame::from("f7".to_string())));
        h.close(1000, "bye");
        h.put_back(out[1..4].iter_mut().filter_map(Option::take));
        assert!(!h.is_killed(), "putting back is not an overflow");
        assert!(!h.send(Frame::from("late".to_string())), "closed: refused");
        let rest = take_all(&h, &waker);
        assert_eq!(
            rest,
            ["f1", "f2", "f3", "f4", "f5", "f6", "f7", "close 1000"]
        );
        // Drained: the next frame wakes the task once.
        assert_eq!(count.0.load(Ordering::SeqCst), 0);
        let h2 = handle(4);
        assert!(take_all(&h2, &waker).is_empty());
        assert!(h2.send(Frame::from("x".to_string())));
        assert!(h2.send(Frame::from("y".to_string())));
        assert_eq!(
            count.0.load(Ordering::SeqCst),
            1,
            "one wake-up until taken again"
        );
    }
}
