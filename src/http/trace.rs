//! The span and the failure line of every HTTP answer (tower-http's `TraceLayer`): one
//! `response failed` line per 5xx, which `emergence guard` counts, at `error` for a server fault
//! and at `warn` for a 503 (the instance saying "not now": starting, draining, saturated or
//! without its database), which is a designed answer that operators' error alerts should not page on.

use std::time::Duration;

use axum::{extract::Request, http::StatusCode};
use tower_http::{
    classify::ServerErrorsFailureClass,
    trace::{
        DefaultOnBodyChunk, DefaultOnEos, DefaultOnRequest, DefaultOnResponse, HttpMakeClassifier,
        TraceLayer,
    },
};
use tracing::Span;

/// The layer the router wraps every route in.
pub type Layer = TraceLayer<
    HttpMakeClassifier,
    fn(&Request) -> Span,
    DefaultOnRequest,
    DefaultOnResponse,
    DefaultOnBodyChunk,
    DefaultOnEos,
    fn(ServerErrorsFailureClass, Duration, &Span),
>;

pub fn layer() -> Layer {
    TraceLayer::new_for_http()
        .make_span_with(span as fn(&Request) -> Span)
        .on_failure(on_failure as fn(ServerErrorsFailureClass, Duration, &Span))
}

/// The request's span: its id (set by `SetRequestIdLayer` outside this layer), method and path.
fn span(req: &Request) -> Span {
    let id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    tracing::info_span!("http", request_id = %id, method = %req.method(), path = %req.uri().path())
}

/// The same line and fields as tower-http's `DefaultOnFailure` (`classification`, `latency` in
/// milliseconds), at a level that depends on what failed.
fn on_failure(class: ServerErrorsFailureClass, latency: Duration, _span: &Span) {
    let latency = format_args!("{} ms", latency.as_millis());
    match class {
        ServerErrorsFailureClass::StatusCode(StatusCode::SERVICE_UNAVAILABLE) => {
            tracing::warn!(classification = %class, %latency, "response failed");
        }
        _ => tracing::error!(classification = %class, %latency, "response failed"),
    }
}
