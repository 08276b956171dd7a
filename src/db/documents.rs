//! Documents of a thread (issue #19) as stored: the record with its state, the file in 1 MiB
//! parts, and the text in chunks indexed for full-text retrieval. [`DocumentStore`] is what the
//! SQL backends offer for them (`sql/documents.rs`); a backend without documents (the unit
//! tests' in-memory fake) says so through [`super::Store::documents`].
//!
//! A document is `uploading` (not listed) while its parts arrive, then `processing` (stage
//! `queued`, then `extracting`), then `indexed` or `failed`. Deleting one removes its parts and
//! chunks in the same transaction, so it leaves retrieval at once.

use async_trait::async_trait;

use super::StoreError;

type Result<T> = std::result::Result<T, StoreError>;

/// Size of one stored part of a file.
pub const PART_BYTES: usize = 1024 * 1024;

/// A document as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    pub id: String,
    pub thread_id: String,
    pub uploader_id: String,
    pub name: String,
    /// `pdf`, `docx`, `md`, `txt`, `html` or `csv`.
    pub kind: String,
    pub mime: String,
    pub size: i64,
    /// `uploading`, `processing`, `indexed` or `failed`.
    pub status: String,
    /// `uploading`, `queued`, `extracting`, `indexed` or `failed`.
    pub stage: String,
    /// Why extraction failed.
    pub error: Option<String>,
    pub pages: Option<i64>,
    pub chunks: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A document whose parts are about to arrive.
#[derive(Debug, Clone)]
pub struct NewDocument {
    pub id: String,
    pub thread_id: String,
    pub uploader_id: String,
    pub name: String,
    pub kind: String,
    pub mime: String,
    /// Where its parts go: `database` or the bucket's URL (`documents::files`).
    pub storage: String,
    pub created_at: i64,
}

/// A passage of extracted text, in document order.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Chunk {
    pub ord: i64,
    /// 1-based page (PDF), when the format has pages.
    pub page: Option<i64>,
    /// The nearest heading above the passage, when the format has headings.
    pub heading: Option<String>,
    pub text: String,
}

/// A chunk found for a question, with its document and its score (higher is better).
#[derive(Debug, Clone, PartialEq)]
pub struct Passage {
    pub document_id: String,
    pub name: String,
    pub chunk: Chunk,
    pub score: f64,
    /// The chunk's row id: what the full-text and the vector rankings are fused on.
    pub chunk_id: i64,
}

/// What to look for: any of `terms` (plain words, already cleaned), in the indexed documents of
/// `thread_id`, only if `user_id` is a member of it (checked inside the query).
#[derive(Debug, Clone)]
pub struct PassageQuery {
    pub thread_id: String,
    pub user_id: String,
    pub terms: Vec<String>,
    pub limit: i64,
}

/// Storage of documents (the SQL backends).
#[async_trait]
pub trait DocumentStore: Send + Sync {
    /// Record a document in state `uploading` (not listed until [`Self::finish_upload`]).
    async fn create_document(&self, doc: &NewDocument) -> Result<()>;

    /// Where the parts of a document that is not deleted are (`database` or a bucket's URL).
    async fn file_storage(&self, document_id: &str) -> Result<Option<String>>;

    /// Store part `part_no` (0-based) of the file.
    async fn put_part(&self, document_id: &str, part_no: i64, bytes: &[u8]) -> Result<()>;

    /// All parts arrived: the document is listed, `processing` / `queued`.
    async fn finish_upload(
        &self,
        document_id: &str,
        size: i64,
        now: i64,
    ) -> Result<Option<Document>>;

    /// Forget an upload that did not complete (its parts too).
    async fn discard_upload(&self, document_id: &str) -> Result<()>;

    /// The listed documents of a thread, oldest first.
    async fn thread_documents(&self, thread_id: &str) -> Result<Vec<Document>>;

    /// One listed document of a thread.
    async fn document(&self, thread_id: &str, document_id: &str) -> Result<Option<Document>>;

    /// Bytes the user's documents take (uploads under way included).
    async fn stored_bytes(&self, uploader_id: &str) -> Result<i64>;

    /// Delete a listed document: its parts and chunks go in the same transaction. The document
    /// as it was, `None` when there is no such listed document.
    async fn delete_document(
        &self,
        thread_id: &str,
        document_id: &str,
        now: i64,
    ) -> Result<Option<Document>>;

    /// Part `part_no` of the file, `None` past the last one.
    async fn part(&self, document_id: &str, part_no: i64) -> Result<Option<Vec<u8>>>;

    /// Take the extraction of a `processing` document (stage `extracting`) unless another
    /// instance holds it with a lease newer than `stale_before`; the document when taken.
    async fn claim_extraction(
        &self,
        document_id: &str,
        now: i64,
        stale_before: i64,
    ) -> Result<Option<Document>>;

    /// Ids of `processing` documents nobody holds (or whose lease is older than
    /// `stale_before`), oldest first.
    async fn unclaimed(&self, stale_before: i64, limit: i64) -> Result<Vec<String>>;

    /// Store the chunks and mark the document `indexed`, in one transaction; `None` (nothing
    /// stored) when the document was deleted meanwhile.
    async fn finish_extraction(
        &self,
        document_id: &str,
        chunks: &[Chunk],
        pages: Option<i64>,
        now: i64,
    ) -> Result<Option<Document>>;

    /// Mark the document `failed` with `reason`; `None` when it was deleted meanwhile.
    async fn fail_extraction(
        &self,
        document_id: &str,
        reason: &str,
        now: i64,
    ) -> Result<Option<Document>>;

    /// Chunks of a document in order: those of `page` when given, from `from_ord` on.
    async fn chunks(
        &self,
        document_id: &str,
        page: Option<i64>,
        from_ord: i64,
        limit: i64,
    ) -> Result<Vec<Chunk>>;

    /// The best passages for a question (see [`PassageQuery`]), best first.
    async fn passages(&self, query: &PassageQuery) -> Result<Vec<Passage>>;

    /// Remove uploads that never completed, last touched before `before`; how many.
    async fn purge_stale_uploads(&self, before: i64) -> Result<Vec<String>>;
}
