//! Lingering drain of request bodies that were answered before they were read.
//!
//! A request can be refused before its body is read: 413 for an announced oversize body, 401
//! without a token, 415 for a non-JSON type, 429 over a limit. hyper answers, and when the
//! handler has dropped the body unread it stops reading and closes the connection; the client,
//! still sending, then gets a reset, and with it its operating system may throw away the answer
//! it had not read yet (a browser shows "network error" instead of "file too large"). Here the
//! answer goes out at once and the rest of the body is read and discarded in the background, as
//! nginx's lingering close does, bounded in bytes and time: a body that ends within the bounds
//! leaves the connection usable for the next request; a longer one gets the connection closed,
//! after the answer, and the answer says so (`Connection: close`) when the announced length
//! already goes past the bound.

use std::{
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use axum::http::{HeaderValue, Request, Response, header};
use hyper::body::{Body, Frame, Incoming, SizeHint};

/// How much of an unread body is drained after an early answer.
#[derive(Debug, Clone, Copy)]
pub struct DrainBounds {
    pub max_bytes: u64,
    pub max_time: Duration,
}

impl DrainBounds {
    pub fn new(settings: &crate::settings::ServerSettings) -> Self {
        Self {
            max_bytes: settings.early_answer_drain_bytes as u64,
            max_time: Duration::from_millis(settings.early_answer_drain_ms),
        }
    }

    /// Whether a request's body will be drained if it is answered early: HTTP/1 only (HTTP/2
    /// ends a stream with `RST_STREAM(NO_ERROR)` and keeps the connection), and never after an
    /// `Expect: 100-continue` (the client has not sent the body; reading it would ask for it).
    pub fn applies_to<B>(&self, req: &Request<B>) -> bool {
        req.version() < axum::http::Version::HTTP_2
            && !req
                .headers()
                .get(header::EXPECT)
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"))
    }

    /// The request as the router takes it, with its announced length. When `linger`, its body
    /// drains itself if it is dropped unread.
    pub fn wrap(
        &self,
        req: Request<Incoming>,
        linger: bool,
    ) -> (Request<axum::body::Body>, Option<u64>) {
        let announced = announced_length(&req);
        let bounds = *self;
        let req = if linger {
            req.map(|body| axum::body::Body::new(Lingering::new(body, bounds)))
        } else {
            req.map(axum::body::Body::new)
        };
        (req, announced)
    }

    /// Mark an answer `Connection: close` when the request announced more body than will be
    /// drained (no route reads more than 1 MiB, and one that refuses an announced oversize body
    /// reads none of it), so the client knows not to reuse the connection.
    pub fn mark_close_if_undrainable<B>(&self, announced: Option<u64>, response: &mut Response<B>) {
        if announced.is_some_and(|n| n > self.max_bytes) {
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
    }
}

/// The Content-Length a request announced.
fn announced_length<B>(req: &Request<B>) -> Option<u64> {
    req.headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

/// A request body that, when dropped unread, drains what is left in the background.
pub struct Lingering {
    body: Option<Incoming>,
    ended: bool,
    bounds: DrainBounds,
}

impl Lingering {
    pub fn new(body: Incoming, bounds: DrainBounds) -> Self {
        Self {
            body: Some(body),
            ended: false,
            bounds,
        }
    }
}

impl Body for Lingering {
    type Data = bytes::Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let Some(body) = self.body.as_mut() else {
            return Poll::Ready(None);
        };
        let polled = Pin::new(body).poll_frame(cx);
        if matches!(polled, Poll::Ready(None) | Poll::Ready(Some(Err(_)))) {
            self.ended = true;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.ended || self.body.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.body
            .as_ref()
            .map(Body::size_hint)
            .unwrap_or_else(|| SizeHint::with_exact(0))
    }
}

impl Drop for Lingering {
    fn drop(&mut self) {
        if self.ended {
            return;
        }
        if let Some(body) = self.body.take() {
            drain_in_background(body, self.bounds);
        }
    }
}

/// Read and discard what is left of `body`, within the bounds, on a task of its own. Dropping it
/// at the end (whole or not) tells hyper what to do with the connection: keep it when the body
/// ended, close it otherwise.
pub fn drain_in_background(body: Incoming, bounds: DrainBounds) {
    if body.is_end_stream() {
        return;
    }
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    runtime.spawn(async move {
        let outcome = tokio::time::timeout(bounds.max_time, drain(body, bounds.max_bytes)).await;
        match outcome {
            Ok(Ok(bytes)) => tracing::debug!(bytes, "early answer: request body drained"),
            Ok(Err(bytes)) => {
                tracing::debug!(bytes, "early answer: body over the drain bound, closing")
            }
            Err(_) => {
                tracing::debug!("early answer: body still coming after the drain time, closing")
            }
        }
    });
}

/// `Ok(bytes)` when the body ended within `max_bytes`, `Err(bytes)` when it did not (or broke).
async fn drain(mut body: Incoming, max_bytes: u64) -> Result<u64, u64> {
    let mut read = 0u64;
    loop {
        match std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
            None => return Ok(read),
            Some(Err(_)) => return Err(read),
            Some(Ok(frame)) => {
                read += frame.data_ref().map_or(0, |d| d.len() as u64);
                if read > max_bytes {
                    return Err(read);
                }
            }
        }
    }
}
