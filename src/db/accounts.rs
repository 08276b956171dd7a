//! What the store keeps about accounts and access (issue #15): roles, account status, the
//! registration request and its outcomes, session and API-token rows, invite and reset links.
//! Plain values; the rules that use them live in `auth`.

pub use crate::contract::accounts::{Role, Status};
pub use crate::settings::Registration;

/// An account as admins see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub id: String,
    pub username: String,
    pub role: Role,
    pub status: Status,
    pub created_at: i64,
}

/// A request to create an account. The store decides, inside one transaction, whether this is
/// the first account ever (then it is an active admin, whatever the mode), and otherwise
/// applies `mode` (consuming the invite whose SHA-256 is `invite_hash` under `Invite`).
#[derive(Debug, Clone)]
pub struct NewAccount {
    pub id: String,
    pub username: String,
    /// The case-folded username (unique).
    pub key: String,
    pub password_hash: String,
    pub mode: Registration,
    pub invite_hash: Option<String>,
    /// Make it an admin whatever it is (the `emergence admin create-user --admin` CLI).
    pub admin: bool,
    pub now: i64,
}

/// What became of a [`NewAccount`]. Nothing is stored unless it is `Created`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Registered {
    Created(Account),
    /// The username is taken (only answered once the mode allowed the registration).
    Taken,
    /// The mode is `closed` (and this is not the first account).
    Closed,
    /// The mode is `invite` and the invite is missing, unknown, used, revoked or expired.
    InviteInvalid,
}

/// A change an admin makes to an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessChange {
    Role(Role),
    Status(Status),
}

/// What became of an [`AccessChange`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessOutcome {
    Changed(Account),
    NotFound,
    /// It would leave no active admin; nothing changed.
    LastAdmin,
}

/// `session` (a sign-in) or `api` (a personal API token).
pub const KIND_SESSION: &str = "session";
pub const KIND_API: &str = "api";

/// A session or API-token row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRow {
    pub id: String,
    pub user_id: String,
    pub kind: String,
    pub name: Option<String>,
    pub scope: Option<String>,
    pub token_hash: Option<String>,
    pub created_at: i64,
    pub expires_at: i64,
}

/// `invite` or `reset`.
pub const LINK_INVITE: &str = "invite";
pub const LINK_RESET: &str = "reset";

/// A single-use link an admin hands over (invite or password reset).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountLink {
    pub id: String,
    pub purpose: String,
    pub token_hash: String,
    /// Whose password a reset link sets.
    pub user_id: Option<String>,
    pub created_by: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

/// The SHA-256 of a secret, hex: what is stored instead of the secret.
pub fn secret_hash(secret: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(secret.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A fresh random secret (32 bytes, base64url): invite and reset links.
pub fn random_secret() -> String {
    use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
    let mut buf = [0u8; 32];
    getrandom::fill(&mut buf).expect("the OS random source works");
    URL_SAFE_NO_PAD.encode(buf)
}
