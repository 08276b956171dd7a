//! The SQL of documents (issue #19), written once for both engines; only the passage query
//! differs (SQLite's FTS5 `document_chunk_search` ranked by `bm25`, PostgreSQL's generated
//! `document_chunks.search` tsvector ranked by `ts_rank`). Both check inside the query that the
//! asker is a member of the thread and that neither the thread nor the document is deleted, so
//! a passage the asker may not read never leaves the database.

use async_trait::async_trait;
use sqlx::{ColumnIndex, Decode, Encode, Executor, IntoArguments, Row, Type};

use super::{Dialect, Result, SqlStore};
use crate::db::documents::{Chunk, Document, DocumentStore, NewDocument, Passage, PassageQuery};

/// The columns of a document, in the order [`document_row`] reads them: every query that
/// reads documents selects (or returns) exactly these.
const DOCUMENT_COLUMNS: &str = "id, thread_id, uploader_id, name, kind, mime, size, \
     status, stage, error, pages, chunks, created_at, updated_at";

/// SQLite: any of the terms (an FTS5 `OR` query, $1), best `bm25` first. `+c.thread_id` keeps
/// the full-text index driving the query: with `document_chunks_thread` (migration 0011, for the
/// vector scan) the planner would otherwise walk the thread's chunks and run the `MATCH` once
/// per chunk (seconds with 10,000 documents in a thread; docs/performance.md, section 7).
const SQLITE_PASSAGES: &str = "SELECT c.document_id, d.name, c.ord, c.page, c.heading, c.text, \
     -bm25(document_chunk_search) AS score, c.id \
     FROM document_chunk_search s \
     JOIN document_chunks c ON c.id = s.rowid \
     JOIN documents d ON d.id = c.document_id AND d.status = 'indexed' AND d.deleted_at IS NULL \
     JOIN threads t ON t.id = d.thread_id AND t.deleted_at IS NULL \
     WHERE document_chunk_search MATCH $1 AND +c.thread_id = $2 \
       AND EXISTS (SELECT 1 FROM thread_members m WHERE m.thread_id = $2 AND m.user_id = $3) \
     ORDER BY score DESC, c.document_id ASC, c.ord ASC LIMIT $4";

/// PostgreSQL: any of the terms (a `to_tsquery` `|` query, $1), best `ts_rank` first.
const POSTGRES_PASSAGES: &str = "SELECT c.document_id, d.name, c.ord, c.page, c.heading, c.text, \
     ts_rank(c.search, q.q)::float8 AS score, c.id \
     FROM (SELECT to_tsquery('english'::regconfig, $1) AS q) q \
     JOIN document_chunks c ON c.search @@ q.q \
     JOIN documents d ON d.id = c.document_id AND d.status = 'indexed' AND d.deleted_at IS NULL \
     JOIN threads t ON t.id = d.thread_id AND t.deleted_at IS NULL \
     WHERE c.thread_id = $2 \
       AND EXISTS (SELECT 1 FROM thread_members m WHERE m.thread_id = $2 AND m.user_id = $3) \
     ORDER BY score DESC, c.document_id ASC, c.ord ASC LIMIT $4";

/// Read a document row ([`DOCUMENT_COLUMNS`]).
fn document_row<R>(row: &R) -> Result<Document>
where
    R: Row,
    usize: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(Document {
        id: row.try_get(0)?,
        thread_id: row.try_get(1)?,
        uploader_id: row.try_get(2)?,
        name: row.try_get(3)?,
        kind: row.try_get(4)?,
        mime: row.try_get(5)?,
        size: row.try_get(6)?,
        status: row.try_get(7)?,
        stage: row.try_get(8)?,
        error: row.try_get(9)?,
        pages: row.try_get(10)?,
        chunks: row.try_get(11)?,
        created_at: row.try_get(12)?,
        updated_at: row.try_get(13)?,
    })
}

/// Read a passage's `ord, page, heading, text`, starting at column `first`.
fn chunk_row<R>(row: &R, first: usize) -> Result<Chunk>
where
    R: Row,
    usize: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(Chunk {
        ord: row.try_get(first)?,
        page: row.try_get(first + 1)?,
        heading: row.try_get(first + 2)?,
        text: row.try_get(first + 3)?,
    })
}

/// The query text of the terms for this engine: FTS5 quoted strings joined by `OR`, or
/// `to_tsquery` words joined by `|` (the terms are plain letters and digits).
fn match_expression(backend: &str, terms: &[String]) -> String {
    if backend == "postgres" {
        terms.join(" | ")
    } else {
        terms
            .iter()
            .map(|t| format!("\"{}\"", t.replace('"', "")))
            .collect::<Vec<_>>()
            .join(" OR ")
    }
}

#[async_trait]
impl<DB> DocumentStore for SqlStore<DB>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    for<'q> &'q str: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> String: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> bool: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> Option<&'q str>: Encode<'q, DB> + Type<DB>,
    for<'q> Option<String>: Encode<'q, DB> + Type<DB>,
    for<'q> Option<i64>: Encode<'q, DB> + Type<DB>,
    for<'q> &'q [u8]: Encode<'q, DB> + Type<DB>,
    for<'q> Vec<u8>: Decode<'q, DB> + Type<DB>,
    for<'q> f64: Decode<'q, DB> + Type<DB>,
    usize: ColumnIndex<DB::Row>,
{
    async fn create_document(&self, d: &NewDocument) -> Result<()> {
        self.execute(
            self.q(
                "INSERT INTO documents (id, thread_id, uploader_id, name, kind, mime, size, \
                 status, stage, created_at, updated_at, storage) \
                 VALUES ($1, $2, $3, $4, $5, $6, 0, 'uploading', 'uploading', $7, $7, $8)",
            )
            .bind(d.id.as_str())
            .bind(d.thread_id.as_str())
            .bind(d.uploader_id.as_str())
            .bind(d.name.as_str())
            .bind(d.kind.as_str())
            .bind(d.mime.as_str())
            .bind(d.created_at)
            .bind(d.storage.as_str()),
        )
        .await
    }

    async fn file_storage(&self, document_id: &str) -> Result<Option<String>> {
        let row = self
            .fetch_optional(
                self.q("SELECT storage FROM documents WHERE id = $1 AND deleted_at IS NULL")
                    .bind(document_id),
            )
            .await?;
        Ok(row.map(|r| r.try_get::<String, _>(0)).transpose()?)
    }

    async fn put_part(&self, document_id: &str, part_no: i64, bytes: &[u8]) -> Result<()> {
        self.execute(
            self.q("INSERT INTO document_parts (document_id, part_no, bytes) VALUES ($1, $2, $3)")
                .bind(document_id)
                .bind(part_no)
                .bind(bytes),
        )
        .await
    }

    async fn finish_upload(
        &self,
        document_id: &str,
        size: i64,
        now: i64,
    ) -> Result<Option<Document>> {
        let sql = format!(
            "UPDATE documents SET size = $2, status = 'processing', stage = 'queued', \
             updated_at = $3 WHERE id = $1 AND status = 'uploading' AND deleted_at IS NULL \
             RETURNING {DOCUMENT_COLUMNS}"
        );
        let row = self
            .fetch_optional(self.q_built(sql).bind(document_id).bind(size).bind(now))
            .await?;
        row.as_ref().map(document_row).transpose()
    }

    async fn discard_upload(&self, document_id: &str) -> Result<()> {
        self.execute(
            self.q("DELETE FROM documents WHERE id = $1 AND status = 'uploading'")
                .bind(document_id),
        )
        .await
    }

    async fn thread_documents(&self, thread_id: &str) -> Result<Vec<Document>> {
        let sql = format!(
            "SELECT {DOCUMENT_COLUMNS} FROM documents \
             WHERE thread_id = $1 AND deleted_at IS NULL AND status <> 'uploading' \
             ORDER BY created_at ASC, id ASC"
        );
        let rows = self.fetch_all(self.q_built(sql).bind(thread_id)).await?;
        rows.iter().map(document_row).collect()
    }

    async fn document(&self, thread_id: &str, document_id: &str) -> Result<Option<Document>> {
        let sql = format!(
            "SELECT {DOCUMENT_COLUMNS} FROM documents \
             WHERE thread_id = $1 AND id = $2 AND deleted_at IS NULL AND status <> 'uploading'"
        );
        let row = self
            .fetch_optional(self.q_built(sql).bind(thread_id).bind(document_id))
            .await?;
        row.as_ref().map(document_row).transpose()
    }

    async fn stored_bytes(&self, uploader_id: &str) -> Result<i64> {
        // Uploads under way count what they stored so far. PostgreSQL sums BIGINT as NUMERIC:
        // the CAST makes it a BIGINT again. An aggregate always returns its one row.
        let row = self
            .fetch_optional(
                self.q(
                    "SELECT CAST(coalesce(sum(CASE WHEN d.status = 'uploading' THEN \
                      (SELECT coalesce(sum(length(p.bytes)), 0) FROM document_parts p \
                       WHERE p.document_id = d.id) ELSE d.size END), 0) AS BIGINT) \
                    FROM documents d WHERE d.uploader_id = $1 AND d.deleted_at IS NULL",
                )
                .bind(uploader_id),
            )
            .await?;
        Ok(row
            .map(|r| r.try_get::<i64, _>(0))
            .transpose()?
            .unwrap_or(0))
    }

    async fn delete_document(
        &self,
        thread_id: &str,
        document_id: &str,
        now: i64,
    ) -> Result<Option<Document>> {
        let mut tx = self.begin_write().await?;
        let sql = format!(
            "UPDATE documents SET deleted_at = $3, updated_at = $3 \
             WHERE thread_id = $1 AND id = $2 AND deleted_at IS NULL AND status <> 'uploading' \
             RETURNING {DOCUMENT_COLUMNS}"
        );
        let row = self
            .q_built(sql)
            .bind(thread_id)
            .bind(document_id)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let doc = document_row(&row)?;
        for sql in [
            "DELETE FROM document_chunks WHERE document_id = $1",
            "DELETE FROM document_parts WHERE document_id = $1",
        ] {
            self.q(sql).bind(document_id).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(Some(doc))
    }

    async fn part(&self, document_id: &str, part_no: i64) -> Result<Option<Vec<u8>>> {
        let row = self
            .fetch_optional(
                self.q(
                    "SELECT p.bytes FROM document_parts p JOIN documents d ON d.id = p.document_id \
                    WHERE p.document_id = $1 AND p.part_no = $2 AND d.deleted_at IS NULL",
                )
                .bind(document_id)
                .bind(part_no),
            )
            .await?;
        Ok(row.map(|r| r.try_get::<Vec<u8>, _>(0)).transpose()?)
    }

    async fn claim_extraction(
        &self,
        document_id: &str,
        now: i64,
        stale_before: i64,
    ) -> Result<Option<Document>> {
        let sql = format!(
            "UPDATE documents SET stage = 'extracting', claimed_at = $2, updated_at = $2 \
             WHERE id = $1 AND status = 'processing' AND deleted_at IS NULL \
               AND (claimed_at IS NULL OR claimed_at < $3) \
             RETURNING {DOCUMENT_COLUMNS}"
        );
        let row = self
            .fetch_optional(
                self.q_built(sql)
                    .bind(document_id)
                    .bind(now)
                    .bind(stale_before),
            )
            .await?;
        row.as_ref().map(document_row).transpose()
    }

    async fn unclaimed(&self, stale_before: i64, limit: i64) -> Result<Vec<String>> {
        let rows = self
            .fetch_all(
                self.q(
                    "SELECT id FROM documents WHERE status = 'processing' AND deleted_at IS NULL \
                    AND (claimed_at IS NULL OR claimed_at < $1) ORDER BY updated_at ASC LIMIT $2",
                )
                .bind(stale_before)
                .bind(limit),
            )
            .await?;
        rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
    }

    async fn finish_extraction(
        &self,
        document_id: &str,
        chunks: &[Chunk],
        pages: Option<i64>,
        now: i64,
    ) -> Result<Option<Document>> {
        let mut tx = self.begin_write().await?;
        let sql = format!(
            "UPDATE documents SET status = 'indexed', stage = 'indexed', error = NULL, \
             pages = $2, chunks = $3, updated_at = $4 \
             WHERE id = $1 AND status = 'processing' AND deleted_at IS NULL \
             RETURNING {DOCUMENT_COLUMNS}"
        );
        let row = self
            .q_built(sql)
            .bind(document_id)
            .bind(pages)
            .bind(chunks.len() as i64)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let doc = document_row(&row)?;
        // A retried extraction replaces what an interrupted one may have left.
        self.q("DELETE FROM document_chunks WHERE document_id = $1")
            .bind(document_id)
            .execute(&mut *tx)
            .await?;
        for chunk in chunks {
            self.q(
                "INSERT INTO document_chunks (document_id, thread_id, ord, page, heading, text) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(document_id)
            .bind(doc.thread_id.as_str())
            .bind(chunk.ord)
            .bind(chunk.page)
            .bind(chunk.heading.as_deref())
            .bind(chunk.text.as_str())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(Some(doc))
    }

    async fn fail_extraction(
        &self,
        document_id: &str,
        reason: &str,
        now: i64,
    ) -> Result<Option<Document>> {
        let sql = format!(
            "UPDATE documents SET status = 'failed', stage = 'failed', error = $2, \
             updated_at = $3 WHERE id = $1 AND status = 'processing' AND deleted_at IS NULL \
             RETURNING {DOCUMENT_COLUMNS}"
        );
        let row = self
            .fetch_optional(self.q_built(sql).bind(document_id).bind(reason).bind(now))
            .await?;
        row.as_ref().map(document_row).transpose()
    }

    async fn chunks(
        &self,
        document_id: &str,
        page: Option<i64>,
        from_ord: i64,
        limit: i64,
    ) -> Result<Vec<Chunk>> {
        let rows = self
            .fetch_all(
                self.q("SELECT ord, page, heading, text FROM document_chunks \
                    WHERE document_id = $1 AND ($2 IS NULL OR page = $2) AND ord >= $3 \
                    ORDER BY ord ASC LIMIT $4")
                    .bind(document_id)
                    .bind(page)
                    .bind(from_ord)
                    .bind(limit),
            )
            .await?;
        rows.iter().map(|r| chunk_row(r, 0)).collect()
    }

    async fn passages(&self, q: &PassageQuery) -> Result<Vec<Passage>> {
        if q.terms.is_empty() {
            return Ok(Vec::new());
        }
        let sql = if DB::BACKEND == "postgres" {
            POSTGRES_PASSAGES
        } else {
            SQLITE_PASSAGES
        };
        let rows = self
            .fetch_all(
                self.q(sql)
                    .bind(match_expression(DB::BACKEND, &q.terms))
                    .bind(q.thread_id.as_str())
                    .bind(q.user_id.as_str())
                    .bind(q.limit),
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(Passage {
                    document_id: r.try_get(0)?,
                    name: r.try_get(1)?,
                    chunk: chunk_row(r, 2)?,
                    score: r.try_get(6)?,
                    chunk_id: r.try_get(7)?,
                })
            })
            .collect()
    }

    async fn purge_stale_uploads(&self, before: i64) -> Result<Vec<String>> {
        let gone = self
            .fetch_all(
                self.q(
                    "DELETE FROM documents WHERE status = 'uploading' AND updated_at < $1 \
                     RETURNING id",
                )
                .bind(before),
            )
            .await?;
        Ok(gone
            .iter()
            .map(|r| r.try_get::<String, _>(0))
            .collect::<std::result::Result<_, _>>()?)
    }
}
