-- Per-user memory (issue #19, docs/memories.md): facts a user stated and thread summaries,
-- kept only for users who opted in, each visible and editable by its owner alone.
-- memory_optin: one row per user who ever chose; no row (or enabled = 0) means off;
-- updated_at: when it was last turned on or off (a message older than that is not captured).
CREATE TABLE memory_optin (
    user_id TEXT PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    enabled INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
-- kind: fact | summary. dedupe_key: 'fact:' and the fact's normalised text, or 'summary:' and
-- the thread id (one summary per thread, replaced when the thread is summarised again); unique
-- per user, so the same fact stated twice, or captured on two instances, is kept once.
-- source_thread_id / source_message_id: where it was captured (none for one added by hand).
CREATE TABLE memories (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    text TEXT NOT NULL,
    dedupe_key TEXT NOT NULL,
    source_thread_id TEXT,
    source_message_id TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE UNIQUE INDEX memories_dedupe ON memories(user_id, dedupe_key);
-- Listing pages go newest first by id (UUID v7: time ordered).
CREATE INDEX memories_user ON memories(user_id, id);
