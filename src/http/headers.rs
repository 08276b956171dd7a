//! Security headers, set in one place for every answer the server gives (the page, the hashed
//! assets, the API, errors, health): no MIME sniffing, no framing, a strict referrer policy, no
//! powerful browser features, `Strict-Transport-Security` when the client reached us over
//! HTTPS, and `Cache-Control: no-store` on anything that did not choose its own caching (API
//! answers carry private data). The page's Content-Security-Policy is built with the page, in
//! `assets`.

use axum::{
    extract::{Request, State},
    http::{HeaderMap, HeaderValue, header},
    middleware::Next,
    response::Response,
};

use crate::{auth::served_over_https, state::AppState};

/// Browser features the UI never uses, switched off for the page and anything it embeds.
pub const PERMISSIONS_POLICY: &str = "accelerometer=(), autoplay=(), browsing-topics=(), camera=(), \
     display-capture=(), geolocation=(), gyroscope=(), magnetometer=(), microphone=(), midi=(), \
     payment=(), usb=()";
/// One year; subdomains are the operator's to decide, so they are not included.
pub const HSTS: &str = "max-age=31536000";

/// Add the security headers to an answer; `https`: the request reached us over HTTPS (see
/// [`served_over_https`]).
pub fn apply(response: &mut HeaderMap, https: bool) {
    let set = |h: &mut HeaderMap, name, value: &'static str| {
        h.entry(name).or_insert(HeaderValue::from_static(value));
    };
    set(response, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(response, header::X_FRAME_OPTIONS, "DENY");
    set(
        response,
        header::REFERRER_POLICY,
        "strict-origin-when-cross-origin",
    );
    set(
        response,
        header::HeaderName::from_static("permissions-policy"),
        PERMISSIONS_POLICY,
    );
    set(response, header::CACHE_CONTROL, "no-store");
    if https {
        set(response, header::STRICT_TRANSPORT_SECURITY, HSTS);
    }
}

/// The middleware form of [`apply`], outermost on the router.
pub async fn layer(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let https = served_over_https(req.headers(), &state.settings);
    let mut response = next.run(req).await;
    apply(response.headers_mut(), https);
    response
}
