//! The error answers of the HTTP API as reusable OpenAPI responses (`components.responses`):
//! each is the contract's error body ([`ErrorBody`]) with its status, and the headers that
//! come with it. Handlers name the ones they give in their `#[utoipa::path]`; `crate::openapi`
//! adds the ones every route of a kind gives (401 to authenticated routes, 400/413/415/422 to
//! JSON bodies, 500/503 to `/api/*`).

use utoipa::ToResponse;

use crate::contract::ErrorBody;

/// `bad_request` or `invalid_json`: the body is not JSON, not an object, nested deeper than 64
/// levels, or did not arrive in time.
#[derive(ToResponse)]
pub struct BadRequest(pub ErrorBody);

/// `unauthorized`: no credential, or a bad, expired or revoked one.
#[derive(ToResponse)]
pub struct Unauthorized(pub ErrorBody);

/// `forbidden`: a state change authenticated by the cookie from a foreign `Origin`, or an
/// action only the thread's owner may take.
#[derive(ToResponse)]
pub struct Forbidden(pub ErrorBody);

/// `not_found`: no such thread, or one the caller is not a member of (the two look the same),
/// or no such user.
#[derive(ToResponse)]
pub struct NotFound(pub ErrorBody);

/// `conflict`: the username is taken, or the `client_id` is another author's in this thread.
#[derive(ToResponse)]
pub struct Conflict(pub ErrorBody);

/// `too_large`: the request body is over 1 MiB.
#[derive(ToResponse)]
pub struct TooLarge(pub ErrorBody);

/// `unsupported_type`: the request body is not declared `application/json`.
#[derive(ToResponse)]
pub struct UnsupportedType(pub ErrorBody);

/// `validation`: fields are missing, of the wrong type or break a rule; `error.fields` says
/// why for each.
#[derive(ToResponse)]
pub struct Validation(pub ErrorBody);

/// `rate_limited`: slow down; retry after `Retry-After` seconds.
#[derive(ToResponse)]
#[response(headers(
    ("Retry-After" = u64, description = "Seconds to wait before retrying"),
    ("RateLimit-Policy" = String, description = "The limit, e.g. `20;w=1`"),
    ("RateLimit" = String, description = "`remaining=0, reset=<seconds>`"),
))]
pub struct RateLimited(pub ErrorBody);

/// `internal`: an unexpected failure (the message never leaks its cause).
#[derive(ToResponse)]
pub struct Internal(pub ErrorBody);

/// `unavailable`: the database is unreachable or the instance is overloaded; retry after
/// `Retry-After` seconds.
#[derive(ToResponse)]
#[response(headers(("Retry-After" = u64, description = "Seconds to wait before retrying")))]
pub struct Unavailable(pub ErrorBody);
