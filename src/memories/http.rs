//! The memory routes (`docs/protocol.md`, "Memories"): the caller's opt-in
//! (`GET|PUT /api/memories/settings`), their items (`GET /api/memories`, paged newest first;
//! `POST` adds one by hand; `DELETE` removes them all) and one item
//! (`PATCH|DELETE /api/memories/{id}`). Every statement names the caller as the owner: another
//! user's item answers 404, exactly like one that does not exist.

use std::collections::HashMap;

use axum::{
    Json, Router,
    extract::{Query, State},
    http::StatusCode,
    routing::{get, patch},
};
use serde_json::{Map, Value};

use super::{store_of, view};
use crate::{
    auth::CurrentUser,
    contract::{
        ErrorCode,
        memories::{
            MemoriesDeleted, MemoryChange, MemoryInput, MemoryList, MemoryOptIn,
            MemorySettingsView, MemoryView,
        },
    },
    db::{StoreError, memories::Added, memories::MemoryPage, now_ms},
    error::ApiError,
    http::{
        IdPath,
        json::{Fields, JsonObject},
    },
    state::AppState,
};

/// Items a page holds by default, and at most (more is clamped).
const PAGE_DEFAULT: i64 = 50;
const PAGE_MAX: i64 = 200;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/memories", get(list).post(create).delete(delete_all))
        .route("/api/memories/settings", get(settings).put(set_settings))
        .route("/api/memories/{id}", patch(update).delete(remove))
}

/// The caller's opt-in and limits.
async fn settings_view(state: &AppState, user_id: &str) -> Result<MemorySettingsView, ApiError> {
    let user = user_id.to_string();
    let (enabled, count) = state
        .db
        .run(|s| async move {
            let store = store_of(&s)?;
            Ok((
                store.memories_enabled(&user).await?.is_some(),
                store.memory_count(&user).await?,
            ))
        })
        .await?;
    let limits = &state.memories.settings;
    Ok(MemorySettingsView {
        enabled,
        count: count.max(0) as u32,
        max_items: limits.max_items,
        max_chars: limits.max_chars,
    })
}

/// Whether memory is on for the caller (off until they turn it on), and its limits.
#[utoipa::path(get, path = "/api/memories/settings", operation_id = "memorySettings",
    tag = "memories", security(("bearer" = []), ("cookie" = [])),
    responses((status = 200, description = "The caller's memory settings", body = MemorySettingsView)))]
pub(crate) async fn settings(
    State(state): State<AppState>,
    user: CurrentUser,
) -> Result<Json<MemorySettingsView>, ApiError> {
    Ok(Json(settings_view(&state, user.id()).await?))
}

/// Turn memory on or off for the caller. Off, nothing is captured and agents receive none of
/// the items; the items stay until deleted.
#[utoipa::path(put, path = "/api/memories/settings", operation_id = "setMemorySettings",
    tag = "memories", security(("bearer" = []), ("cookie" = [])),
    request_body = MemoryOptIn,
    responses((status = 200, description = "The caller's memory settings", body = MemorySettingsView),
        (status = 422, response = crate::error::responses::Validation)))]
pub(crate) async fn set_settings(
    State(state): State<AppState>,
    user: CurrentUser,
    JsonObject(body): JsonObject,
) -> Result<Json<MemorySettingsView>, ApiError> {
    let enabled = match body.get("enabled") {
        Some(Value::Bool(b)) => *b,
        Some(Value::Null) | None => return Err(ApiError::field("enabled", "is required")),
        Some(_) => return Err(ApiError::field("enabled", "must be true or false")),
    };
    let (uid, now) = (user.id().to_string(), now_ms());
    state
        .db
        .run(|s| async move { store_of(&s)?.set_memories_enabled(&uid, enabled, now).await })
        .await?;
    Ok(Json(settings_view(&state, user.id()).await?))
}

/// The caller's items, newest first, a page at a time.
#[utoipa::path(get, path = "/api/memories", operation_id = "listMemories", tag = "memories",
    security(("bearer" = []), ("cookie" = [])),
    params(
        ("kind" = Option<String>, Query, description = "Only `fact` or only `summary` items"),
        ("before" = Option<String>, Query, description = "Only items older than this id (the previous page's `next_before`)"),
        ("limit" = Option<i64>, Query, description = "Items per page: default 50, over 200 clamped to 200, below 1 is 422"),
    ),
    responses((status = 200, description = "A page of items", body = MemoryList),
        (status = 422, response = crate::error::responses::Validation)))]
pub(crate) async fn list(
    State(state): State<AppState>,
    user: CurrentUser,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<MemoryList>, ApiError> {
    let kind = match q.get("kind").map(String::as_str) {
        None | Some("") => None,
        Some(k @ ("fact" | "summary")) => Some(k.to_string()),
        Some(_) => return Err(ApiError::field("kind", "must be fact or summary")),
    };
    let before = match q.get("before") {
        Some(b) if !crate::domain::plausible_id(b) => {
            return Err(ApiError::field("before", "is not an item id"));
        }
        b => b.cloned(),
    };
    let limit = match q.get("limit") {
        None => PAGE_DEFAULT,
        Some(l) => match l.parse::<i64>() {
            Ok(n) if n >= 1 => n.min(PAGE_MAX),
            _ => return Err(ApiError::field("limit", "must be a whole number from 1")),
        },
    };
    let page = MemoryPage {
        user_id: user.id().to_string(),
        kind,
        before,
        limit,
    };
    let items = state
        .db
        .run(|s| async move { store_of(&s)?.memory_page(&page).await })
        .await?;
    let next_before = (items.len() as i64 == limit)
        .then(|| items.last().map(|i| i.id.clone()))
        .flatten();
    Ok(Json(MemoryList {
        memories: items.iter().map(view).collect(),
        next_before,
    }))
}

/// The `text` of a body: trimmed, 1 to `max_chars` characters.
fn text_of(body: &Map<String, Value>, max_chars: u32) -> Result<String, ApiError> {
    let mut f = Fields::new(body);
    let text = f.string("text").map(str::trim);
    if let Some(t) = text {
        let n = t.chars().count();
        if n == 0 {
            f.reject("text", "must not be empty");
        } else if n > max_chars as usize {
            f.reject("text", format!("must be at most {max_chars} characters"));
        }
    }
    f.finish()?;
    Ok(text.unwrap_or_default().to_string())
}

fn duplicate() -> ApiError {
    ApiError::Conflict("you already have this memory".into())
}

/// Remember something by hand (a `fact`), whether or not capture is on.
#[utoipa::path(post, path = "/api/memories", operation_id = "addMemory", tag = "memories",
    security(("bearer" = []), ("cookie" = [])),
    request_body = MemoryInput,
    responses((status = 201, description = "Stored", body = MemoryView),
        (status = 403, description = "`quota_exceeded`: the caller keeps `max_items` items already", body = crate::contract::ErrorBody),
        (status = 409, response = crate::error::responses::Conflict),
        (status = 422, response = crate::error::responses::Validation)))]
pub(crate) async fn create(
    State(state): State<AppState>,
    user: CurrentUser,
    JsonObject(body): JsonObject,
) -> Result<(StatusCode, Json<MemoryView>), ApiError> {
    let memories = &state.memories;
    let text = text_of(&body, memories.settings.max_chars)?;
    let item = memories.item(
        user.id(),
        "fact",
        &text,
        format!("fact:{}", super::detect::dedupe_key(&text)),
        (None, None),
    );
    match memories.add(item, false).await? {
        Added::Stored(item) => Ok((StatusCode::CREATED, Json(view(&item)))),
        Added::Duplicate(_) => Err(duplicate()),
        Added::Full => Err(ApiError::Denied(
            ErrorCode::QuotaExceeded,
            "you keep as many memory items as allowed; delete some first",
        )),
    }
}

/// Change the text of one of the caller's items.
#[utoipa::path(patch, path = "/api/memories/{id}", operation_id = "updateMemory",
    tag = "memories", security(("bearer" = []), ("cookie" = [])),
    params(("id" = String, Path, description = "Item id")),
    request_body = MemoryInput,
    responses((status = 200, description = "The item as it now is", body = MemoryView),
        (status = 404, response = crate::error::responses::NotFound),
        (status = 409, response = crate::error::responses::Conflict),
        (status = 422, response = crate::error::responses::Validation)))]
pub(crate) async fn update(
    State(state): State<AppState>,
    user: CurrentUser,
    IdPath(id): IdPath,
    JsonObject(body): JsonObject,
) -> Result<Json<MemoryView>, ApiError> {
    let text = text_of(&body, state.memories.settings.max_chars)?;
    if !crate::domain::plausible_id(&id) {
        return Err(ApiError::NotFound);
    }
    let key = format!("fact:{}", super::detect::dedupe_key(&text));
    let (uid, now) = (user.id().to_string(), now_ms());
    let updated = state
        .db
        .run(|s| async move {
            store_of(&s)?
                .update_memory(&uid, &id, &text, &key, now)
                .await
        })
        .await
        .map_err(|e| match e {
            StoreError::Conflict(_) => duplicate(),
            e => e.into(),
        })?
        .ok_or(ApiError::NotFound)?;
    state
        .memories
        .announce(user.id(), MemoryChange::Updated, Some(&updated));
    Ok(Json(view(&updated)))
}

/// Delete one of the caller's items.
#[utoipa::path(delete, path = "/api/memories/{id}", operation_id = "deleteMemory",
    tag = "memories", security(("bearer" = []), ("cookie" = [])),
    params(("id" = String, Path, description = "Item id")),
    responses((status = 204, description = "Deleted"),
        (status = 404, response = crate::error::responses::NotFound)))]
pub(crate) async fn remove(
    State(state): State<AppState>,
    user: CurrentUser,
    IdPath(id): IdPath,
) -> Result<StatusCode, ApiError> {
    if !crate::domain::plausible_id(&id) {
        return Err(ApiError::NotFound);
    }
    let uid = user.id().to_string();
    let gone = state
        .db
        .run(|s| async move { store_of(&s)?.delete_memory(&uid, &id).await })
        .await?
        .ok_or(ApiError::NotFound)?;
    state
        .memories
        .announce(user.id(), MemoryChange::Deleted, Some(&gone));
    Ok(StatusCode::NO_CONTENT)
}

/// Delete every item of the caller.
#[utoipa::path(delete, path = "/api/memories", operation_id = "deleteAllMemories",
    tag = "memories", security(("bearer" = []), ("cookie" = [])),
    responses((status = 200, description = "How many were deleted", body = MemoriesDeleted)))]
pub(crate) async fn delete_all(
    State(state): State<AppState>,
    user: CurrentUser,
) -> Result<Json<MemoriesDeleted>, ApiError> {
    let uid = user.id().to_string();
    let deleted = state
        .db
        .run(|s| async move { store_of(&s)?.delete_all_memories(&uid).await })
        .await?;
    state
        .memories
        .announce(user.id(), MemoryChange::Cleared, None);
    Ok(Json(MemoriesDeleted { deleted }))
}
