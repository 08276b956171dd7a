-- Single sign-on with OpenID Connect (issue #15).
-- An account is linked to an identity by (issuer, subject) only, never by e-mail: the pair is
-- what an OpenID provider guarantees stable and unique for one person.
CREATE TABLE sso_identities (
    issuer TEXT NOT NULL,
    subject TEXT NOT NULL,
    user_id TEXT NOT NULL REFERENCES users(id),
    provider TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (issuer, subject)
);
CREATE INDEX sso_identities_user ON sso_identities(user_id);
-- Short-lived, single-use server-side state, kept in the database so any instance can finish
-- what another started: a sign-in in progress (kind 'flow', keyed by the SHA-256 of its
-- `state`, with its nonce, PKCE verifier and the hash of the browser-binding cookie), and a
-- hand-over code (kind 'handover', keyed by the SHA-256 of the code) the web client exchanges
-- for a session once back from the provider.
CREATE TABLE sso_pending (
    key_hash TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    provider TEXT NOT NULL,
    nonce TEXT,
    pkce_verifier TEXT,
    browser_hash TEXT,
    invite_hash TEXT,
    user_id TEXT,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX sso_pending_expiry ON sso_pending(expires_at);
