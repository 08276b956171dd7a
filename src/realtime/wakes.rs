//! Why a connection's task woke up, and what it polls because of it.
//!
//! Deliveries do not wake the task at all: the sweeper writes them (`realtime::sweep`). It wakes
//! the task only for what the task writes itself (bytes a sweep parked, the close frame a sweep
//! reached), and a request from the hub wakes it directly. Everything else the task waits for
//! (client frames, the writer's acks, its one timer, the kill switch) wakes it through the
//! connection's handle used as a waker ([`Others`]), which remembers that it did: a wake-up for
//! the writing side polls none of them (a read attempt costs a zero-filled read buffer in
//! tungstenite, a timer poll its registration).

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, Waker},
};

use axum::extract::ws::Message as WsMessage;
use tokio::{sync::mpsc::UnboundedReceiver, time::Sleep};

use super::{
    hub::{ConnHandle, Control},
    wire::Wire,
};
use crate::db::writer::WriteEvent;

/// What the connection's task has to handle next.
pub(super) enum Woke {
    /// The socket is finished (close frame written, or a write failed).
    Done,
    Control(Control),
    Read(Option<Result<WsMessage, axum::Error>>),
    Ack(WriteEvent),
    /// The queue overflowed: the client cannot keep up.
    Killed,
    Timer,
}

/// The waker the non-delivery sources are polled with: the connection's handle (see its
/// `Wake`), which remembers that it was woken.
pub(super) struct Others {
    handle: Arc<ConnHandle>,
    waker: Waker,
    /// The task waker the handle keeps, to see without its lock that it is still the one.
    task: Option<Waker>,
}

impl Others {
    pub(super) fn new(handle: Arc<ConnHandle>) -> Others {
        let waker = Waker::from(handle.clone());
        Others {
            handle,
            waker,
            task: None,
        }
    }

    /// Whether to poll the other sources: one of them woke the task since they
    /// were last polled (always on the first poll). The task's waker is stored first, so a
    /// wake-up after the check is not lost; a task's waker does not change, so that is once.
    fn woken(&mut self, cx: &Context<'_>) -> bool {
        if !self.task.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            self.handle.set_task(cx.waker());
            self.task = Some(cx.waker().clone());
        }
        self.handle.take_others_woken()
    }

    /// Poll every source again next time: one was ready, so another may be too (its wake-up
    /// was spent), and handling it may start a new one (the ack channel).
    fn again(&self) {
        self.handle.others_again();
    }
}

/// Write what is queued; then, only when one of them woke the task, poll the other sources.
pub(super) fn poll_woke(
    cx: &mut Context<'_>,
    wire: &mut Wire,
    others: &mut Others,
    acks: Option<&mut UnboundedReceiver<WriteEvent>>,
    timer: Pin<&mut Sleep>,
) -> Poll<Woke> {
    if wire.poll_write(cx).is_ready() {
        return Poll::Ready(Woke::Done);
    }
    if let Some(c) = others.handle.next_control(cx.waker()) {
        return Poll::Ready(Woke::Control(c));
    }
    if !others.woken(cx) {
        return Poll::Pending;
    }
    let mut ocx = Context::from_waker(&others.waker);
    let woke = if others.handle.is_killed() {
        Woke::Killed
    } else if let Poll::Ready(read) = wire.poll_read(&mut ocx) {
        Woke::Read(read)
    } else if let Some(Poll::Ready(Some(ack))) = acks.map(|rx| rx.poll_recv(&mut ocx)) {
        Woke::Ack(ack)
    } else if timer.poll(&mut ocx).is_ready() {
        Woke::Timer
    } else {
        return Poll::Pending;
    };
    others.again();
    Poll::Ready(woke)
}
