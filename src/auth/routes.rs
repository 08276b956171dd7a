//! `/api/auth/*` and `/api/me`.

use axum::{
    Json, Router,
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode, Uri, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde_json::json;

use super::{Claims, CurrentUser, require_own_origin};
use crate::{
    db::{User, now_ms},
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

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/auth/register", post(register))
        .route("/api/auth/login", post(login))
        .route("/api/auth/logout", post(logout))
        .route("/api/me", get(me))
}

fn rate_limit_auth(state: &AppState, ip: std::net::IpAddr) -> Result<(), ApiError> {
    state.limits.auth.check(&client_key(ip)).map_err(|wait| {
        crate::limits::count_rate_limited(&state.metrics, "auth");
        ApiError::RateLimited {
            retry_after_secs: retry_after_secs(wait),
            policy: state.limits.auth.policy(),
            message: "too many attempts; slow down".into(),
        }
    })
}

async fn register(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    uri: Uri,
    JsonObject(body): JsonObject,
) -> Result<Response, ApiError> {
    require_own_origin(&headers, &uri, &state.settings)?;
    rate_limit_auth(&state, ip)?;
    let mut f = Fields::new(&body);
    let username = f.string("username");
    let username = f.parse("username", username, Username::parse);
    let password = f.string("password");
    let password = f.parse("password", password, Password::parse);
    f.finish()?;
    let (username, password) = (username.expect("checked"), password.expect("checked"));
    let hash = state
        .auth
        .passwords
        .hash(password.expose().to_string())
        .await
        .map_err(ApiError::Internal)?;
    let user = User {
        id: uuid::Uuid::now_v7().to_string(),
        username: username.as_str().to_string(),
        password_hash: hash,
    };
    let key = username.key();
    let stored = user.clone();
    state
        .db
        .run(|s| async move { s.create_user(&stored, &key, now_ms()).await })
        .await
        .map_err(|e| match e {
            crate::db::StoreError::Conflict(_) => {
                ApiError::Conflict("that username is taken".into())
            }
            other => other.into(),
        })?;
    start_session(&state, &headers, &user, StatusCode::CREATED).await
}

async fn login(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    uri: Uri,
    JsonObject(body): JsonObject,
) -> Result<Response, ApiError> {
    require_own_origin(&headers, &uri, &state.settings)?;
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
        Some(user) if ok => start_session(&state, &headers, &user, StatusCode::OK).await,
        _ => {
            state.limits.failed_logins.record(key);
            Err(wrong())
        }
    }
}

async fn start_session(
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
    });
    let body = json!({"token": token, "user": {"id": user.id, "username": user.username}});
    let mut response = (status, Json(body)).into_response();
    let cookie = session_cookie(state, headers, &token, state.auth.settings.token_ttl_secs);
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

async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
    user: CurrentUser,
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

async fn me(user: CurrentUser) -> Json<serde_json::Value> {
    Json(json!({"id": user.id(), "username": user.username()}))
}
