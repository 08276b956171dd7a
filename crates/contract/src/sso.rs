//! The bodies of the single sign-on routes (`GET /api/auth/options`,
//! `POST /api/auth/oidc/exchange`; `docs/protocol.md`, "Single sign-on"), as types.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// How one may sign in on this server: shown before anyone is signed in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct SignInOptions {
    /// Whether `POST /api/auth/login` and `/api/auth/register` take passwords.
    pub password_login: bool,
    /// The registration mode (`open`, `approval`, `invite`, `closed`).
    pub registration: String,
    /// The single sign-on providers, in the settings' order.
    pub providers: Vec<SsoProviderView>,
}

/// A single sign-on provider as the sign-in page shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct SsoProviderView {
    pub name: String,
    /// What its button says.
    pub label: String,
    /// Where the browser goes to sign in (`/auth/oidc/{name}/start`); add `?invite=<token>`
    /// to carry an invite.
    pub start_url: String,
}

/// The hand-over code the browser came back with (`/#/sso/<code>`), exchanged once for a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct SsoExchange {
    pub code: String,
}
