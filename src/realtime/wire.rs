//! The socket side of one WebSocket connection: what is queued for it goes out in coalesced
//! writes (one flush for many frames), and the connection's task reads client frames and hub
//! requests through it. It remembers how the socket finished (a close frame out, or a failed
//! write), which decides the connection's outcome.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use axum::extract::ws::{CloseFrame, Message as WsMessage, WebSocket};
use futures_util::{Sink, Stream};

use super::{
    hub::{ConnHandle, Outbound, Taken},
    outcome::Ending,
};

pub(super) fn close_message(code: u16, reason: &'static str) -> WsMessage {
    WsMessage::Close(Some(CloseFrame {
        code,
        reason: reason.into(),
    }))
}

/// Frames taken from the queue per lock.
const TAKE: usize = 16;

/// The socket and its write state, owned by the connection's task.
pub(super) struct Wire {
    pub(super) socket: WebSocket,
    handle: Arc<ConnHandle>,
    frames_out: Arc<crate::metrics::Counter>,
    /// Frames were handed to the socket since its last flush.
    unflushed: bool,
    /// A close frame was handed to the socket, or the socket failed: nothing more goes out.
    finished: bool,
    /// The close frame handed to the socket, if one was.
    closed_with: Option<(u16, &'static str)>,
    /// A write or flush failed.
    failed: bool,
}

impl Wire {
    pub(super) fn new(
        socket: WebSocket,
        handle: Arc<ConnHandle>,
        frames_out: Arc<crate::metrics::Counter>,
    ) -> Wire {
        Wire {
            socket,
            handle,
            frames_out,
            unflushed: false,
            finished: false,
            closed_with: None,
            failed: false,
        }
    }

    /// How the connection ended when the socket finished first ([`Woke::Done`](super::wakes::Woke::Done)): a failed write is
    /// an error; otherwise a close frame queued by someone else (draining, a revoked session)
    /// went out.
    pub(super) fn ending(&self) -> Ending {
        match self.closed_with {
            _ if self.failed => Ending::error(None, "write failed"),
            Some((code, reason)) => Ending::server_close(code, reason),
            None => Ending::closed(None, "socket finished"),
        }
    }

    /// Hand everything queued to the socket and flush once (one write for many frames);
    /// `Ready` once the socket is finished (close frame written, or failed).
    pub(super) fn poll_write(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        // Taken a few at a time, under one lock each time: a wake-up for one frame locks the
        // queue once. `taken[next..end]` are taken and not yet handed to the socket.
        let mut taken: [Option<Outbound>; TAKE] = Default::default();
        let (mut next, mut end, mut drained) = (0, 0, false);
        let mut text = 0;
        while !self.finished {
            match Pin::new(&mut self.socket).poll_ready(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(_)) => return self.fail(),
                Poll::Pending => {
                    // Woken when the socket drains; what was taken goes back, in order.
                    if next < end {
                        self.handle
                            .put_back(taken[next..end].iter_mut().filter_map(Option::take));
                    }
                    break;
                }
            }
            if next == end {
                if drained {
                    break; // woken by the next send
                }
                Taken {
                    frames: end,
                    drained,
                } = self.handle.take_outbound(cx.waker(), &mut taken);
                next = 0;
                if end == 0 {
                    break;
                }
            }
            let Some(m) = taken[next].take() else { break };
            next += 1;
            let msg = match m {
                Outbound::Frame(f) => {
                    text += 1;
                    WsMessage::Text(f)
                }
                Outbound::Ping => WsMessage::Ping(Default::default()),
                Outbound::Close(code, reason) => {
                    self.finished = true;
                    self.closed_with = Some((code, reason));
                    close_message(code, reason)
                }
            };
            if Pin::new(&mut self.socket).start_send(msg).is_err() {
                return self.fail();
            }
            self.unflushed = true;
        }
        // Counted once per wake-up, and only when frames went out: the counter is shared by
        // every connection, so a wake-up for anything else leaves its cache line alone.
        if text > 0 {
            self.frames_out.add(text);
        }
        if self.unflushed {
            match Pin::new(&mut self.socket).poll_flush(cx) {
                Poll::Ready(Ok(())) => self.unflushed = false,
                Poll::Ready(Err(_)) => return self.fail(),
                Poll::Pending => return Poll::Pending,
            }
        }
        if self.finished {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    fn fail(&mut self) -> Poll<()> {
        self.failed = true;
        self.finished = true;
        self.unflushed = false;
        Poll::Ready(())
    }

    /// The next client frame (`None`: the stream ended).
    pub(super) fn poll_read(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<WsMessage, axum::Error>>> {
        Pin::new(&mut self.socket).poll_next(cx)
    }

    /// Until everything queued is written (or the socket is finished).
    pub(super) async fn drain(&mut self) {
        std::future::poll_fn(|cx| {
            let done = self.poll_write(cx).is_ready();
            if done || (!self.unflushed && self.handle.queue_is_empty()) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await
    }

    /// Run `op` while the queue keeps flowing out (reads wait; deliveries do not).
    pub(super) async fn pumping<T>(&mut self, op: impl Future<Output = T>) -> T {
        let mut op = std::pin::pin!(op);
        std::future::poll_fn(|cx| {
            if let Poll::Ready(v) = op.as_mut().poll(cx) {
                return Poll::Ready(v);
            }
            let _ = self.poll_write(cx);
            Poll::Pending
        })
        .await
    }
}
