//! The socket side of one WebSocket connection, as its task sees it: deliveries are written by
//! the sweeper (`realtime::sweep`); the task reads client frames through the WebSocket library,
//! writes what a sweep parked once the socket is writable, and sends the close frame a sweep
//! reached. It remembers how the socket finished (a close frame out, or a failed write), which
//! decides the connection's outcome.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use axum::extract::ws::{CloseFrame, Message as WsMessage, WebSocket};
use futures_util::{Sink, Stream};

use super::{hub::ConnHandle, outcome::Ending};

pub(super) fn close_message(code: u16, reason: &'static str) -> WsMessage {
    WsMessage::Close(Some(CloseFrame {
        code,
        reason: reason.into(),
    }))
}

/// The socket as the connection's task sees it: the WebSocket library (reads, the close
/// frame, the closing handshake) over the shared socket the sweeper writes deliveries to.
pub(super) struct Wire {
    pub(super) socket: WebSocket,
    handle: Arc<ConnHandle>,
    /// A close frame was handed to the library, or the socket failed: nothing more goes out.
    finished: bool,
    /// The close frame handed to the library, if one was.
    closed_with: Option<(u16, &'static str)>,
    /// A write failed.
    failed: bool,
}

impl Wire {
    pub(super) fn new(socket: WebSocket, handle: Arc<ConnHandle>) -> Wire {
        Wire {
            socket,
            handle,
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

    /// The task's part of writing: the bytes a sweep parked (once the socket is writable; the
    /// sweeper then resumes the queue), and the close frame a sweep reached. `Ready` once the
    /// socket is finished (close frame handed over, or failed).
    pub(super) fn poll_write(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.failed {
            return Poll::Ready(());
        }
        let socket = &self.handle.writer().socket;
        if (socket.is_parked() || socket.failed())
            && let Poll::Ready(Err(_)) = socket.poll_flush_parked(cx)
        {
            return self.fail();
        }
        // Nothing parked (any more: this call or the library's last flush wrote it): frames a
        // sweep left alone meanwhile go back to the sweeper (one atomic load when none did).
        if !socket.is_parked() {
            self.handle.resume();
        }
        if self.finished {
            return Poll::Ready(());
        }
        let Some((code, reason)) = self.handle.closing() else {
            return Poll::Pending;
        };
        match Pin::new(&mut self.socket).poll_ready(cx) {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(_)) => return self.fail(),
            Poll::Pending => return Poll::Pending,
        }
        self.handle.take_closing();
        self.finished = true;
        self.closed_with = Some((code, reason));
        if Pin::new(&mut self.socket)
            .start_send(close_message(code, reason))
            .is_err()
        {
            return self.fail();
        }
        // Written, or parked behind what is parked (flushed by the next call).
        if let Poll::Ready(Err(_)) = Pin::new(&mut self.socket).poll_flush(cx) {
            return self.fail();
        }
        Poll::Ready(())
    }

    fn fail(&mut self) -> Poll<()> {
        self.failed = true;
        self.finished = true;
        Poll::Ready(())
    }

    /// The next client frame (`None`: the stream ended).
    pub(super) fn poll_read(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<WsMessage, axum::Error>>> {
        Pin::new(&mut self.socket).poll_next(cx)
    }

    /// Until everything queued is written, parked bytes included (or the socket failed).
    pub(super) async fn drain(&mut self) {
        std::future::poll_fn(|cx| {
            let _ = self.poll_write(cx);
            let parked = self.handle.writer().socket.is_parked();
            if self.failed || (!parked && self.handle.written_out(cx.waker())) {
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
