//! Single sign-on with OpenID Connect (issue #15): `GET /api/auth/options`,
//! `GET /auth/oidc/{provider}/start`, `GET /auth/oidc/{provider}/callback` and
//! `POST /api/auth/oidc/exchange`.
//!
//! The browser's round trip: `start` keeps the flow server-side (the SHA-256 of `state`, the
//! nonce, the PKCE verifier, the hash of a browser-binding cookie, an invite) in the database,
//! so any instance can finish it, and sends the browser to the provider. `callback` takes that
//! row (single use, 10 minutes), checks the binding cookie, exchanges the code and verifies the
//! `id_token` (`client.rs`), finds or creates the account (`account.rs`), and sends the browser
//! to `/#/sso/<code>`: a hand-over code, single use and valid 60 s, in the fragment (never sent
//! to a server, so never in a log or a `Referer`). The web client exchanges it with
//! `POST /api/auth/oidc/exchange` for the same answer and cookie a password login gives. Any
//! failure sends the browser to `/#/sso-error/<reason>`, which the web UI explains.

mod account;
pub mod client;

use std::{collections::HashMap, sync::Arc};

use axum::{
    Json, Router,
    extract::{Path, Query, State},
    http::{HeaderMap, HeaderValue, StatusCode, Uri, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};

use crate::{
    contract::sso::{SignInOptions, SsoExchange, SsoProviderView},
    db::{
        accounts::{random_secret, secret_hash},
        now_ms,
        sso::{PENDING_FLOW, PENDING_HANDOVER, SsoPending},
    },
    error::ApiError,
    http::{
        client_ip::ClientIp,
        json::{Fields, JsonObject},
    },
    settings::{AuthSettings, Registration},
    state::AppState,
};
use account::Refusal;
use client::{Failure, Provider};

/// The browser-binding cookie: only the browser that started a sign-in can finish it.
const BINDING_COOKIE: &str = "emergence_sso";
/// How long a started sign-in may take at the provider.
const FLOW_TTL_MS: i64 = 10 * 60 * 1000;
/// How long the web client has to exchange its hand-over code.
const HANDOVER_TTL_MS: i64 = 60 * 1000;

/// The configured providers and the HTTP client that talks to them.
pub struct Providers {
    list: Vec<Arc<Provider>>,
    /// Built on first use (building one reads the system's CA certificates: not at startup).
    http: std::sync::OnceLock<reqwest::Client>,
}

impl Providers {
    pub fn new(settings: &AuthSettings) -> Self {
        Providers {
            list: settings
                .oidc
                .iter()
                .cloned()
                .map(|p| Arc::new(Provider::new(p)))
                .collect(),
            http: std::sync::OnceLock::new(),
        }
    }

    fn http(&self) -> &reqwest::Client {
        self.http.get_or_init(client::http_client)
    }

    fn get(&self, name: &str) -> Option<Arc<Provider>> {
        self.list.iter().find(|p| p.settings.name == name).cloned()
    }
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/auth/options", get(options))
        .route("/api/auth/oidc/exchange", post(exchange))
        .route("/auth/oidc/{provider}/start", get(start))
        .route("/auth/oidc/{provider}/callback", get(callback))
}

/// How one may sign in here: password or not, the registration mode, the SSO providers.
#[utoipa::path(
    get,
    path = "/api/auth/options",
    operation_id = "sign_in_options",
    tag = "auth",
    responses((status = 200, description = "The ways to sign in", body = SignInOptions))
)]
pub(crate) async fn options(State(state): State<AppState>) -> Json<SignInOptions> {
    let s = &state.auth.settings;
    Json(SignInOptions {
        password_login: s.password_login,
        registration: match s.registration {
            Registration::Open => "open",
            Registration::Approval => "approval",
            Registration::Invite => "invite",
            Registration::Closed => "closed",
        }
        .to_string(),
        providers: s
            .oidc
            .iter()
            .map(|p| SsoProviderView {
                name: p.name.clone(),
                label: p.label().to_string(),
                start_url: format!("/auth/oidc/{}/start", p.name),
            })
            .collect(),
    })
}

/// Where the browser lands after a failure: the web UI explains `reason`.
fn error_page(reason: &str) -> Response {
    redirect(&format!("/#/sso-error/{reason}"), None)
}

fn redirect(location: &str, cookie: Option<String>) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    let h = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(location) {
        h.insert(header::LOCATION, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    if let Some(c) = cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        h.insert(header::SET_COOKIE, c);
    }
    response
}

fn binding_cookie(state: &AppState, headers: &HeaderMap, value: &str, max_age: i64) -> String {
    let secure = super::served_over_https(headers, &state.settings);
    format!(
        "{BINDING_COOKIE}={value}; Path=/auth/oidc; HttpOnly; SameSite=Lax; Max-Age={max_age}{}",
        if secure { "; Secure" } else { "" }
    )
}

/// The redirect URI registered at the provider: `{public_url}/auth/oidc/{name}/callback`, the
/// public URL being the setting or this request's own scheme and host.
fn redirect_uri(state: &AppState, headers: &HeaderMap, uri: &Uri, name: &str) -> String {
    let base = match &state.auth.settings.public_url {
        Some(url) => url.trim_end_matches('/').to_string(),
        None => {
            let host = headers
                .get("x-forwarded-host")
                .filter(|_| state.settings.limits.trusted_proxies > 0)
                .or_else(|| headers.get(header::HOST))
                .and_then(|v| v.to_str().ok())
                .or_else(|| uri.authority().map(|a| a.as_str()))
                .unwrap_or("localhost");
            let scheme = if super::served_over_https(headers, &state.settings) {
                "https"
            } else {
                "http"
            };
            format!("{scheme}://{host}")
        }
    };
    format!("{base}/auth/oidc/{name}/callback")
}

/// Start signing in at a provider: 303 to its authorization endpoint.
#[utoipa::path(
    get,
    path = "/auth/oidc/{provider}/start",
    operation_id = "sso_start",
    tag = "auth",
    params(
        ("provider" = String, Path, description = "The provider's name in the settings"),
        ("invite" = Option<String>, Query, description = "An invite token to carry into the sign-up"),
    ),
    responses(
        (status = 303, description = "To the provider (or to `/#/sso-error/<reason>`)"),
        (status = 429, response = crate::error::responses::RateLimited),
    )
)]
pub(crate) async fn start(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    Path(name): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, ApiError> {
    super::routes::rate_limit_auth(&state, ip)?;
    let Some(provider) = state.auth.oidc.get(&name) else {
        return Ok(error_page("sso_unknown_provider"));
    };
    let callback = redirect_uri(&state, &headers, &uri, &name);
    let started = match provider.start(state.auth.oidc.http(), &callback).await {
        Ok(s) => s,
        Err(_) => return Ok(error_page("sso_unavailable")),
    };
    let binding = random_secret();
    let now = now_ms();
    let flow = SsoPending {
        key_hash: secret_hash(&started.state),
        kind: PENDING_FLOW.into(),
        provider: name,
        nonce: Some(started.nonce),
        pkce_verifier: Some(started.pkce_verifier),
        browser_hash: Some(secret_hash(&binding)),
        invite_hash: query
            .get("invite")
            .filter(|i| !i.is_empty())
            .map(|i| secret_hash(i)),
        user_id: None,
        created_at: now,
        expires_at: now + FLOW_TTL_MS,
    };
    state
        .db
        .run(|s| async move { s.put_sso_pending(&flow).await })
        .await?;
    let cookie = binding_cookie(&state, &headers, &binding, FLOW_TTL_MS / 1000);
    Ok(redirect(&started.url, Some(cookie)))
}

/// The provider sends the browser back here: 303 to `/#/sso/<code>` on success, to
/// `/#/sso-error/<reason>` otherwise.
#[utoipa::path(
    get,
    path = "/auth/oidc/{provider}/callback",
    operation_id = "sso_callback",
    tag = "auth",
    params(
        ("provider" = String, Path, description = "The provider's name in the settings"),
        ("state" = String, Query, description = "The `state` of the authorization request"),
        ("code" = Option<String>, Query, description = "The authorization code"),
        ("error" = Option<String>, Query, description = "The provider's refusal"),
    ),
    responses((status = 303, description = "To `/#/sso/<code>` or `/#/sso-error/<reason>`"))
)]
pub(crate) async fn callback(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, ApiError> {
    let now = now_ms();
    let key = secret_hash(query.get("state").map(String::as_str).unwrap_or(""));
    let flow = state
        .db
        .run(|s| async move { s.take_sso_pending(PENDING_FLOW, &key, now).await })
        .await?;
    let binding = super::cookie(&headers, BINDING_COOKIE).map(|b| secret_hash(&b));
    let (Some(flow), Some(provider)) = (flow, state.auth.oidc.get(&name)) else {
        return Ok(error_page("sso_state_invalid"));
    };
    // The flow must be this provider's and this browser's (no login CSRF, no mix-up).
    if flow.provider != name || flow.browser_hash.is_none() || flow.browser_hash != binding {
        return Ok(error_page("sso_state_invalid"));
    }
    if let Some(error) = query.get("error") {
        tracing::info!(provider = %name, error = %error, "the provider refused the sign-in");
        return Ok(error_page(if error == "access_denied" {
            "sso_cancelled"
        } else {
            "sso_failed"
        }));
    }
    let http = state.auth.oidc.http();
    // RFC 9207: when the provider names itself in the response, it must be this provider.
    if let Some(iss) = query.get("iss") {
        match provider.issuer(http).await {
            Ok(expected) if &expected == iss => {}
            Ok(_) => return Ok(error_page("sso_failed")),
            Err(_) => return Ok(error_page("sso_unavailable")),
        }
    }
    let Some(code) = query.get("code").filter(|c| !c.is_empty()) else {
        return Ok(error_page("sso_failed"));
    };
    let callback = redirect_uri(&state, &headers, &uri, &name);
    let identity = match provider
        .finish(
            http,
            &callback,
            code,
            flow.pkce_verifier.as_deref().unwrap_or(""),
            flow.nonce.as_deref().unwrap_or(""),
        )
        .await
    {
        Ok(identity) => identity,
        Err(Failure::Unavailable) => return Ok(error_page("sso_unavailable")),
        Err(Failure::Exchange) => return Ok(error_page("sso_failed")),
        Err(Failure::Token) => return Ok(error_page("sso_token_invalid")),
    };
    let user = match account::account_for(&state, &name, &identity, flow.invite_hash).await? {
        Ok(user) => user,
        Err(Refusal::RegistrationClosed) => return Ok(error_page("registration_closed")),
        Err(Refusal::InviteInvalid) => return Ok(error_page("invite_invalid")),
        Err(Refusal::Disabled) => return Ok(error_page("account_disabled")),
    };
    let code = random_secret();
    let handover = SsoPending {
        key_hash: secret_hash(&code),
        kind: PENDING_HANDOVER.into(),
        provider: name,
        nonce: None,
        pkce_verifier: None,
        browser_hash: None,
        invite_hash: None,
        user_id: Some(user.id),
        created_at: now,
        expires_at: now_ms() + HANDOVER_TTL_MS,
    };
    state
        .db
        .run(|s| async move { s.put_sso_pending(&handover).await })
        .await?;
    let clear = binding_cookie(&state, &headers, "", 0);
    Ok(redirect(&format!("/#/sso/{code}"), Some(clear)))
}

/// Exchange a hand-over code (single use, 60 s) for a session, as a password login answers.
#[utoipa::path(
    post,
    path = "/api/auth/oidc/exchange",
    operation_id = "sso_exchange",
    tag = "auth",
    request_body = SsoExchange,
    responses(
        (status = 200, description = "Signed in", body = crate::contract::http::Session,
            headers(("Set-Cookie" = String, description = "The session cookie (HttpOnly, SameSite=Lax)"))),
        (status = 401, response = crate::error::responses::Unauthorized),
        (status = 403, response = crate::error::responses::Forbidden),
        (status = 429, response = crate::error::responses::RateLimited),
    )
)]
pub(crate) async fn exchange(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    uri: Uri,
    JsonObject(body): JsonObject,
) -> Result<Response, ApiError> {
    super::require_own_origin(&headers, &uri, &state.settings)?;
    super::routes::rate_limit_auth(&state, ip)?;
    let mut f = Fields::new(&body);
    let code = f.string("code").unwrap_or_default().to_string();
    f.finish()?;
    let now = now_ms();
    let key = secret_hash(&code);
    let handover = state
        .db
        .run(|s| async move { s.take_sso_pending(PENDING_HANDOVER, &key, now).await })
        .await?;
    let refused = || ApiError::Unauthorized("this sign-in code is unknown, used or expired");
    let Some(user_id) = handover.and_then(|h| h.user_id) else {
        return Err(refused());
    };
    let Some(user) = super::access::load_user(&state, &user_id).await? else {
        return Err(refused());
    };
    if user.status == crate::db::accounts::Status::Disabled {
        return Err(ApiError::Forbidden("this account is disabled"));
    }
    super::routes::start_session(&state, &headers, &user, StatusCode::OK).await
}
