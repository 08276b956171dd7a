//! Authentication: accounts, sessions and the tokens that carry them.
//!
//! A token is verified from its signature plus an in-memory revocation set, so checking one never
//! touches the database; the set is refreshed from the database every couple of seconds (and,
//! across instances, pushed through the broker), so a logout is honoured everywhere within 5 s.

pub mod access;
pub(crate) mod account;
pub(crate) mod admin;
pub mod oidc;
pub mod password;
mod revocations;
pub(crate) mod routes;
pub mod token;

use std::sync::RwLock;

use axum::{
    extract::FromRequestParts,
    http::{HeaderMap, Method, request::Parts},
};

pub use access::{AdminUser, SessionUser, SignedIn};
pub use revocations::Revocations;

/// Every `/api/auth/*`, `/api/me*` and `/api/admin/*` route.
pub fn routes() -> axum::Router<AppState> {
    routes::routes()
        .merge(account::routes())
        .merge(admin::routes())
        .merge(oidc::routes())
}
pub use token::{Claims, SigningKey, TokenError};

use crate::{db::now_ms, error::ApiError, settings::AuthSettings, state::AppState};

/// Name of the session cookie.
pub const COOKIE: &str = "emergence_session";

/// Why a request is not authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthError {
    Missing,
    Invalid,
    Expired,
    Revoked,
    /// No signing key is known yet (first start with the database down).
    KeyUnknown,
}

/// Keys, revocations, password hashing and cookie policy.
pub struct Auth {
    key: RwLock<Option<SigningKey>>,
    pub revocations: Revocations,
    pub passwords: password::Hasher,
    pub settings: AuthSettings,
    /// Single sign-on providers (OpenID Connect).
    pub oidc: oidc::Providers,
    /// Sessions (issued while their account was pending) this instance has seen approved since.
    approved: RwLock<std::collections::HashSet<String>>,
}

impl Auth {
    /// `concurrent_hashes`: password hashes computed at once (0 = one per CPU).
    pub fn new(settings: AuthSettings, concurrent_hashes: usize) -> Self {
        let key = settings
            .signing_key
            .as_ref()
            .map(|k| SigningKey::new(k.expose().as_bytes().to_vec()));
        Self {
            key: RwLock::new(key),
            revocations: Revocations::default(),
            passwords: password::Hasher::new(concurrent_hashes),
            oidc: oidc::Providers::new(&settings),
            settings,
            approved: RwLock::default(),
        }
    }

    pub fn key(&self) -> Option<SigningKey> {
        self.key.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn has_key(&self) -> bool {
        self.key.read().unwrap_or_else(|e| e.into_inner()).is_some()
    }

    pub fn set_key(&self, key: SigningKey) {
        *self.key.write().unwrap_or_else(|e| e.into_inner()) = Some(key);
    }

    /// Whether this session (issued while its account was pending) is known to be approved.
    pub fn known_approved(&self, session_id: &str) -> bool {
        self.approved
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains(session_id)
    }

    pub fn remember_approved(&self, session_id: &str) {
        let mut set = self.approved.write().unwrap_or_else(|e| e.into_inner());
        if set.len() < 100_000 {
            set.insert(session_id.to_string());
        }
    }

    /// Verify a token: signature, expiry, revocation. No database.
    pub fn authenticate(&self, token: &str) -> Result<Claims, AuthError> {
        let key = self.key().ok_or(AuthError::KeyUnknown)?;
        let claims = key.verify(token, now_ms()).map_err(|e| match e {
            TokenError::Expired => AuthError::Expired,
            _ => AuthError::Invalid,
        })?;
        if self.revocations.is_revoked(&claims.sid) {
            return Err(AuthError::Revoked);
        }
        Ok(claims)
    }
}

/// Where a credential came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Bearer,
    Query,
    Cookie,
}

/// The credential that decides, in the contract's order: `Authorization`, then `?token=`
/// (WebSocket only), then the cookie.
pub fn credential(headers: &HeaderMap, query_token: Option<&str>) -> Option<(String, Source)> {
    if let Some(v) = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let token = v
            .strip_prefix("Bearer ")
            .or_else(|| v.strip_prefix("bearer "))
            .unwrap_or("");
        return Some((token.trim().to_string(), Source::Bearer));
    }
    if let Some(t) = query_token {
        return Some((t.to_string(), Source::Query));
    }
    cookie(headers, COOKIE).map(|t| (t, Source::Cookie))
}

/// A cookie's value.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// Whether the request was served to the client over HTTPS: behind a trusted proxy that says so
/// in `X-Forwarded-Proto`, or, without one, when the operator marks cookies `Secure` (TLS is
/// then terminated in front of us).
pub fn served_over_https(headers: &HeaderMap, settings: &crate::settings::Settings) -> bool {
    let forwarded = headers
        .get("x-forwarded-proto")
        .filter(|_| settings.limits.trusted_proxies > 0)
        .and_then(|v| v.to_str().ok());
    match forwarded {
        Some(proto) => proto.trim().eq_ignore_ascii_case("https"),
        None => settings.auth.cookie_secure,
    }
}

/// Whether the request's `Origin` (if any) is the server's own or an allowed one. The server's
/// own origin is its scheme (see [`served_over_https`]) and its host: `Host`, or the `:authority`
/// of an HTTP/2 request, or `X-Forwarded-Host` behind trusted proxies.
pub fn origin_allowed(
    headers: &HeaderMap,
    uri: &axum::http::Uri,
    settings: &crate::settings::Settings,
) -> bool {
    let Some(origin) = headers
        .get(axum::http::header::ORIGIN)
        .and_then(|v| v.to_str().ok())
    else {
        return true; // not a browser cross-origin request
    };
    if settings.auth.allowed_origins.iter().any(|a| a == origin) {
        return true;
    }
    let host = headers
        .get("x-forwarded-host")
        .filter(|_| settings.limits.trusted_proxies > 0)
        .or_else(|| headers.get(axum::http::header::HOST))
        .and_then(|v| v.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()));
    let scheme = if served_over_https(headers, settings) {
        "https://"
    } else {
        "http://"
    };
    let origin_host = origin.strip_prefix(scheme);
    matches!((host, origin_host), (Some(h), Some(o)) if h.eq_ignore_ascii_case(o))
}

/// Refuse a request whose `Origin` is foreign (403): for cookie-authenticated requests that
/// change state, WebSocket upgrades, and login/register (so no other site can plant a session).
pub fn require_own_origin(
    headers: &HeaderMap,
    uri: &axum::http::Uri,
    settings: &crate::settings::Settings,
) -> Result<(), ApiError> {
    if origin_allowed(headers, uri, settings) {
        Ok(())
    } else {
        Err(ApiError::Forbidden("cross-origin request refused"))
    }
}

/// The authenticated, active caller of an `/api/*` route: a pending account is refused (403
/// `pending_approval`), and a `read`-scoped API token may not change anything (403 `forbidden`).
#[derive(Debug, Clone)]
pub struct CurrentUser {
    pub claims: Claims,
    pub source: Source,
}

impl CurrentUser {
    pub fn id(&self) -> &str {
        &self.claims.uid
    }
    pub fn username(&self) -> &str {
        &self.claims.name
    }
}

impl FromRequestParts<AppState> for CurrentUser {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let SignedIn { claims, source } = SignedIn::from_request_parts(parts, state).await?;
        access::require_approved(state, &claims).await?;
        let safe = matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
        if !safe && !access::may_change(&claims) {
            return Err(ApiError::Forbidden("this API token may only read"));
        }
        Ok(CurrentUser { claims, source })
    }
}

/// Check a credential the way every `/api/*` route does (no database): signature, expiry,
/// revocation, and the `Origin` of a cookie-authenticated state change.
pub(crate) fn signed_in(parts: &Parts, state: &AppState) -> Result<(Claims, Source), ApiError> {
    let Some((token, source)) = credential(&parts.headers, None) else {
        return Err(ApiError::Unauthorized("authentication required"));
    };
    let claims = state.auth.authenticate(&token).map_err(|e| match e {
        AuthError::KeyUnknown => ApiError::Unavailable {
            retry_after_secs: 2,
        },
        AuthError::Expired => ApiError::Unauthorized("the session has expired"),
        AuthError::Revoked => ApiError::Unauthorized("the session has ended"),
        _ => ApiError::Unauthorized("invalid credentials"),
    })?;
    let safe = matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
    if source == Source::Cookie && !safe {
        require_own_origin(&parts.headers, &parts.uri, &state.settings)?;
    }
    Ok((claims, source))
}
