-- Threads managed, searched and taken away (issue 17).
-- Soft delete: a deleted thread is invisible at once and purged after the retention period.
ALTER TABLE threads ADD COLUMN deleted_at INTEGER;
CREATE INDEX threads_deleted_at ON threads(deleted_at) WHERE deleted_at IS NOT NULL;
-- Archive and pin are each member's own view of the thread.
ALTER TABLE thread_members ADD COLUMN archived_at INTEGER;
ALTER TABLE thread_members ADD COLUMN pinned_at INTEGER;
-- Full-text search: FTS5 with the Porter stemmer over Unicode tokens without diacritics
-- (English stemming; French is matched by prefix on its Snowball stem, see docs/search.md).
-- A table of its own (not external content over `messages`, whose implicit rowids VACUUM may
-- renumber); rows are written in the same transaction as the message.
CREATE VIRTUAL TABLE message_search USING fts5(
    body,
    message_id UNINDEXED,
    thread_id UNINDEXED,
    tokenize = 'porter unicode61 remove_diacritics 2'
);
INSERT INTO message_search (body, message_id, thread_id) SELECT body, id, thread_id FROM messages;
-- Imported threads, by the hash of what was imported (a second import creates nothing).
CREATE TABLE thread_imports (
    user_id TEXT NOT NULL REFERENCES users(id),
    content_hash TEXT NOT NULL,
    thread_id TEXT NOT NULL,
    imported_at INTEGER NOT NULL,
    PRIMARY KEY (user_id, content_hash)
);
