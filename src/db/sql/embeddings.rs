//! The SQL of chunk embeddings (issue #19, migration 0011), written once for both engines: the
//! vector is a `BLOB` / `BYTEA` of little-endian f32 beside its chunk. The two reads that serve
//! retrieval repeat the passage query's checks (indexed, not deleted document, live thread, the
//! asker a member), so no vector or passage of a thread the asker may not read leaves the
//! database.

use async_trait::async_trait;
use sqlx::{ColumnIndex, Decode, Encode, Executor, IntoArguments, Row, Type};

use super::{Dialect, Result, SqlStore};
use crate::db::{
    documents::{Chunk, Passage},
    embeddings::{ChunkText, ChunkVector, EmbeddingStore},
};

const UNEMBEDDED: &str = "SELECT c.id, c.document_id, c.heading, c.text FROM document_chunks c \
     JOIN documents d ON d.id = c.document_id AND d.status = 'indexed' AND d.deleted_at IS NULL \
     WHERE (c.embedding_model IS NULL OR c.embedding_model <> $1) \
       AND ($2 IS NULL OR c.document_id = $2) \
     ORDER BY c.id ASC LIMIT $3";

const THREAD_VECTORS: &str = "SELECT c.id, c.embedding FROM document_chunks c \
     JOIN documents d ON d.id = c.document_id AND d.status = 'indexed' AND d.deleted_at IS NULL \
     JOIN threads t ON t.id = d.thread_id AND t.deleted_at IS NULL \
     WHERE c.thread_id = $1 AND c.embedding_model = $3 AND c.embedding IS NOT NULL \
       AND EXISTS (SELECT 1 FROM thread_members m WHERE m.thread_id = $1 AND m.user_id = $2)";

/// Followed by `($3, $4, ...)`: one placeholder per id.
const PASSAGES_BY_ID: &str = "SELECT c.document_id, d.name, c.ord, c.page, c.heading, c.text, \
     c.id FROM document_chunks c \
     JOIN documents d ON d.id = c.document_id AND d.status = 'indexed' AND d.deleted_at IS NULL \
     JOIN threads t ON t.id = d.thread_id AND t.deleted_at IS NULL \
     WHERE c.thread_id = $1 \
       AND EXISTS (SELECT 1 FROM thread_members m WHERE m.thread_id = $1 AND m.user_id = $2) \
       AND c.id IN ";

/// Most ids looked up at once (retrieval asks for a few dozen).
const MAX_IDS: usize = 200;

#[async_trait]
impl<DB> EmbeddingStore for SqlStore<DB>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    for<'q> &'q str: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> String: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> Option<String>: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> Option<i64>: Decode<'q, DB> + Type<DB>,
    for<'q> &'q [u8]: Encode<'q, DB> + Type<DB>,
    for<'q> Vec<u8>: Decode<'q, DB> + Type<DB>,
    usize: ColumnIndex<DB::Row>,
{
    async fn unembedded(
        &self,
        model: &str,
        document_id: Option<&str>,
        limit: i64,
    ) -> Result<Vec<ChunkText>> {
        let rows = self
            .fetch_all(
                self.q(UNEMBEDDED)
                    .bind(model.to_string())
                    .bind(document_id.map(str::to_string))
                    .bind(limit),
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(ChunkText {
                    id: r.try_get(0)?,
                    document_id: r.try_get(1)?,
                    heading: r.try_get(2)?,
                    text: r.try_get(3)?,
                })
            })
            .collect()
    }

    async fn store_vectors(&self, model: &str, vectors: &[ChunkVector]) -> Result<u64> {
        let mut tx = self.begin_write().await?;
        let mut stored = 0;
        for v in vectors {
            let done = sqlx::query(
                "UPDATE document_chunks SET embedding = $1, embedding_model = $2 WHERE id = $3 \
                 RETURNING id",
            )
            .persistent(!self.pooled)
            .bind(v.vector.as_slice())
            .bind(model)
            .bind(v.id)
            .fetch_optional(&mut *tx)
            .await?;
            stored += u64::from(done.is_some());
        }
        tx.commit().await?;
        Ok(stored)
    }

    async fn thread_vectors(
        &self,
        thread_id: &str,
        user_id: &str,
        model: &str,
    ) -> Result<Vec<ChunkVector>> {
        let rows = self
            .fetch_all(
                self.q(THREAD_VECTORS)
                    .bind(thread_id.to_string())
                    .bind(user_id.to_string())
                    .bind(model.to_string()),
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(ChunkVector {
                    id: r.try_get(0)?,
                    vector: r.try_get(1)?,
                })
            })
            .collect()
    }

    async fn passages_by_id(
        &self,
        thread_id: &str,
        user_id: &str,
        ids: &[i64],
    ) -> Result<Vec<Passage>> {
        let ids = &ids[..ids.len().min(MAX_IDS)];
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let marks: Vec<String> = (0..ids.len()).map(|i| format!("${}", i + 3)).collect();
        let sql = format!("{PASSAGES_BY_ID}({})", marks.join(", "));
        let mut statement = self
            .q_built(sql)
            .bind(thread_id.to_string())
            .bind(user_id.to_string());
        for id in ids {
            statement = statement.bind(*id);
        }
        let rows = self.fetch_all(statement).await?;
        rows.iter()
            .map(|r| {
                Ok(Passage {
                    document_id: r.try_get(0)?,
                    name: r.try_get(1)?,
                    chunk: Chunk {
                        ord: r.try_get(2)?,
                        page: r.try_get(3)?,
                        heading: r.try_get(4)?,
                        text: r.try_get(5)?,
                    },
                    score: 0.0,
                    chunk_id: r.try_get(6)?,
                })
            })
            .collect()
    }
}
