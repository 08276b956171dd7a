-- Embeddings of document chunks (issue #19, docs/documents.md "Hybrid retrieval"): the vector of
-- a chunk as little-endian f32 (unit length), next to the chunk, with what made it
-- (`provider:model[:dimensions]`): a chunk whose vector was made by another model is embedded
-- again by the backfill. Same columns on both backends (pgvector is not used: a thread's
-- documents are few enough for an exact cosine scan in the server).
ALTER TABLE document_chunks ADD COLUMN embedding BYTEA;
ALTER TABLE document_chunks ADD COLUMN embedding_model TEXT;
-- The cosine scan reads one thread's vectors (document_chunks_thread exists since 0009); the
-- backfill looks for chunks of another model.
CREATE INDEX document_chunks_embedding_model ON document_chunks(embedding_model);
