//! The bodies of the accounts routes (`/api/me*`, `/api/admin/*`, `/api/auth/reset`;
//! `docs/protocol.md`, "Accounts and access"), as types, like `contract::http`.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// What an account may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Admin,
    User,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::User => "user",
        }
    }
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "admin" => Some(Role::Admin),
            "user" => Some(Role::User),
            _ => None,
        }
    }
}

/// Whether an account may sign in and act.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Active,
    /// Registered under `approval`; waits for an admin.
    Pending,
    /// Refused by an admin: cannot sign in; the account's messages stay.
    Disabled,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Active => "active",
            Status::Pending => "pending",
            Status::Disabled => "disabled",
        }
    }
    pub fn parse(s: &str) -> Option<Status> {
        match s {
            "active" => Some(Status::Active),
            "pending" => Some(Status::Pending),
            "disabled" => Some(Status::Disabled),
            _ => None,
        }
    }
}

/// A signed-in account: `POST /api/auth/register`, `POST /api/auth/login` and `GET /api/me`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct AccountView {
    pub id: String,
    pub username: String,
    pub role: Role,
    pub status: Status,
}

/// An account as administrators list it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct AdminAccountView {
    pub id: String,
    pub username: String,
    pub role: Role,
    pub status: Status,
    pub created_at: String,
}

/// `GET /api/admin/users`: every account, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct AccountList {
    pub users: Vec<AdminAccountView>,
}

/// `PATCH /api/admin/users/{id}`: a new role, a new status, or both.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct AccessPatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(test, ts(optional))]
    pub role: Option<Role>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(test, ts(optional))]
    pub status: Option<Status>,
}

/// A sign-in session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct SessionView {
    pub id: String,
    pub created_at: String,
    pub expires_at: String,
    /// The session this request was made with.
    pub current: bool,
}

/// `GET /api/me/sessions`, `GET /api/admin/users/{id}/sessions`: open sessions, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct SessionList {
    pub sessions: Vec<SessionView>,
}

/// `POST /api/me/password`. Every other session of the account ends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct PasswordChange {
    pub current: String,
    /// 8-256 characters.
    #[schema(min_length = 8, max_length = 256)]
    pub new: String,
}

/// `POST /api/auth/reset`: the secret of a reset link and the new password.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct PasswordReset {
    pub token: String,
    #[schema(min_length = 8, max_length = 256)]
    pub password: String,
}

/// What a personal API token may do: `read` only reads; `chat` also sends and starts debates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum TokenScope {
    Read,
    Chat,
}

impl TokenScope {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenScope::Read => "read",
            TokenScope::Chat => "chat",
        }
    }
}

/// `POST /api/me/tokens`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct NewApiToken {
    /// 1-64 characters after trimming.
    #[schema(min_length = 1, max_length = 64, example = "backup script")]
    pub name: String,
    pub scope: TokenScope,
}

/// A personal API token, without its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct ApiTokenView {
    pub id: String,
    pub name: String,
    pub scope: TokenScope,
    pub created_at: String,
    pub expires_at: String,
}

/// `POST /api/me/tokens` answer: the secret is shown this once (only its hash is kept).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct CreatedApiToken {
    pub token: String,
    #[serde(flatten)]
    #[cfg_attr(test, ts(flatten))]
    pub view: ApiTokenView,
}

/// `GET /api/me/tokens`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct ApiTokenList {
    pub tokens: Vec<ApiTokenView>,
}

/// An open invite link (its secret is not kept).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct InviteView {
    pub id: String,
    pub created_at: String,
    pub expires_at: String,
}

/// `GET /api/admin/invites`: open invites, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct InviteList {
    pub invites: Vec<InviteView>,
}

/// A new single-use link (invite or password reset): its secret, shown this once, and its
/// path (`/invite/<token>`, `/reset/<token>`); the web UI opens it as `/#/invite/<token>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct CreatedLink {
    pub id: String,
    pub token: String,
    pub path: String,
    pub expires_at: String,
}
