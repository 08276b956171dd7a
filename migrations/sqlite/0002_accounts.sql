-- Accounts and access (issue #15): roles, account status, API tokens, invite and reset links.
ALTER TABLE users ADD COLUMN role TEXT NOT NULL DEFAULT 'user';
ALTER TABLE users ADD COLUMN status TEXT NOT NULL DEFAULT 'active';
-- The first account ever created is the admin. A database that already has users promotes its
-- oldest one, and the kv row records who was first (registration inserts it to claim the role).
UPDATE users SET role = 'admin'
    WHERE id = (SELECT id FROM users ORDER BY created_at, id LIMIT 1);
INSERT INTO kv (key, value)
    SELECT 'first_user', id FROM users ORDER BY created_at, id LIMIT 1;
-- A session row is a browser session (kind 'session') or a personal API token (kind 'api',
-- with its name, its scope and the SHA-256 of its secret); both are revoked the same way.
ALTER TABLE sessions ADD COLUMN kind TEXT NOT NULL DEFAULT 'session';
ALTER TABLE sessions ADD COLUMN name TEXT;
ALTER TABLE sessions ADD COLUMN scope TEXT;
ALTER TABLE sessions ADD COLUMN token_hash TEXT;
CREATE INDEX sessions_user ON sessions(user_id);
-- Single-use links an admin hands over: invites (purpose 'invite') and password resets
-- ('reset', for user_id). Only the SHA-256 of the secret is kept.
CREATE TABLE account_links (
    id TEXT PRIMARY KEY,
    purpose TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    user_id TEXT REFERENCES users(id),
    created_by TEXT NOT NULL REFERENCES users(id),
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at INTEGER,
    used_by TEXT,
    revoked_at INTEGER
);
