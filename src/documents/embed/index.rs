//! Embedding at indexing: once a document's chunks are stored (and it is `indexed`, so
//! full-text retrieval already finds it), its chunks are embedded batch by batch and each
//! vector stored next to its chunk. A failure leaves the rest of the document without vectors
//! (logged with its reason, counted in `document_embedding_failures_total`), never `failed`:
//! the sweeper's backfill ([`Documents::backfill`]) embeds what is missing later, including the
//! chunks of documents indexed before embeddings were configured and those of another model.

use std::sync::Arc;

use super::{Embedder, vector};
use crate::{
    db::{SharedStore, StoreError, embeddings::ChunkText, embeddings::ChunkVector},
    documents::Documents,
};

/// Most chunks the backfill embeds in one sweep, so that the sweeper's other work waits little.
const BACKFILL_PER_SWEEP: usize = 1024;

/// The backend's vector storage, or an error for a backend without it.
fn vectors_of(s: &SharedStore) -> Result<&dyn crate::db::embeddings::EmbeddingStore, StoreError> {
    s.embeddings().ok_or_else(|| {
        StoreError::Other(anyhow::anyhow!(
            "this storage backend does not keep embeddings"
        ))
    })
}

/// What one round did.
enum Round {
    /// Nothing was left to embed.
    Done,
    /// This many chunks got their vectors.
    Embedded(usize),
    /// The request or the store failed (logged and counted).
    Failed,
}

impl Documents {
    /// Embed the chunks of document `id` that have no vector of the model yet.
    pub(in crate::documents) async fn embed_document(&self, id: &str) {
        let Some(embedder) = self.embedder.clone() else {
            return;
        };
        let mut embedded = 0;
        loop {
            match self.embed_round(&embedder, Some(id)).await {
                Round::Embedded(n) => embedded += n,
                Round::Done => break,
                Round::Failed => return,
            }
        }
        if embedded > 0 {
            tracing::info!(
                document = id,
                chunks = embedded,
                model = embedder.identity(),
                "document embedded"
            );
        }
    }

    /// Embed chunks of any document that lack a vector of the model, at most
    /// [`BACKFILL_PER_SWEEP`]; whether some may remain.
    pub(in crate::documents) async fn backfill(&self) -> bool {
        let Some(embedder) = self.embedder.clone() else {
            return false;
        };
        let mut embedded = 0;
        while embedded < BACKFILL_PER_SWEEP {
            match self.embed_round(&embedder, None).await {
                Round::Embedded(n) => embedded += n,
                Round::Done | Round::Failed => return false,
            }
        }
        tracing::info!(
            chunks = embedded,
            model = embedder.identity(),
            "embeddings backfill went on"
        );
        true
    }

    /// One batch: read chunks without a vector, embed them, store their vectors.
    async fn embed_round(&self, embedder: &Arc<Embedder>, document: Option<&str>) -> Round {
        let model = embedder.identity().to_string();
        let limit = embedder.batch as i64;
        let doc = document.map(str::to_string);
        let m = model.clone();
        let chunks = self
            .db
            .run(|s| async move { vectors_of(&s)?.unembedded(&m, doc.as_deref(), limit).await })
            .await;
        let chunks: Vec<ChunkText> = match chunks {
            Ok(c) if c.is_empty() => return Round::Done,
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the chunks to embed; the sweeper tries again");
                return Round::Failed;
            }
        };
        let texts: Vec<String> = chunks.iter().map(embedded_text).collect();
        let vectors = match embedder.passages(&texts).await {
            Ok(v) => v,
            Err(e) => {
                self.metrics.embedding_failures.add(chunks.len() as u64);
                tracing::warn!(
                    document = chunks[0].document_id.as_str(),
                    chunks = chunks.len(),
                    error = %e,
                    "cannot embed passages; they are found by full text only until the backfill embeds them"
                );
                return Round::Failed;
            }
        };
        let rows: Vec<ChunkVector> = chunks
            .iter()
            .zip(&vectors)
            .map(|(c, v)| ChunkVector {
                id: c.id,
                vector: vector::to_bytes(v),
            })
            .collect();
        let n = rows.len();
        let stored = self
            .db
            .run(|s| async move { vectors_of(&s)?.store_vectors(&model, &rows).await })
            .await;
        match stored {
            Ok(_) => {
                self.metrics.embedded_chunks.add(n as u64);
                Round::Embedded(n)
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot store embeddings; the sweeper tries again");
                Round::Failed
            }
        }
    }
}

/// What is embedded for a chunk: its heading (when it has one) above its text.
fn embedded_text(c: &ChunkText) -> String {
    match c.heading.as_deref().filter(|h| !h.trim().is_empty()) {
        Some(h) => format!("{h}\n{}", c.text),
        None => c.text.clone(),
    }
}
