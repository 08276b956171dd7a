//! `/api/auth/*` and `/api/me`.

use super::{Claims, SignedIn, access, require_own_origin};
use crate::{
    contract::{
        ErrorCode,
        accounts::AccountView,
        http::{Credentials, NewAccount, Session},
    },
    db::{
        User,
        accounts::{self as acc, Registered, Status},
        now_ms,
    },
    domain::{Password, Username},
    error::ApiError,
    http::{
        client_ip::ClientIp,
        json::{Fields, JsonObject},
    },
    limits::{client_key, retry_after_secs},
    realtime::Event,
    state::AppState,
};
use axum::{
    Json, Router,
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode, Uri, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/auth/register", post(register))
        .route("/api/auth/login", post(login))
        .route("/api/auth/logout", post(logout))
        .route("/api/auth/reset", post(super::account::reset_password))
        .route("/api/me", get(me))
}

pub(super) fn rate_limit_auth(state: &AppState, ip: std::net::IpAddr) -> Result<(), ApiError> {
    state.limits.auth.check(&client_key(ip)).map_err(|wait| {
        crate::limits::count_rate_limited(&state.metrics, "auth");
        ApiError::RateLimited {
            retry_after_secs: retry_after_secs(wait),
            policy: state.limits.auth.policy(),
            message: "too many attempts; slow down".into(),
        }
    })
}

/// Refuse password sign-in and sign-up on an SSO-only server (403 `password_login_disabled`).
fn password_login_on(state: &AppState) -> Result<(), ApiError> {
    if state.auth.settings.password_login {
        Ok(())
    } else {
        Err(ApiError::Denied(
            ErrorCode::PasswordLoginDisabled,
            "password sign-in is off on this server; sign in with single sign-on",
        ))
    }
}

/// Create an account and start a session. The session cookie is set too.
#[utoipa::path(
    post,
    path = "/api/auth/register",
    operation_id = "register",
    tag = "auth",
    request_body = NewAccount,
    responses(
        (status = 201, description = "Registered and signed in", body = Session,
            headers(("Set-Cookie" = String, description = "The session cookie (HttpOnly, SameSite=Lax)"))),
        (status = 403, response = crate::error::responses::Forbidden),
        (status = 409, response = crate::error::responses::Conflict),
        (status = 429, response = crate::error::responses::RateLimited),
    )
)]
pub(crate) async fn register(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    uri: Uri,
    JsonObject(body): JsonObject,
) -> Result<Response, ApiError> {
    require_own_origin(&headers, &uri, &state.settings)?;
    password_login_on(&state)?;
    rate_limit_auth(&state, ip)?;
    let mut f = Fields::new(&body);
    let username = f.string("username");
    let username = f.parse("username", username, Username::parse);
    let password = f.string("password");
    let password = f.parse("password", password, Password::parse);
    let invite = f.opt_string("invite").map(str::to_string);
    // Anything else in the body (a forged "role", "status", "admin") is ignored.
    f.finish()?;
    let (username, password) = (username.expect("checked"), password.expect("checked"));
    // Guessing invites is limited per client address, like failed logins.
    let guess_key = (String::from("invite:"), client_key(ip));
    let mode = state.auth.settings.registration;
    if mode == acc::Registration::Invite
        && let Err(wait) = state.limits.failed_logins.check(&guess_key)
    {
        crate::limits::count_rate_limited(&state.metrics, "auth");
        return Err(ApiError::RateLimited {
            retry_after_secs: retry_after_secs(wait),
            policy: format!(
                "{};w={}",
                state.settings.limits.failed_logins_per_user,
                state.settings.limits.failed_login_window_secs
            ),
            message: "too many invalid invites from this address; try again later".into(),
        });
    }
    let hash = state
        .auth
        .passwords
        .hash(password.expose().to_string())
        .await
        .map_err(ApiError::Internal)?;
    let account = acc::NewAccount {
        id: uuid::Uuid::now_v7().to_string(),
        username: username.as_str().to_string(),
        key: username.key(),
        password_hash: hash.clone(),
        mode,
        invite_hash: invite.as_deref().map(acc::secret_hash),
        admin: false,
        now: now_ms(),
    };
    let outcome = state
        .db
        .run(|s| async move { s.register_user(&account).await })
        .await?;
    let account = match outcome {
        Registered::Created(a) => a,
        Registered::Taken => return Err(ApiError::Conflict("that username is taken".into())),
        Registered::Closed => {
            return Err(ApiError::Denied(
                ErrorCode::RegistrationClosed,
                "registration is closed on this server",
            ));
        }
        Registered::InviteInvalid => {
            state.limits.failed_logins.record(guess_key);
            return Err(ApiError::Denied(
                ErrorCode::InviteInvalid,
                "registration needs a valid invite link; this one is unknown, used or expired",
            ));
        }
    };
    let user = User {
        id: account.id,
        username: account.username,
        password_hash: hash,
        role: account.role,
        status: account.status,
    };
    start_session(&state, &headers, &user, StatusCode::CREATED).await
}

/// Start a session. Wrong credentials, including a password outside the length rules, are 401.
#[utoipa::path(
    post,
    path = "/api/auth/login",
    operation_id = "login",
    tag = "auth",
    request_body = Credentials,
    responses(
        (status = 200, description = "Signed in", body = Session,
            headers(("Set-Cookie" = String, description = "The session cookie (HttpOnly, SameSite=Lax)"))),
        (status = 401, response = crate::error::responses::Unauthorized),
        (status = 403, response = crate::error::responses::Forbidden),
        (status = 429, response = crate::error::responses::RateLimited),
    )
)]
pub(crate) async fn login(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    uri: Uri,
    JsonObject(body): JsonObject,
) -> Result<Response, ApiError> {
    require_own_origin(&headers, &uri, &state.settings)?;
    password_login_on(&state)?;
    rate_limit_auth(&state, ip)?;
    let mut f = Fields::new(&body);
    let username = f.string("username").unwrap_or_default();
    let password = f.string("password").unwrap_or_default().to_string();
    // Missing fields are a malformed request; wrong values are just wrong credentials.
    f.finish()?;
    let wrong = || ApiError::Unauthorized("wrong username or password");
    // A name that cannot exist is refused before anything is counted or kept for it.
    let Ok(username) = Username::parse(username) else {
        // As slow as a real check, so the answer does not tell which rule refused it.
        state.auth.passwords.verify(password, None).await;
        return Err(wrong());
    };
    // Failures count per (username, client address): a stranger locks out only themselves.
    let key = (username.key(), client_key(ip));
    if let Err(wait) = state.limits.failed_logins.check(&key) {
        crate::limits::count_rate_limited(&state.metrics, "auth");
        return Err(ApiError::RateLimited {
            retry_after_secs: retry_after_secs(wait),
            policy: format!(
                "{};w={}",
                state.settings.limits.failed_logins_per_user,
                state.settings.limits.failed_login_window_secs
            ),
            message: "too many failed logins for this username; try again later".into(),
        });
    }
    let user = if Password::parse(&password).is_ok() {
        let k = key.0.clone();
        state
            .db
            .run(|s| async move { s.user_by_key(&k).await })
            .await?
    } else {
        None
    };
    // Always verify against some hash, so timing does not reveal whether the username exists.
    let stored = user.as_ref().map(|u| u.password_hash.clone());
    let ok = state.auth.passwords.verify(password, stored).await;
    match user {
        Some(user) if ok && user.status == Status::Disabled => {
            Err(ApiError::Forbidden("this account is disabled"))
        }
        Some(user) if ok => start_session(&state, &headers, &user, StatusCode::OK).await,
        _ => {
            state.limits.failed_logins.record(key);
            Err(wrong())
        }
    }
}

pub(super) async fn start_session(
    state: &AppState,
    headers: &HeaderMap,
    user: &User,
    status: StatusCode,
) -> Result<Response, ApiError> {
    let key = state.auth.key().ok_or(ApiError::Unavailable {
        retry_after_secs: 2,
    })?;
    let now = now_ms();
    let expires = now + state.auth.settings.token_ttl_secs as i64 * 1000;
    let sid = uuid::Uuid::now_v7().to_string();
    let (sid2, uid) = (sid.clone(), user.id.clone());
    state
        .db
        .run(|s| async move { s.create_session(&sid2, &uid, now, expires).await })
        .await?;
    let token = key.sign(&Claims {
        uid: user.id.clone(),
        sid,
        name: user.username.clone(),
        exp: expires,
        scope: None,
        pending: user.status == Status::Pending,
    });
    let body = Session {
        token,
        user: AccountView {
            id: user.id.clone(),
            username: user.username.clone(),
            role: user.role,
            status: user.status,
        },
    };
    let cookie = session_cookie(
        state,
        headers,
        &body.token,
        state.auth.settings.token_ttl_secs,
    );
    let mut response = (status, Json(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(response)
}

fn session_cookie(state: &AppState, headers: &HeaderMap, value: &str, max_age: u64) -> String {
    let https = state.auth.settings.cookie_secure
        || (state.settings.limits.trusted_proxies > 0
            && headers
                .get("x-forwarded-proto")
                .and_then(|v| v.to_str().ok())
                == Some("https"));
    format!(
        "{}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{}",
        super::COOKIE,
        if https { "; Secure" } else { "" }
    )
}

/// End this session.
///
/// Every instance refuses its token within 5 s and closes its WebSockets with 4401. The
/// cookie is cleared.
#[utoipa::path(
    post,
    path = "/api/auth/logout",
    operation_id = "logout",
    tag = "auth",
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 204, description = "Signed out",
            headers(("Set-Cookie" = String, description = "Clears the session cookie"))),
    )
)]
pub(crate) async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
    user: SignedIn,
) -> Result<Response, ApiError> {
    let sid = user.claims.sid.clone();
    let now = now_ms();
    // Revoke here at once (this instance refuses the token from now on), then everywhere.
    state.realtime.publish(Event::Revoked {
        session_id: sid.clone(),
        expires_at: user.claims.exp,
    });
    let db_sid = sid.clone();
    if let Err(e) = state
        .db
        .run(|s| async move { s.revoke_session(&db_sid, now).await })
        .await
    {
        // The database is down: keep trying in the background so other instances learn it too.
        tracing::warn!(error = %e, "logout stored later: database unavailable");
        let db = state.db.clone();
        tokio::spawn(async move {
            for _ in 0..120 {
                db.wait_up(std::time::Duration::from_secs(5)).await;
                let s = sid.clone();
                if db
                    .run(|st| async move { st.revoke_session(&s, now).await })
                    .await
                    .is_ok()
                {
                    break;
                }
            }
        });
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    let cookie = session_cookie(&state, &headers, "", 0);
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(response)
}

/// The caller, with its role and status. A pending account may call this (and log out), and
/// nothing else. While the database is down, the token tells what it can.
#[utoipa::path(
    get,
    path = "/api/me",
    operation_id = "me",
    tag = "auth",
    security(("bearer" = []), ("cookie" = [])),
    responses((status = 200, description = "The signed-in user", body = AccountView))
)]
pub(crate) async fn me(
    State(state): State<AppState>,
    user: SignedIn,
) -> Result<Json<AccountView>, ApiError> {
    let claims = user.claims;
    let (role, status) = match access::load_user(&state, &claims.uid).await {
        Ok(Some(u)) => (u.role, u.status),
        Ok(None) => return Err(ApiError::Unauthorized("the session has ended")),
        Err(ApiError::Unavailable { .. }) => (
            acc::Role::User,
            if claims.pending {
                Status::Pending
            } else {
                Status::Active
            },
        ),
        Err(e) => return Err(e),
    };
    if status == Status::Active && claims.pending {
        state.auth.remember_approved(&claims.sid);
    }
    Ok(Json(AccountView {
        id: claims.uid,
        username: claims.name,
        role,
        status,
    }))
}
