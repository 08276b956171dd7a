//! `POST /api/threads/{id}/documents`: the file arrives as the multipart field `file` and is
//! written to the database part by part ([`PART_BYTES`]) as it arrives, so the server never
//! holds more than one part of it. The name's extension says the type and the first bytes must
//! agree (415 `unsupported_type`); past `documents.max_bytes` the upload stops with 413
//! `file_too_large`, past the uploader's quota with 403 `quota_exceeded`, and what was stored
//! of it is removed. A refused upload's remaining body is read and dropped (up to a bound), so
//! the client reads the error instead of a reset connection.

use axum::extract::multipart::{Field, Multipart, MultipartError, MultipartRejection};

use super::{files::Files, kind::Kind, store_of, view};
use crate::{
    auth::CurrentUser,
    contract::{ErrorCode, documents::DocumentView},
    db::{
        documents::{Document, DocumentStore, NewDocument, PART_BYTES},
        now_ms,
    },
    error::ApiError,
    state::AppState,
};

/// How much of a refused upload is read and dropped before the connection is given up.
const DRAIN_MAX: u64 = 64 * 1024 * 1024;

/// Longest file name kept (characters).
const NAME_MAX: usize = 200;

/// Store the uploaded file of `thread_id` (whose member `user` is) and queue its extraction.
pub(super) async fn receive(
    state: &AppState,
    user: &CurrentUser,
    thread_id: &str,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<DocumentView, ApiError> {
    let mut multipart = multipart.map_err(|_| {
        ApiError::BadRequest(
            "send the file as multipart/form-data, in a field named `file`".to_string(),
        )
    })?;
    let outcome = store_file(state, user, thread_id, &mut multipart).await;
    if outcome.is_err() {
        drain_rest(&mut multipart).await;
    }
    let doc = outcome?;
    state.documents.announce(&doc, false);
    state.documents.enqueue(doc.id.clone());
    Ok(view(&doc))
}

async fn store_file(
    state: &AppState,
    user: &CurrentUser,
    thread_id: &str,
    multipart: &mut Multipart,
) -> Result<Document, ApiError> {
    loop {
        let Some(field) = multipart.next_field().await.map_err(multipart_error)? else {
            return Err(ApiError::BadRequest(
                "no field named `file` in the form".to_string(),
            ));
        };
        if field.name() == Some("file") {
            return store_field(state, user, thread_id, field).await;
        }
    }
}

async fn store_field(
    state: &AppState,
    user: &CurrentUser,
    thread_id: &str,
    mut field: Field<'_>,
) -> Result<Document, ApiError> {
    let name = clean_name(field.file_name().unwrap_or(""));
    let Some(kind) = Kind::from_name(&name) else {
        drain(&mut field).await;
        return Err(unsupported());
    };
    let store = state
        .db
        .store()
        .filter(|_| state.db.is_up())
        .ok_or(ApiError::Unavailable {
            retry_after_secs: 5,
        })?;
    let docs = store_of(&store)?;
    let settings = &state.documents.settings;
    let room = match settings.quota_bytes {
        0 => None,
        quota => {
            let used = docs.stored_bytes(user.id()).await?.max(0) as u64;
            if used >= quota {
                drain(&mut field).await;
                return Err(quota_exceeded());
            }
            Some(quota - used)
        }
    };
    let id = uuid::Uuid::now_v7().to_string();
    docs.create_document(&NewDocument {
        id: id.clone(),
        thread_id: thread_id.to_string(),
        uploader_id: user.id().to_string(),
        name,
        kind: kind.as_str().to_string(),
        mime: kind.mime().to_string(),
        storage: state.documents.files.label().to_string(),
        created_at: now_ms(),
    })
    .await?;
    let limits = Limits {
        max: settings.max_bytes,
        room,
    };
    let files = &state.documents.files;
    match write_parts(docs, files, &id, kind, &mut field, limits).await {
        Ok(size) => docs
            .finish_upload(&id, size, now_ms())
            .await?
            .ok_or(ApiError::NotFound),
        Err(e) => {
            drain(&mut field).await;
            files.remove(&id).await;
            if let Err(cleanup) = docs.discard_upload(&id).await {
                tracing::warn!(document = %id, error = %cleanup, "cannot remove a refused upload; the sweeper will");
            }
            Err(e)
        }
    }
}

/// How much may still arrive.
#[derive(Clone, Copy)]
struct Limits {
    /// `documents.max_bytes`.
    max: u64,
    /// What the uploader's quota leaves (`None`: no quota).
    room: Option<u64>,
}

/// Write the field's bytes as parts; the file's size.
async fn write_parts(
    docs: &dyn DocumentStore,
    files: &Files,
    id: &str,
    kind: Kind,
    field: &mut Field<'_>,
    limits: Limits,
) -> Result<i64, ApiError> {
    let mut buf: Vec<u8> = Vec::with_capacity(PART_BYTES);
    let (mut size, mut part_no, mut checked) = (0u64, 0i64, false);
    while let Some(bytes) = field.chunk().await.map_err(multipart_error)? {
        size += bytes.len() as u64;
        if size > limits.max {
            return Err(too_large(limits.max));
        }
        if limits.room.is_some_and(|room| size > room) {
            return Err(quota_exceeded());
        }
        buf.extend_from_slice(&bytes);
        while buf.len() >= PART_BYTES {
            if !checked {
                confirm(kind, &buf, false)?;
                checked = true;
            }
            files
                .put_part(docs, id, part_no, &buf[..PART_BYTES])
                .await?;
            buf.drain(..PART_BYTES);
            part_no += 1;
        }
    }
    if size == 0 {
        return Err(ApiError::field("file", "the file is empty"));
    }
    if !checked {
        confirm(kind, &buf, true)?;
    }
    if !buf.is_empty() {
        files.put_part(docs, id, part_no, &buf).await?;
    }
    Ok(size as i64)
}

/// The first bytes must fit the type the name says.
fn confirm(kind: Kind, head: &[u8], complete: bool) -> Result<(), ApiError> {
    if kind.matches(head, complete) {
        Ok(())
    } else {
        Err(ApiError::UnsupportedType(format!(
            "the file's content is not {} as its name says",
            kind.as_str()
        )))
    }
}

fn unsupported() -> ApiError {
    ApiError::UnsupportedType(
        "documents may be PDF, DOCX, Markdown, plain text, HTML or CSV (by the file's extension)"
            .to_string(),
    )
}

fn too_large(max: u64) -> ApiError {
    ApiError::FileTooLarge(format!(
        "the file is larger than {} bytes, the most a document may be",
        max
    ))
}

fn quota_exceeded() -> ApiError {
    ApiError::Denied(
        ErrorCode::QuotaExceeded,
        "your documents take all the storage you may use: delete some first",
    )
}

fn multipart_error(e: MultipartError) -> ApiError {
    if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::FileTooLarge("the upload is larger than documents may be".to_string())
    } else {
        ApiError::BadRequest(format!(
            "the multipart body could not be read: {}",
            e.body_text()
        ))
    }
}

/// The name as kept: its last path segment, without control characters, at most [`NAME_MAX`]
/// characters; `document` when nothing is left.
fn clean_name(raw: &str) -> String {
    let base = raw.rsplit(['/', '\\']).next().unwrap_or("");
    let name: String = base
        .chars()
        .filter(|c| !c.is_control())
        .take(NAME_MAX)
        .collect();
    let name = name.trim();
    if name.is_empty() {
        "document".to_string()
    } else {
        name.to_string()
    }
}

/// Read and drop the rest of a refused field (up to [`DRAIN_MAX`]).
async fn drain(field: &mut Field<'_>) {
    let mut left = DRAIN_MAX;
    while let Ok(Some(bytes)) = field.chunk().await {
        match left.checked_sub(bytes.len() as u64) {
            Some(l) => left = l,
            None => return,
        }
    }
}

/// Read and drop the fields after a refused one.
async fn drain_rest(multipart: &mut Multipart) {
    while let Ok(Some(mut field)) = multipart.next_field().await {
        drain(&mut field).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_keep_their_last_segment_without_control_characters() {
        assert_eq!(clean_name("C:\\docs\\report.pdf"), "report.pdf");
        assert_eq!(clean_name("../../etc/passwd.txt"), "passwd.txt");
        assert_eq!(clean_name("a\u{0}b\nc.md"), "abc.md");
        assert_eq!(clean_name(""), "document");
    }
}
