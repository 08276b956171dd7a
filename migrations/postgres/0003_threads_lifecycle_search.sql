-- Threads managed, searched and taken away (issue 17).
-- Soft delete: a deleted thread is invisible at once and purged after the retention period.
ALTER TABLE threads ADD COLUMN deleted_at BIGINT;
CREATE INDEX threads_deleted_at ON threads(deleted_at) WHERE deleted_at IS NOT NULL;
-- Archive and pin are each member's own view of the thread.
ALTER TABLE thread_members ADD COLUMN archived_at BIGINT;
ALTER TABLE thread_members ADD COLUMN pinned_at BIGINT;
-- Full-text search: one tsvector with both the English and the French configuration, computed
-- by the server in the statement that stores the message (a generated column), with a GIN index.
-- The migration fills it for every existing message.
ALTER TABLE messages ADD COLUMN search tsvector GENERATED ALWAYS AS (
    to_tsvector('english'::regconfig, body) || to_tsvector('french'::regconfig, body)
) STORED;
CREATE INDEX messages_search ON messages USING GIN (search);
-- Imported threads, by the hash of what was imported (a second import creates nothing).
CREATE TABLE thread_imports (
    user_id TEXT NOT NULL REFERENCES users(id),
    content_hash TEXT NOT NULL,
    thread_id TEXT NOT NULL,
    imported_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, content_hash)
);
