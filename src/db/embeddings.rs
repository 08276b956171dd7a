//! Embeddings of document chunks as stored (issue #19, migration 0011): each chunk's vector,
//! little-endian f32 of unit length, in `document_chunks.embedding`, with the identity of the
//! model that made it in `embedding_model` (`provider:model[:dimensions]`). [`EmbeddingStore`]
//! is what the SQL backends offer for them (`sql/embeddings.rs`); like [`super::documents`],
//! every read for retrieval checks inside the query that the asker is a member of the thread.

use async_trait::async_trait;

use super::{StoreError, documents::Passage};

type Result<T> = std::result::Result<T, StoreError>;

/// A chunk that needs a vector: its id and what is embedded (heading and text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkText {
    pub id: i64,
    pub document_id: String,
    pub heading: Option<String>,
    pub text: String,
}

/// A chunk's stored vector (little-endian f32 bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkVector {
    pub id: i64,
    pub vector: Vec<u8>,
}

/// Storage of chunk vectors (the SQL backends).
#[async_trait]
pub trait EmbeddingStore: Send + Sync {
    /// Chunks of indexed, not deleted documents without a vector of `model` (none, or one of
    /// another model), those of `document_id` only when given, in id order, at most `limit`.
    async fn unembedded(
        &self,
        model: &str,
        document_id: Option<&str>,
        limit: i64,
    ) -> Result<Vec<ChunkText>>;

    /// Store each chunk's vector, made by `model`, in one transaction (chunks deleted
    /// meanwhile are skipped); how many were stored.
    async fn store_vectors(&self, model: &str, vectors: &[ChunkVector]) -> Result<u64>;

    /// Every vector of `model` of thread `thread_id`'s indexed documents, if `user_id` is a
    /// member of it (checked inside the query), else none.
    async fn thread_vectors(
        &self,
        thread_id: &str,
        user_id: &str,
        model: &str,
    ) -> Result<Vec<ChunkVector>>;

    /// The passages of these chunks of thread `thread_id`'s indexed documents, if `user_id` is
    /// a member of it, in no particular order (score 0).
    async fn passages_by_id(
        &self,
        thread_id: &str,
        user_id: &str,
        ids: &[i64],
    ) -> Result<Vec<Passage>>;
}
