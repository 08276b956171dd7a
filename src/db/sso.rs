//! What the store keeps for single sign-on (OpenID Connect, issue #15): identities linked to
//! accounts by `(issuer, subject)`, and the short-lived, single-use pending rows (a sign-in in
//! progress, a hand-over code). Plain values; the protocol lives in `auth::oidc`.

/// A sign-in started at a provider and not yet finished (`sso_pending.kind`).
pub const PENDING_FLOW: &str = "flow";
/// A hand-over code the web client exchanges for a session.
pub const PENDING_HANDOVER: &str = "handover";

/// One `sso_pending` row. Only hashes of the secrets that travel (the `state`, the hand-over
/// code, the browser-binding cookie, an invite) are kept; the nonce and the PKCE verifier never
/// leave the server, so they are kept as they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SsoPending {
    /// SHA-256 of the `state` (flow) or of the code (hand-over).
    pub key_hash: String,
    pub kind: String,
    /// The provider's name in the settings.
    pub provider: String,
    pub nonce: Option<String>,
    pub pkce_verifier: Option<String>,
    pub browser_hash: Option<String>,
    pub invite_hash: Option<String>,
    /// Whose session a hand-over code opens.
    pub user_id: Option<String>,
    pub created_at: i64,
    pub expires_at: i64,
}

/// An identity at a provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SsoIdentity {
    pub issuer: String,
    pub subject: String,
    /// The provider's name in the settings (for display; the link is the pair above).
    pub provider: String,
}
