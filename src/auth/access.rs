//! Who may do what: the extractors that admit a caller by account state and credential kind,
//! and the revocations that follow an account change.
//!
//! * [`SignedIn`]: any valid credential, even a pending account's (`/api/me`, logout).
//! * [`CurrentUser`](super::CurrentUser): an active account; a `read` API token only reads.
//! * [`SessionUser`]: a sign-in session, never an API token (password, sessions, tokens).
//! * [`AdminUser`]: a session of an active admin, checked in the database on every request,
//!   so a demotion or a disable takes effect at once.
//!
//! Token checks stay database-free for active accounts: only a token issued to a pending account
//! looks its account up, until this instance has seen it approved.

use axum::{extract::FromRequestParts, http::request::Parts};

use super::{Claims, CurrentUser, Source, signed_in};
use crate::{
    contract::ErrorCode,
    db::{
        User,
        accounts::{Role, Status},
        now_ms,
    },
    error::ApiError,
    realtime::Event,
    state::AppState,
};

/// Scopes of personal API tokens.
pub const SCOPE_READ: &str = "read";
pub const SCOPE_CHAT: &str = "chat";

/// Any valid credential, whatever the account's status.
#[derive(Debug, Clone)]
pub struct SignedIn {
    pub claims: Claims,
    pub source: Source,
}

impl FromRequestParts<AppState> for SignedIn {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let (claims, source) = signed_in(parts, state)?;
        Ok(SignedIn { claims, source })
    }
}

/// A sign-in session of an active account (not an API token).
#[derive(Debug, Clone)]
pub struct SessionUser(pub CurrentUser);

impl FromRequestParts<AppState> for SessionUser {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let user = CurrentUser::from_request_parts(parts, state).await?;
        if user.claims.scope.is_some() {
            return Err(ApiError::Forbidden(
                "API tokens cannot manage the account; sign in",
            ));
        }
        Ok(SessionUser(user))
    }
}

/// A sign-in session of an active admin (the role is read from the database each time).
#[derive(Debug, Clone)]
pub struct AdminUser(pub CurrentUser);

impl FromRequestParts<AppState> for AdminUser {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let SessionUser(user) = SessionUser::from_request_parts(parts, state).await?;
        let account = load_user(state, user.id()).await?;
        match account {
            Some(u) if u.role == Role::Admin && u.status == Status::Active => Ok(AdminUser(user)),
            _ => Err(ApiError::Forbidden("administrators only")),
        }
    }
}

pub(crate) async fn load_user(state: &AppState, id: &str) -> Result<Option<User>, ApiError> {
    let id = id.to_string();
    Ok(state
        .db
        .run(|s| async move { s.user_by_id(&id).await })
        .await?)
}

/// Whether the account behind these claims may act: tokens issued to a pending account ask the
/// database until this instance has seen the account approved (remembered per session: an
/// account sent back to pending has its sessions revoked and signs in to new ones).
pub(crate) async fn account_status(state: &AppState, claims: &Claims) -> Result<Status, ApiError> {
    if !claims.pending || state.auth.known_approved(&claims.sid) {
        return Ok(Status::Active);
    }
    let status = load_user(state, &claims.uid)
        .await?
        .map_or(Status::Disabled, |u| u.status);
    if status == Status::Active {
        state.auth.remember_approved(&claims.sid);
    }
    Ok(status)
}

/// 403 `pending_approval` while the account waits for an admin.
pub(crate) async fn require_approved(state: &AppState, claims: &Claims) -> Result<(), ApiError> {
    match account_status(state, claims).await? {
        Status::Active => Ok(()),
        Status::Pending => Err(ApiError::Denied(
            ErrorCode::PendingApproval,
            "this account is waiting for an administrator's approval",
        )),
        Status::Disabled => Err(ApiError::Unauthorized("the session has ended")),
    }
}

/// Whether these claims may change anything (a `read` API token may not).
pub fn may_change(claims: &Claims) -> bool {
    claims.scope.as_deref() != Some(SCOPE_READ)
}

/// Revoke the user's sessions (of `kind`, or all kinds), except `keep`: every instance refuses
/// them within 5 s and closes their WebSockets with 4401 (here and through the broker at once;
/// the others' database refresh catches up if the broker is down).
pub(crate) async fn revoke_sessions(
    state: &AppState,
    user_id: &str,
    kind: Option<&'static str>,
    keep: Option<String>,
) -> Result<usize, ApiError> {
    let uid = user_id.to_string();
    let revoked = state
        .db
        .run(|s| async move {
            s.revoke_sessions_of(&uid, kind, keep.as_deref(), now_ms())
                .await
        })
        .await?;
    for (session_id, expires_at) in &revoked {
        state.realtime.publish(Event::Revoked {
            session_id: session_id.clone(),
            expires_at: *expires_at,
        });
    }
    Ok(revoked.len())
}
