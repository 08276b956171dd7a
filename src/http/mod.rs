//! HTTP plumbing shared by the resource modules: JSON bodies, client addresses, the security
//! headers of every answer, the drain of bodies answered before they were read, and zero-copy
//! writes of the embedded files, and the span and failure line of every answer.

pub mod client_ip;
pub mod headers;
pub mod json;
pub mod linger;
pub mod middleware;
pub mod routes;
pub mod socket;
pub mod trace;
pub mod zerocopy;

/// The `{id}` of a path. A path that does not even decode (invalid UTF-8 after percent-decoding)
/// names nothing: 404 like any unknown id, with the contract's error body.
pub struct IdPath(pub String);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for IdPath {
    type Rejection = crate::error::ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<String>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(id)| IdPath(id))
            .map_err(|_| crate::error::ApiError::NotFound)
    }
}
