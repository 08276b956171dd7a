//! "My account": the caller's sessions, password and personal API tokens, and the password
//! reset an admin's link allows (`POST /api/auth/reset`).
//!
//! An API token is a signed token like a session's (so checking one needs no database), with a
//! scope; its row in `sessions` (kind `api`) keeps its name, scope and the SHA-256 of the token,
//! never the token, and revoking it uses the same revocation path as a logout.

use axum::{
    Json, Router,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{delete, get, post},
};

use super::{
    Claims, SessionUser,
    access::{self, SCOPE_CHAT, SCOPE_READ},
};
use crate::{
    contract::accounts::{
        ApiTokenList, ApiTokenView, CreatedApiToken, NewApiToken, PasswordChange, PasswordReset,
        SessionList, SessionView, TokenScope,
    },
    db::{
        accounts::{KIND_API, KIND_SESSION, SessionRow, secret_hash},
        now_ms, rfc3339,
    },
    domain::Password,
    error::ApiError,
    http::{
        IdPath,
        client_ip::ClientIp,
        json::{Fields, JsonObject},
    },
    realtime::Event,
    state::AppState,
};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/me/sessions", get(list_sessions))
        .route("/api/me/sessions/{id}", delete(revoke_session))
        .route("/api/me/password", post(change_password))
        .route("/api/me/tokens", get(list_tokens).post(create_token))
        .route("/api/me/tokens/{id}", delete(revoke_token))
}

pub(super) fn session_views(rows: Vec<SessionRow>, current: Option<&str>) -> SessionList {
    SessionList {
        sessions: rows
            .into_iter()
            .map(|r| SessionView {
                current: current == Some(r.id.as_str()),
                id: r.id,
                created_at: rfc3339(r.created_at),
                expires_at: rfc3339(r.expires_at),
            })
            .collect(),
    }
}

/// My open sign-in sessions, newest first; `current` marks this one.
#[utoipa::path(get, path = "/api/me/sessions", operation_id = "mySessions", tag = "account",
    security(("bearer" = []), ("cookie" = [])),
    responses((status = 200, description = "Open sessions", body = SessionList),
        (status = 403, response = crate::error::responses::Forbidden)))]
pub(crate) async fn list_sessions(
    State(state): State<AppState>,
    SessionUser(user): SessionUser,
) -> Result<Json<SessionList>, ApiError> {
    let uid = user.id().to_string();
    let rows = state
        .db
        .run(|s| async move { s.sessions_of(&uid, KIND_SESSION, now_ms()).await })
        .await?;
    Ok(Json(session_views(rows, Some(&user.claims.sid))))
}

async fn revoke_own(
    state: &AppState,
    user_id: &str,
    id: String,
    kind: &'static str,
) -> Result<Response, ApiError> {
    let uid = user_id.to_string();
    let sid = id.clone();
    let expires = state
        .db
        .run(|s| async move { s.revoke_session_of(&uid, &sid, kind, now_ms()).await })
        .await?
        .ok_or(ApiError::NotFound)?;
    state.realtime.publish(Event::Revoked {
        session_id: id,
        expires_at: expires,
    });
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// End one of my sessions (any instance refuses it within 5 s; its WebSockets close 4401).
#[utoipa::path(delete, path = "/api/me/sessions/{id}", operation_id = "revokeMySession",
    tag = "account", security(("bearer" = []), ("cookie" = [])),
    params(("id" = String, Path, description = "Session id")),
    responses((status = 204, description = "Revoked"),
        (status = 403, response = crate::error::responses::Forbidden),
        (status = 404, response = crate::error::responses::NotFound)))]
pub(crate) async fn revoke_session(
    State(state): State<AppState>,
    SessionUser(user): SessionUser,
    IdPath(id): IdPath,
) -> Result<Response, ApiError> {
    revoke_own(&state, user.id(), id, KIND_SESSION).await
}

/// Change my password; every other session of mine ends on every instance within 5 s.
/// A wrong current password is 403 `forbidden`; a new one outside 8-256 characters is 422.
#[utoipa::path(post, path = "/api/me/password", operation_id = "changePassword",
    tag = "account", security(("bearer" = []), ("cookie" = [])), request_body = PasswordChange,
    responses((status = 204, description = "Changed; other sessions revoked"),
        (status = 403, response = crate::error::responses::Forbidden),
        (status = 429, response = crate::error::responses::RateLimited)))]
pub(crate) async fn change_password(
    State(state): State<AppState>,
    SessionUser(user): SessionUser,
    ClientIp(ip): ClientIp,
    JsonObject(body): JsonObject,
) -> Result<Response, ApiError> {
    let mut f = Fields::new(&body);
    let current = f.string("current").unwrap_or_default().to_string();
    let new = f.string("new");
    let new = f.parse("new", new, Password::parse);
    f.finish()?;
    let new = new.expect("checked");
    // Guessing the current password is limited like failed logins.
    let key = (
        format!("password:{}", user.id()),
        crate::limits::client_key(ip),
    );
    if let Err(wait) = state.limits.failed_logins.check(&key) {
        return Err(ApiError::RateLimited {
            retry_after_secs: crate::limits::retry_after_secs(wait),
            policy: state.limits.auth.policy(),
            message: "too many wrong passwords; try again later".into(),
        });
    }
    let stored = access::load_user(&state, user.id())
        .await?
        .ok_or(ApiError::Unauthorized("the session has ended"))?;
    if !state
        .auth
        .passwords
        .verify(current, Some(stored.password_hash))
        .await
    {
        state.limits.failed_logins.record(key);
        return Err(ApiError::Forbidden("the current password is wrong"));
    }
    let hash = state
        .auth
        .passwords
        .hash(new.expose().to_string())
        .await
        .map_err(ApiError::Internal)?;
    let uid = user.id().to_string();
    state
        .db
        .run(|s| async move { s.set_password(&uid, &hash).await })
        .await?;
    let keep = Some(user.claims.sid.clone());
    access::revoke_sessions(&state, user.id(), Some(KIND_SESSION), keep).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Set a password with an admin's single-use reset link; every session of that account ends.
/// An unknown, used or expired link is 403 `forbidden`.
#[utoipa::path(post, path = "/api/auth/reset", operation_id = "resetPassword", tag = "auth",
    request_body = PasswordReset,
    responses((status = 204, description = "Password set; every session revoked"),
        (status = 403, response = crate::error::responses::Forbidden),
        (status = 429, response = crate::error::responses::RateLimited)))]
pub(crate) async fn reset_password(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: axum::http::HeaderMap,
    uri: axum::http::Uri,
    JsonObject(body): JsonObject,
) -> Result<Response, ApiError> {
    super::require_own_origin(&headers, &uri, &state.settings)?;
    super::routes::rate_limit_auth(&state, ip)?;
    let mut f = Fields::new(&body);
    let token = f.string("token").unwrap_or_default().to_string();
    let password = f.string("password");
    let password = f.parse("password", password, Password::parse);
    f.finish()?;
    let password = password.expect("checked");
    let key = (String::from("reset:"), crate::limits::client_key(ip));
    if let Err(wait) = state.limits.failed_logins.check(&key) {
        return Err(ApiError::RateLimited {
            retry_after_secs: crate::limits::retry_after_secs(wait),
            policy: state.limits.auth.policy(),
            message: "too many invalid reset links from this address; try again later".into(),
        });
    }
    let hash = state
        .auth
        .passwords
        .hash(password.expose().to_string())
        .await
        .map_err(ApiError::Internal)?;
    let token_hash = secret_hash(&token);
    let user_id = state
        .db
        .run(|s| async move { s.use_reset_link(&token_hash, &hash, now_ms()).await })
        .await?;
    let Some(user_id) = user_id else {
        state.limits.failed_logins.record(key);
        return Err(ApiError::Forbidden(
            "this reset link is unknown, used or expired",
        ));
    };
    access::revoke_sessions(&state, &user_id, Some(KIND_SESSION), None).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn token_view(r: SessionRow) -> ApiTokenView {
    ApiTokenView {
        id: r.id,
        name: r.name.unwrap_or_default(),
        scope: if r.scope.as_deref() == Some(SCOPE_CHAT) {
            TokenScope::Chat
        } else {
            TokenScope::Read
        },
        created_at: rfc3339(r.created_at),
        expires_at: rfc3339(r.expires_at),
    }
}

/// Create a personal API token: shown once, kept as a hash, usable as `Authorization: Bearer`
/// on HTTP and on the WebSocket. `read` tokens cannot send, debate or change anything.
#[utoipa::path(post, path = "/api/me/tokens", operation_id = "createApiToken",
    tag = "account", security(("bearer" = []), ("cookie" = [])), request_body = NewApiToken,
    responses((status = 201, description = "Created; the token is shown this once", body = CreatedApiToken),
        (status = 403, response = crate::error::responses::Forbidden)))]
pub(crate) async fn create_token(
    State(state): State<AppState>,
    SessionUser(user): SessionUser,
    JsonObject(body): JsonObject,
) -> Result<Response, ApiError> {
    let mut f = Fields::new(&body);
    let name = f.string("name").map(str::trim);
    if let Some(n) = name
        && (n.is_empty() || n.chars().count() > 64 || n.chars().any(char::is_control))
    {
        f.reject("name", "must be 1-64 characters, no control characters");
    }
    let scope = match f.string("scope") {
        Some(SCOPE_READ) => Some(TokenScope::Read),
        Some(SCOPE_CHAT) => Some(TokenScope::Chat),
        Some(_) => {
            f.reject("scope", "must be \"read\" or \"chat\"");
            None
        }
        None => None,
    };
    f.finish()?;
    let (name, scope) = (name.expect("checked").to_string(), scope.expect("checked"));
    let key = state.auth.key().ok_or(ApiError::Unavailable {
        retry_after_secs: 2,
    })?;
    let now = now_ms();
    let expires = now + state.auth.settings.api_token_ttl_secs as i64 * 1000;
    let id = uuid::Uuid::now_v7().to_string();
    let token = key.sign(&Claims {
        uid: user.id().to_string(),
        sid: id.clone(),
        name: user.username().to_string(),
        exp: expires,
        scope: Some(scope.as_str().to_string()),
        pending: false,
    });
    let row = SessionRow {
        id,
        user_id: user.id().to_string(),
        kind: KIND_API.into(),
        name: Some(name),
        scope: Some(scope.as_str().into()),
        token_hash: Some(secret_hash(&token)),
        created_at: now,
        expires_at: expires,
    };
    let stored = row.clone();
    state
        .db
        .run(|s| async move { s.create_session_row(&stored).await })
        .await?;
    let body = CreatedApiToken {
        token,
        view: token_view(row),
    };
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// My API tokens (never their secrets), newest first.
#[utoipa::path(get, path = "/api/me/tokens", operation_id = "listApiTokens", tag = "account",
    security(("bearer" = []), ("cookie" = [])),
    responses((status = 200, description = "Open tokens", body = ApiTokenList),
        (status = 403, response = crate::error::responses::Forbidden)))]
pub(crate) async fn list_tokens(
    State(state): State<AppState>,
    SessionUser(user): SessionUser,
) -> Result<Json<ApiTokenList>, ApiError> {
    let uid = user.id().to_string();
    let rows = state
        .db
        .run(|s| async move { s.sessions_of(&uid, KIND_API, now_ms()).await })
        .await?;
    Ok(Json(ApiTokenList {
        tokens: rows.into_iter().map(token_view).collect(),
    }))
}

/// Revoke one of my API tokens (refused everywhere within 5 s).
#[utoipa::path(delete, path = "/api/me/tokens/{id}", operation_id = "revokeApiToken",
    tag = "account", security(("bearer" = []), ("cookie" = [])),
    params(("id" = String, Path, description = "Token id")),
    responses((status = 204, description = "Revoked"),
        (status = 403, response = crate::error::responses::Forbidden),
        (status = 404, response = crate::error::responses::NotFound)))]
pub(crate) async fn revoke_token(
    State(state): State<AppState>,
    SessionUser(user): SessionUser,
    IdPath(id): IdPath,
) -> Result<Response, ApiError> {
    revoke_own(&state, user.id(), id, KIND_API).await
}
