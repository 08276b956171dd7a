-- Regenerate requests (src/regenerate.rs), one per (thread, client_id): the first request
-- starts a new version of an agent answer; a repeat finds its row and starts nothing.
CREATE TABLE regenerations (
    thread_id TEXT NOT NULL REFERENCES threads(id),
    client_id TEXT NOT NULL,
    requester_id TEXT NOT NULL,
    message_id TEXT NOT NULL,
    version_of TEXT NOT NULL,
    agent_id TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (thread_id, client_id)
);
