//! The document routes (`docs/protocol.md`, "Documents"): upload, list, one document, delete,
//! download, its passages in order, and a passage search. A caller who is not a member of the
//! thread gets the same 404 as for a thread that does not exist.

use axum::{
    Json, Router,
    body::Body,
    extract::{
        DefaultBodyLimit, Path, Query, State,
        multipart::{Multipart, MultipartRejection},
    },
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use serde::Deserialize;

use super::{retrieval, store_of, upload, view};
use crate::{
    auth::CurrentUser,
    contract::documents::{
        ChunkList, ChunkView, DocumentList, DocumentView, PassageList, PassageView,
    },
    db::{documents::Document, now_ms},
    error::ApiError,
    http::IdPath,
    state::AppState,
    threads::member_thread,
};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/api/threads/{id}/documents",
            get(list)
                .post(create)
                // The upload counts its own bytes against `documents.max_bytes`.
                .layer(DefaultBodyLimit::disable()),
        )
        .route("/api/threads/{id}/documents/search", get(search))
        .route(
            "/api/threads/{id}/documents/{doc}",
            get(show).delete(remove),
        )
        .route("/api/threads/{id}/documents/{doc}/file", get(download))
        .route("/api/threads/{id}/documents/{doc}/chunks", get(chunks))
}

/// Upload a document (multipart field `file`); its extraction starts at once.
#[utoipa::path(
    post,
    path = "/api/threads/{id}/documents",
    operation_id = "uploadDocument",
    tag = "documents",
    params(("id" = String, Path, description = "Thread id")),
    request_body(content = String, content_type = "multipart/form-data", description = "The field `file`: a PDF, DOCX, Markdown, text, HTML or CSV file"),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 201, description = "Stored; `status` is `processing`", body = DocumentView),
        (status = 400, response = crate::error::responses::BadRequest),
        (status = 403, description = "`quota_exceeded`: the uploader's documents take their whole quota", body = crate::contract::ErrorBody),
        (status = 404, response = crate::error::responses::NotFound),
        (status = 413, description = "`file_too_large`: over `documents.max_bytes`", body = crate::contract::ErrorBody),
        (status = 415, description = "`unsupported_type`: not one of the types read, or the content does not match the name", body = crate::contract::ErrorBody),
    )
)]
pub(crate) async fn create(
    State(state): State<AppState>,
    user: CurrentUser,
    IdPath(id): IdPath,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<(StatusCode, Json<DocumentView>), ApiError> {
    member_thread(&state, &id, user.id()).await?;
    let doc = upload::receive(&state, &user, &id, multipart).await?;
    Ok((StatusCode::CREATED, Json(doc)))
}

/// The thread's documents, oldest first, with their state.
#[utoipa::path(
    get,
    path = "/api/threads/{id}/documents",
    operation_id = "listDocuments",
    tag = "documents",
    params(("id" = String, Path, description = "Thread id")),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "The documents", body = DocumentList),
        (status = 404, response = crate::error::responses::NotFound),
    )
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    user: CurrentUser,
    IdPath(id): IdPath,
) -> Result<Json<DocumentList>, ApiError> {
    member_thread(&state, &id, user.id()).await?;
    let tid = id.clone();
    let docs = state
        .db
        .run(|s| async move { store_of(&s)?.thread_documents(&tid).await })
        .await?;
    Ok(Json(DocumentList {
        documents: docs.iter().map(view).collect(),
    }))
}

/// The document `doc` of thread `id`, for a member.
async fn member_document(
    state: &AppState,
    user: &CurrentUser,
    (id, doc): (&str, &str),
) -> Result<(crate::db::Thread, Document), ApiError> {
    let thread = member_thread(state, id, user.id()).await?;
    if !crate::domain::plausible_id(doc) {
        return Err(ApiError::NotFound);
    }
    let (tid, did) = (id.to_string(), doc.to_string());
    let found = state
        .db
        .run(|s| async move { store_of(&s)?.document(&tid, &did).await })
        .await?;
    Ok((thread, found.ok_or(ApiError::NotFound)?))
}

type DocPath = Result<Path<(String, String)>, axum::extract::rejection::PathRejection>;

fn doc_path(path: DocPath) -> Result<(String, String), ApiError> {
    path.map(|Path(p)| p).map_err(|_| ApiError::NotFound)
}

/// One document.
#[utoipa::path(
    get,
    path = "/api/threads/{id}/documents/{doc}",
    operation_id = "showDocument",
    tag = "documents",
    params(
        ("id" = String, Path, description = "Thread id"),
        ("doc" = String, Path, description = "Document id"),
    ),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "The document", body = DocumentView),
        (status = 404, response = crate::error::responses::NotFound),
    )
)]
pub(crate) async fn show(
    State(state): State<AppState>,
    user: CurrentUser,
    path: DocPath,
) -> Result<Json<DocumentView>, ApiError> {
    let (id, doc) = doc_path(path)?;
    let (_, doc) = member_document(&state, &user, (&id, &doc)).await?;
    Ok(Json(view(&doc)))
}

/// Delete a document (the thread's owner or the uploader): it leaves retrieval at once.
#[utoipa::path(
    delete,
    path = "/api/threads/{id}/documents/{doc}",
    operation_id = "deleteDocument",
    tag = "documents",
    params(
        ("id" = String, Path, description = "Thread id"),
        ("doc" = String, Path, description = "Document id"),
    ),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, response = crate::error::responses::Forbidden),
        (status = 404, response = crate::error::responses::NotFound),
    )
)]
pub(crate) async fn remove(
    State(state): State<AppState>,
    user: CurrentUser,
    path: DocPath,
) -> Result<StatusCode, ApiError> {
    let (id, doc) = doc_path(path)?;
    let (thread, found) = member_document(&state, &user, (&id, &doc)).await?;
    if thread.owner_id != user.id() && found.uploader_id != user.id() {
        return Err(ApiError::Forbidden(
            "only the thread's owner or the document's uploader may delete it",
        ));
    }
    let now = now_ms();
    let deleted = state
        .db
        .run(|s| async move { store_of(&s)?.delete_document(&id, &doc, now).await })
        .await?
        .ok_or(ApiError::NotFound)?;
    state.documents.files.remove(&deleted.id).await;
    state.documents.announce(&deleted, true);
    Ok(StatusCode::NO_CONTENT)
}

/// What `filename*` keeps as it is (RFC 5987 `attr-char`); the rest is percent-encoded.
const ATTR_CHAR: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'!')
    .remove(b'#')
    .remove(b'$')
    .remove(b'&')
    .remove(b'+')
    .remove(b'-')
    .remove(b'.')
    .remove(b'^')
    .remove(b'_')
    .remove(b'`')
    .remove(b'|')
    .remove(b'~');

/// The file as uploaded, streamed part by part from the database.
#[utoipa::path(
    get,
    path = "/api/threads/{id}/documents/{doc}/file",
    operation_id = "downloadDocument",
    tag = "documents",
    params(
        ("id" = String, Path, description = "Thread id"),
        ("doc" = String, Path, description = "Document id"),
    ),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "The file (as an attachment)", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 404, response = crate::error::responses::NotFound),
    )
)]
pub(crate) async fn download(
    State(state): State<AppState>,
    user: CurrentUser,
    path: DocPath,
) -> Result<Response, ApiError> {
    let (id, doc) = doc_path(path)?;
    let (_, doc) = member_document(&state, &user, (&id, &doc)).await?;
    let (db, files) = (state.db.clone(), state.documents.files.clone());
    let doc_id = doc.id.clone();
    let parts = futures_util::stream::unfold(0i64, move |part_no| {
        let (db, files, doc_id) = (db.clone(), files.clone(), doc_id.clone());
        async move {
            let part = files.part(&db, &doc_id, part_no).await;
            match part {
                Ok(Some(bytes)) => Some((Ok(bytes::Bytes::from(bytes)), part_no + 1)),
                Ok(None) => None,
                Err(e) => Some((Err(std::io::Error::other(e.to_string())), i64::MAX)),
            }
        }
    });
    let mut response = Body::from_stream(parts).into_response();
    let headers = response.headers_mut();
    let mime = HeaderValue::from_str(&doc.mime)
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    headers.insert(header::CONTENT_TYPE, mime);
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(doc.size));
    let encoded = percent_encoding::utf8_percent_encode(&doc.name, ATTR_CHAR);
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename*=UTF-8''{encoded}")) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    Ok(response)
}

/// Which passages of a document to read.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ChunkParams {
    /// Only the passages of this page (1-based; PDF).
    pub page: Option<i64>,
    /// From this passage on (its `ord`; default 0).
    pub from_ord: Option<i64>,
    /// At most this many (default 50, at most 500).
    pub limit: Option<i64>,
}

/// A document's passages in order: a page's, or from a passage on (to open a citation).
#[utoipa::path(
    get,
    path = "/api/threads/{id}/documents/{doc}/chunks",
    operation_id = "documentChunks",
    tag = "documents",
    params(
        ("id" = String, Path, description = "Thread id"),
        ("doc" = String, Path, description = "Document id"),
        ChunkParams,
    ),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "The passages", body = ChunkList),
        (status = 404, response = crate::error::responses::NotFound),
        (status = 422, response = crate::error::responses::Validation),
    )
)]
pub(crate) async fn chunks(
    State(state): State<AppState>,
    user: CurrentUser,
    path: DocPath,
    params: Result<Query<ChunkParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<ChunkList>, ApiError> {
    let (id, doc) = doc_path(path)?;
    let Query(p) = params.map_err(|e| ApiError::field("query", e.body_text()))?;
    let limit = p.limit.unwrap_or(50);
    if limit < 1 {
        return Err(ApiError::field("limit", "must be at least 1"));
    }
    let (_, doc) = member_document(&state, &user, (&id, &doc)).await?;
    let (doc_id, page, from) = (doc.id.clone(), p.page, p.from_ord.unwrap_or(0));
    let found = state
        .db
        .run(|s| async move {
            store_of(&s)?
                .chunks(&doc_id, page, from, limit.min(500))
                .await
        })
        .await?;
    Ok(Json(ChunkList {
        document_id: doc.id,
        chunks: found.into_iter().map(chunk_view).collect(),
    }))
}

pub(crate) fn chunk_view(c: crate::db::documents::Chunk) -> ChunkView {
    ChunkView {
        ord: c.ord,
        page: c.page,
        heading: c.heading,
        text: c.text,
    }
}

/// What to look for in a thread's documents.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PassageParams {
    /// The question or words (1-1000 characters).
    pub q: String,
    /// At most this many passages (default 5, at most 50).
    pub limit: Option<i64>,
}

/// The passages of the thread's indexed documents that best match `q` (what an agent would be
/// given for that question), best first.
#[utoipa::path(
    get,
    path = "/api/threads/{id}/documents/search",
    operation_id = "searchDocuments",
    tag = "documents",
    params(("id" = String, Path, description = "Thread id"), PassageParams),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "The passages, best first", body = PassageList),
        (status = 404, response = crate::error::responses::NotFound),
        (status = 422, response = crate::error::responses::Validation),
    )
)]
pub(crate) async fn search(
    State(state): State<AppState>,
    user: CurrentUser,
    IdPath(id): IdPath,
    params: Result<Query<PassageParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<PassageList>, ApiError> {
    let Query(p) = params.map_err(|e| ApiError::field("q", e.body_text()))?;
    let chars = p.q.trim().chars().count();
    if chars == 0 || chars > 1000 {
        return Err(ApiError::field("q", "must be 1-1000 characters"));
    }
    let limit = p.limit.unwrap_or(5);
    if limit < 1 {
        return Err(ApiError::field("limit", "must be at least 1"));
    }
    member_thread(&state, &id, user.id()).await?;
    let found = retrieval::passages(
        &state.db,
        &state.metrics,
        state.documents.embedder(),
        &id,
        user.id(),
        &p.q,
        limit.min(50),
    )
    .await?;
    Ok(Json(PassageList {
        passages: found
            .into_iter()
            .map(|p| PassageView {
                document_id: p.document_id,
                name: p.name,
                chunk: chunk_view(p.chunk),
                score: p.score,
            })
            .collect(),
    }))
}
