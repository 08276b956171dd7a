//! Why a connection's task woke up, and what it polls because of it.
//!
//! A delivery (a frame queued for the socket, a request from the hub) wakes the task directly.
//! Everything else the task waits for (client frames, the writer's acks, its timer, the kill
//! switch) wakes it through [`Others`], which remembers that it did. A wake-up for a delivery
//! then writes and goes back to sleep without polling the rest: under fan-out that is almost
//! every wake-up, and each skipped poll is work off the delivery path (a read attempt costs a
//! zero-filled read buffer in tungstenite, the timer and the kill switch each take a lock).

use std::{
    future::Future,
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll, Wake, Waker},
};

use axum::extract::ws::Message as WsMessage;
use tokio::{sync::mpsc::UnboundedReceiver, time::Sleep};
use tokio_util::sync::WaitForCancellationFuture;

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

struct Flag {
    woken: AtomicBool,
    /// The task's waker, kept (not taken) by a wake-up: a task's waker does not change, so it
    /// is stored once rather than registered on every poll.
    task: Mutex<Option<Waker>>,
}

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref()
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        if let Some(w) = &*self.task.lock().unwrap_or_else(|e| e.into_inner()) {
            w.wake_by_ref();
        }
    }
}

/// The waker the non-delivery sources are polled with.
pub(super) struct Others {
    flag: Arc<Flag>,
    waker: Waker,
    /// The task waker stored in `flag`, to see without its lock that it is still the one.
    task: Option<Waker>,
}

impl Others {
    /// Starts woken: every source is polled on the first poll, which registers this waker.
    pub(super) fn new() -> Others {
        let flag = Arc::new(Flag {
            woken: AtomicBool::new(true),
            task: Mutex::new(None),
        });
        let waker = Waker::from(flag.clone());
        Others {
            flag,
            waker,
            task: None,
        }
    }

    /// The context to poll the other sources with when one of them woke the task since they
    /// were last polled. The task's waker is stored first, so a wake-up after the check is not
    /// lost.
    fn woken(&mut self, cx: &Context<'_>) -> Option<Context<'_>> {
        if !self.task.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            self.task = Some(cx.waker().clone());
            *self.flag.task.lock().unwrap_or_else(|e| e.into_inner()) = self.task.clone();
        }
        self.flag
            .woken
            .swap(false, Ordering::AcqRel)
            .then(|| Context::from_waker(&self.waker))
    }

    /// Poll every source again next time: one was ready, so another may be too (its wake-up
    /// was spent), and handling it may start a new one (the ack channel).
    fn again(&self) {
        self.flag.woken.store(true, Ordering::Release);
    }
}

/// Write what is queued; then, only when one of them woke the task, poll the other sources.
pub(super) fn poll_woke(
    cx: &mut Context<'_>,
    wire: &mut Wire,
    handle: &ConnHandle,
    others: &mut Others,
    killed: Pin<&mut WaitForCancellationFuture<'_>>,
    acks: Option<&mut UnboundedReceiver<WriteEvent>>,
    timer: Pin<&mut Sleep>,
) -> Poll<Woke> {
    if wire.poll_write(cx).is_ready() {
        return Poll::Ready(Woke::Done);
    }
    if let Some(c) = handle.next_control(cx.waker()) {
        return Poll::Ready(Woke::Control(c));
    }
    let Some(mut ocx) = others.woken(cx) else {
        return Poll::Pending;
    };
    let woke = if killed.poll(&mut ocx).is_ready() {
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
