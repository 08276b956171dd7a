-- Documents of a thread (issue #19, docs/documents.md): the file itself in 1 MiB parts (every
-- instance reads it, backups hold it), its state, and its text in chunks indexed for full-text
-- retrieval. A chunk's embedding (when an embeddings model is configured) will be one more
-- column of `document_chunks` (`embedding BYTEA`, little-endian f32, with `embedding_model`),
-- added by a later migration; nothing here needs to change for it.
CREATE TABLE documents (
    id TEXT PRIMARY KEY,
    thread_id TEXT NOT NULL REFERENCES threads(id) ON DELETE CASCADE,
    uploader_id TEXT NOT NULL,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    mime TEXT NOT NULL,
    size BIGINT NOT NULL DEFAULT 0,
    -- uploading (not listed yet) | processing | indexed | failed
    status TEXT NOT NULL,
    -- uploading | queued | extracting | indexed | failed
    stage TEXT NOT NULL,
    error TEXT,
    pages BIGINT,
    chunks BIGINT,
    -- When an instance took the extraction (a lease: a stale one is taken again).
    claimed_at BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    deleted_at BIGINT
);
CREATE INDEX documents_thread ON documents(thread_id, created_at);
CREATE INDEX documents_uploader ON documents(uploader_id, deleted_at);
CREATE INDEX documents_unfinished ON documents(status, updated_at)
    WHERE status IN ('uploading', 'processing');
CREATE TABLE document_parts (
    document_id TEXT NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
    part_no BIGINT NOT NULL,
    bytes BYTEA NOT NULL,
    PRIMARY KEY (document_id, part_no)
);
-- The full-text index is a generated tsvector with its GIN index, on the chunk row itself.
CREATE TABLE document_chunks (
    id BIGSERIAL PRIMARY KEY,
    document_id TEXT NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
    thread_id TEXT NOT NULL,
    ord BIGINT NOT NULL,
    page BIGINT,
    heading TEXT,
    text TEXT NOT NULL,
    search tsvector GENERATED ALWAYS AS (
        to_tsvector('english'::regconfig, coalesce(heading, '') || ' ' || text)
    ) STORED
);
CREATE UNIQUE INDEX document_chunks_ord ON document_chunks(document_id, ord);
CREATE INDEX document_chunks_page ON document_chunks(document_id, page);
CREATE INDEX document_chunks_thread ON document_chunks(thread_id);
CREATE INDEX document_chunks_search ON document_chunks USING GIN (search);
