//! The bodies of the document routes and frames (issue #19; `docs/protocol.md` "Documents",
//! `docs/documents.md`).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A document of a thread (`GET /api/threads/{id}/documents`, the upload's 201, the `document`
/// frame).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct DocumentView {
    pub id: String,
    pub thread_id: String,
    /// The file name as uploaded.
    pub name: String,
    /// `pdf`, `docx`, `md`, `txt`, `html` or `csv`.
    pub kind: String,
    /// Bytes.
    pub size: i64,
    /// `processing`, `indexed` or `failed` (the contract's three states).
    pub status: String,
    /// Finer progress: `queued`, `extracting`, `indexed` or `failed`.
    pub stage: String,
    /// Why extraction failed (with `status` `failed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    #[cfg_attr(test, ts(optional))]
    pub error: Option<String>,
    /// Pages (PDF) once indexed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    #[cfg_attr(test, ts(optional))]
    pub pages: Option<i64>,
    /// Passages indexed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    #[cfg_attr(test, ts(optional))]
    pub chunks: Option<i64>,
    pub uploader_id: String,
    /// RFC 3339, UTC.
    pub created_at: String,
}

/// `GET /api/threads/{id}/documents`: oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct DocumentList {
    pub documents: Vec<DocumentView>,
}

/// One passage of a document's text, in document order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct ChunkView {
    /// 0-based position in the document.
    pub ord: i64,
    /// 1-based page, for formats with pages (PDF).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    #[cfg_attr(test, ts(optional))]
    pub page: Option<i64>,
    /// The nearest heading above the passage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    #[cfg_attr(test, ts(optional))]
    pub heading: Option<String>,
    pub text: String,
}

/// `GET /api/threads/{id}/documents/{doc}/chunks`: the passages asked for, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct ChunkList {
    pub document_id: String,
    pub chunks: Vec<ChunkView>,
}

/// A passage found for a question (`GET /api/threads/{id}/documents/search`), best first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct PassageView {
    pub document_id: String,
    /// The document's name.
    pub name: String,
    pub chunk: ChunkView,
    /// Full-text rank (higher is better; comparable within one answer only).
    pub score: f64,
}

/// `GET /api/threads/{id}/documents/search`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct PassageList {
    pub passages: Vec<PassageView>,
}

/// A numbered reference of an agent answer to a passage it was given (`citations` on a
/// message): `[n]` in the answer's text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct Citation {
    /// The number in the answer's text (`[1]`, `[2]`, ...).
    pub n: u32,
    pub document_id: String,
    /// The document's name.
    pub name: String,
    /// 1-based page, for formats with pages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    #[cfg_attr(test, ts(optional))]
    pub page: Option<i64>,
    /// The chunk's `ord` (open it with `.../chunks?from_ord=ORD&limit=1`).
    pub ord: i64,
    /// The start of the passage (at most 300 characters).
    pub quote: String,
}
