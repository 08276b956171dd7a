//! `/api/admin/*`: what administrators do with accounts (list, approve, disable and enable,
//! set the role, issue a single-use password-reset link, see and end sessions) and invite links.
//! Every route admits only an active admin's sign-in session ([`AdminUser`]: 403 `forbidden`
//! otherwise, checked here, server-side); no change may leave the server without an active admin
//! (409 `conflict`).

use axum::{
    Json, Router,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{delete, get, post},
};

use super::{AdminUser, access};
use crate::{
    contract::accounts::{
        AccountList, AdminAccountView, CreatedLink, InviteList, InviteView, SessionList,
    },
    db::{
        accounts::{
            AccessChange, AccessOutcome, Account, AccountLink, KIND_SESSION, LINK_INVITE,
            LINK_RESET, Role, Status, random_secret, secret_hash,
        },
        now_ms, rfc3339,
    },
    error::ApiError,
    http::{
        IdPath,
        json::{Fields, JsonObject},
    },
    state::AppState,
};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/admin/users", get(list_users))
        .route("/api/admin/users/{id}", axum::routing::patch(update_user))
        .route("/api/admin/users/{id}/approve", post(approve_user))
        .route("/api/admin/users/{id}/reset", post(reset_link))
        .route(
            "/api/admin/users/{id}/sessions",
            get(user_sessions).delete(end_user_sessions),
        )
        .route("/api/admin/invites", get(list_invites).post(create_invite))
        .route("/api/admin/invites/{id}", delete(revoke_invite))
}

fn view(a: Account) -> AdminAccountView {
    AdminAccountView {
        id: a.id,
        username: a.username,
        role: a.role,
        status: a.status,
        created_at: rfc3339(a.created_at),
    }
}

/// Every account, oldest first.
#[utoipa::path(get, path = "/api/admin/users", operation_id = "adminListUsers", tag = "admin",
    security(("bearer" = []), ("cookie" = [])),
    responses((status = 200, description = "Accounts", body = AccountList),
        (status = 403, response = crate::error::responses::Forbidden)))]
pub(crate) async fn list_users(
    State(state): State<AppState>,
    _admin: AdminUser,
) -> Result<Json<AccountList>, ApiError> {
    let all = state.db.run(|s| async move { s.accounts().await }).await?;
    Ok(Json(AccountList {
        users: all.into_iter().map(view).collect(),
    }))
}

/// Apply changes in order; a disabled (or sent back to pending) account's sessions and API tokens
/// end everywhere within 5 s (its WebSockets close with 4401); its messages stay.
async fn apply(
    state: &AppState,
    id: &str,
    changes: Vec<AccessChange>,
) -> Result<AdminAccountView, ApiError> {
    let mut last = None;
    for change in changes {
        let uid = id.to_string();
        let outcome = state
            .db
            .run(|s| async move { s.set_access(&uid, change).await })
            .await?;
        match outcome {
            AccessOutcome::Changed(a) => last = Some(a),
            AccessOutcome::NotFound => return Err(ApiError::NotFound),
            AccessOutcome::LastAdmin => {
                return Err(ApiError::Conflict(
                    "this would leave no active administrator".into(),
                ));
            }
        }
        // Sessions opened while active would keep acting: end them (a pending account signs in
        // again and gets a pending session).
        if let AccessChange::Status(Status::Disabled | Status::Pending) = change {
            access::revoke_sessions(state, id, None, None).await?;
        }
    }
    match last {
        Some(a) => Ok(view(a)),
        None => {
            let uid = id.to_string();
            let all = state.db.run(|s| async move { s.accounts().await }).await?;
            all.into_iter()
                .find(|a| a.id == uid)
                .map(view)
                .ok_or(ApiError::NotFound)
        }
    }
}

/// Set an account's role and/or status (`{"role"?: "admin"|"user", "status"?: "active"|
/// "pending"|"disabled"}`). 409 when it would leave no active admin.
#[utoipa::path(patch, path = "/api/admin/users/{id}", operation_id = "adminUpdateUser",
    tag = "admin", security(("bearer" = []), ("cookie" = [])),
    params(("id" = String, Path, description = "User id")),
    request_body = crate::contract::accounts::AccessPatch,
    responses((status = 200, description = "The account", body = AdminAccountView),
        (status = 403, response = crate::error::responses::Forbidden),
        (status = 404, response = crate::error::responses::NotFound),
        (status = 409, response = crate::error::responses::Conflict)))]
pub(crate) async fn update_user(
    State(state): State<AppState>,
    _admin: AdminUser,
    IdPath(id): IdPath,
    JsonObject(body): JsonObject,
) -> Result<Json<AdminAccountView>, ApiError> {
    let mut f = Fields::new(&body);
    let mut changes = Vec::new();
    if let Some(r) = f.opt_string("role") {
        match Role::parse(r) {
            Some(r) => changes.push(AccessChange::Role(r)),
            None => f.reject("role", "must be \"admin\" or \"user\""),
        }
    }
    if let Some(s) = f.opt_string("status") {
        match Status::parse(s) {
            Some(s) => changes.push(AccessChange::Status(s)),
            None => f.reject("status", "must be \"active\", \"pending\" or \"disabled\""),
        }
    }
    f.finish()?;
    Ok(Json(apply(&state, &id, changes).await?))
}

/// Approve a pending account (it may act at once; its open token works from now on).
#[utoipa::path(post, path = "/api/admin/users/{id}/approve", operation_id = "adminApproveUser",
    tag = "admin", security(("bearer" = []), ("cookie" = [])),
    params(("id" = String, Path, description = "User id")),
    responses((status = 200, description = "The account", body = AdminAccountView),
        (status = 403, response = crate::error::responses::Forbidden),
        (status = 404, response = crate::error::responses::NotFound)))]
pub(crate) async fn approve_user(
    State(state): State<AppState>,
    _admin: AdminUser,
    IdPath(id): IdPath,
) -> Result<Json<AdminAccountView>, ApiError> {
    let change = vec![AccessChange::Status(Status::Active)];
    Ok(Json(apply(&state, &id, change).await?))
}

async fn new_link(
    state: &AppState,
    admin: &AdminUser,
    purpose: &str,
    user_id: Option<String>,
    ttl_secs: u64,
) -> Result<CreatedLink, ApiError> {
    let token = random_secret();
    let now = now_ms();
    let link = AccountLink {
        id: uuid::Uuid::now_v7().to_string(),
        purpose: purpose.into(),
        token_hash: secret_hash(&token),
        user_id,
        created_by: admin.0.id().to_string(),
        created_at: now,
        expires_at: now + ttl_secs as i64 * 1000,
        used_at: None,
        revoked_at: None,
    };
    let stored = link.clone();
    state
        .db
        .run(|s| async move { s.create_link(&stored).await })
        .await?;
    Ok(CreatedLink {
        id: link.id,
        path: format!("/{purpose}/{token}"),
        token,
        expires_at: rfc3339(link.expires_at),
    })
}

/// Issue a single-use password-reset link for an account (the admin hands it over; no mail).
/// Using it (`POST /api/auth/reset`) sets the password and ends every session of the account.
#[utoipa::path(post, path = "/api/admin/users/{id}/reset", operation_id = "adminResetLink",
    tag = "admin", security(("bearer" = []), ("cookie" = [])),
    params(("id" = String, Path, description = "User id")),
    responses((status = 201, description = "The link, shown this once", body = CreatedLink),
        (status = 403, response = crate::error::responses::Forbidden),
        (status = 404, response = crate::error::responses::NotFound)))]
pub(crate) async fn reset_link(
    State(state): State<AppState>,
    admin: AdminUser,
    IdPath(id): IdPath,
) -> Result<Response, ApiError> {
    if access::load_user(&state, &id).await?.is_none() {
        return Err(ApiError::NotFound);
    }
    let ttl = state.auth.settings.reset_ttl_secs;
    let link = new_link(&state, &admin, LINK_RESET, Some(id), ttl).await?;
    Ok((StatusCode::CREATED, Json(link)).into_response())
}

/// An account's open sign-in sessions.
#[utoipa::path(get, path = "/api/admin/users/{id}/sessions", operation_id = "adminUserSessions",
    tag = "admin", security(("bearer" = []), ("cookie" = [])),
    params(("id" = String, Path, description = "User id")),
    responses((status = 200, description = "Open sessions", body = SessionList),
        (status = 403, response = crate::error::responses::Forbidden)))]
pub(crate) async fn user_sessions(
    State(state): State<AppState>,
    admin: AdminUser,
    IdPath(id): IdPath,
) -> Result<Json<SessionList>, ApiError> {
    let rows = state
        .db
        .run(|s| async move { s.sessions_of(&id, KIND_SESSION, now_ms()).await })
        .await?;
    let current = admin.0.claims.sid.clone();
    Ok(Json(super::account::session_views(rows, Some(&current))))
}

/// End every sign-in session of an account (within 5 s everywhere; WebSockets close 4401).
#[utoipa::path(delete, path = "/api/admin/users/{id}/sessions",
    operation_id = "adminEndUserSessions", tag = "admin",
    security(("bearer" = []), ("cookie" = [])),
    params(("id" = String, Path, description = "User id")),
    responses((status = 204, description = "Revoked"),
        (status = 403, response = crate::error::responses::Forbidden)))]
pub(crate) async fn end_user_sessions(
    State(state): State<AppState>,
    _admin: AdminUser,
    IdPath(id): IdPath,
) -> Result<Response, ApiError> {
    access::revoke_sessions(&state, &id, Some(KIND_SESSION), None).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Create a single-use invite link (valid `auth.invite_ttl_secs`, 7 days by default).
#[utoipa::path(post, path = "/api/admin/invites", operation_id = "adminCreateInvite",
    tag = "admin", security(("bearer" = []), ("cookie" = [])),
    responses((status = 201, description = "The link, shown this once", body = CreatedLink),
        (status = 403, response = crate::error::responses::Forbidden)))]
pub(crate) async fn create_invite(
    State(state): State<AppState>,
    admin: AdminUser,
) -> Result<Response, ApiError> {
    let ttl = state.auth.settings.invite_ttl_secs;
    let link = new_link(&state, &admin, LINK_INVITE, None, ttl).await?;
    Ok((StatusCode::CREATED, Json(link)).into_response())
}

/// Open invites (unused, unrevoked, unexpired), newest first.
#[utoipa::path(get, path = "/api/admin/invites", operation_id = "adminListInvites",
    tag = "admin", security(("bearer" = []), ("cookie" = [])),
    responses((status = 200, description = "Open invites", body = InviteList),
        (status = 403, response = crate::error::responses::Forbidden)))]
pub(crate) async fn list_invites(
    State(state): State<AppState>,
    _admin: AdminUser,
) -> Result<Json<InviteList>, ApiError> {
    let links = state
        .db
        .run(|s| async move { s.open_links(LINK_INVITE, now_ms()).await })
        .await?;
    Ok(Json(InviteList {
        invites: links
            .into_iter()
            .map(|l| InviteView {
                id: l.id,
                created_at: rfc3339(l.created_at),
                expires_at: rfc3339(l.expires_at),
            })
            .collect(),
    }))
}

/// Revoke an open invite.
#[utoipa::path(delete, path = "/api/admin/invites/{id}", operation_id = "adminRevokeInvite",
    tag = "admin", security(("bearer" = []), ("cookie" = [])),
    params(("id" = String, Path, description = "Invite id")),
    responses((status = 204, description = "Revoked"),
        (status = 403, response = crate::error::responses::Forbidden),
        (status = 404, response = crate::error::responses::NotFound)))]
pub(crate) async fn revoke_invite(
    State(state): State<AppState>,
    _admin: AdminUser,
    IdPath(id): IdPath,
) -> Result<Response, ApiError> {
    let found = state
        .db
        .run(|s| async move { s.revoke_link(&id, LINK_INVITE, now_ms()).await })
        .await?;
    if !found {
        return Err(ApiError::NotFound);
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}
