-- Personas and provider connections managed live by admins (issue #18).
-- A provider connection's key is stored encrypted (ChaCha20-Poly1305, a key derived with HKDF
-- from the server's signing key, a random nonce per write, the connection id as associated
-- data): key_cipher and key_nonce are base64; key_version names the derivation scheme;
-- key_hint keeps at most the key's last 4 characters, for the admin UI.
CREATE TABLE provider_connections (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    base_url TEXT,
    key_cipher TEXT,
    key_nonce TEXT,
    key_version INTEGER NOT NULL DEFAULT 0,
    key_hint TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
-- Personas defined in the admin UI; agents of the settings file with the same id or name win.
-- temperature is kept in thousandths (an integer on both engines).
CREATE TABLE agents (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    name_key TEXT NOT NULL UNIQUE,
    colour TEXT,
    system_prompt TEXT NOT NULL,
    connection_id TEXT REFERENCES provider_connections(id),
    model TEXT NOT NULL,
    temperature_milli INTEGER NOT NULL,
    max_tokens INTEGER NOT NULL,
    fallback_model TEXT,
    enabled INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
-- One row; every change to either table above adds one, in the same transaction, so that each
-- instance notices a change (deletions included) by reading one number.
CREATE TABLE agents_version (
    id INTEGER PRIMARY KEY,
    version INTEGER NOT NULL
);
INSERT INTO agents_version (id, version) VALUES (1, 0);
