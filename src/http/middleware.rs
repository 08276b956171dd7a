//! The router's middleware: per-route request metrics (route template, method, status, latency)
//! and instance-wide admission (an in-flight ceiling and a request deadline, answered with 503
//! and `Retry-After`, never 429).

use std::{
    sync::atomic::{AtomicUsize, Ordering},
    time::{Duration, Instant},
};

use axum::{
    extract::{MatchedPath, Request, State},
    http::Method,
    middleware::Next,
    response::{IntoResponse, Response},
};

use crate::{error::ApiError, state::AppState};

/// Count requests by matched route (never the raw path) and time them.
pub async fn record_metrics(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| {
            if req.uri().path().starts_with("/api/") {
                "/api/*".into()
            } else {
                "static".into()
            }
        });
    let method = req.method().clone();
    let started = Instant::now();
    let response = next.run(req).await;
    let m = method_label(&method);
    state
        .metrics
        .http_requests
        .with(&[&route, m, response.status().as_str()])
        .inc();
    state
        .metrics
        .http_duration
        .with(&[&route, m])
        .observe(started.elapsed());
    response
}

fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

/// Instance-wide overload protection for API routes: past the in-flight ceiling, 503 with
/// `Retry-After` (never 429: overload is not the client's fault).
pub async fn admission(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let max = state.settings.server.max_inflight_requests;
    let inflight = InFlight::enter(&state.metrics.api_inflight);
    if inflight.count > max {
        state.metrics.overload_rejections.inc();
        return ApiError::Unavailable {
            retry_after_secs: 1,
        }
        .into_response();
    }
    let limit = Duration::from_millis(state.settings.server.request_timeout_ms);
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(response) => response,
        Err(_) => ApiError::Unavailable {
            retry_after_secs: 1,
        }
        .into_response(),
    }
}

/// Counts a request in flight until dropped (also when the client goes away mid-request).
struct InFlight<'a> {
    counter: &'a AtomicUsize,
    count: usize,
}

impl<'a> InFlight<'a> {
    fn enter(counter: &'a AtomicUsize) -> Self {
        let count = counter.fetch_add(1, Ordering::AcqRel) + 1;
        Self { counter, count }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.counter.fetch_sub(1, Ordering::AcqRel);
    }
}
