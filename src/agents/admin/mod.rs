//! `/api/admin/connections*` and `/api/admin/agents*` (issue #18): administrators create, edit,
//! disable and delete personas and the provider connections they call, live. Only an active
//! admin's sign-in session passes ([`AdminUser`]). A key is sealed before it is stored
//! (`agents::secrets`) and never returned; the instance that made a change rebuilds its
//! registry at once, the others within a second (`agents::registry`).
//!
//! Connections are here; personas in `agents` (the submodule).

pub(crate) mod agents;
mod input;

use axum::{
    Json, Router,
    extract::State,
    http::StatusCode,
    response::IntoResponse,
    routing::{get, patch},
};

use super::{
    registry::{Connection, open_connection},
    secrets::{KEY_VERSION, KeyCipher, hint},
};
use crate::{
    auth::AdminUser,
    contract::personas::{ConnectionList, ConnectionView, KeyStatus, ModelList},
    db::{
        StoreError, now_ms,
        personas::{ConnectionRow, PersonaChange, PersonaSnapshot},
        rfc3339,
    },
    error::ApiError,
    http::{IdPath, json::JsonObject},
    state::AppState,
};
use input::ConnectionFields;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/api/admin/connections",
            get(list_connections).post(create_connection),
        )
        .route(
            "/api/admin/connections/{id}",
            patch(update_connection).delete(delete_connection),
        )
        .route("/api/admin/connections/{id}/models", get(connection_models))
        .route(
            "/api/admin/agents",
            get(agents::list_agents).post(agents::create_agent),
        )
        .route(
            "/api/admin/agents/{id}",
            patch(agents::update_agent).delete(agents::delete_agent),
        )
}

/// The stored personas and connections, read now.
async fn snapshot(state: &AppState) -> Result<PersonaSnapshot, ApiError> {
    Ok(state.db.run(|s| async move { s.personas().await }).await?)
}

/// Apply a change; `conflict` is what a 409 says (the database's own text never reaches the
/// client). The registry of this instance is rebuilt at once.
async fn change(state: &AppState, change: PersonaChange, conflict: &str) -> Result<bool, ApiError> {
    let done = match state
        .db
        .run(|s| async move { s.change_personas(&change).await })
        .await
    {
        Ok(done) => done,
        Err(StoreError::Conflict(_)) => return Err(ApiError::Conflict(conflict.into())),
        Err(e) => return Err(e.into()),
    };
    if let Err(e) = state.agents.reload(&state.auth).await {
        // The poll catches up within a second.
        tracing::warn!(error = %e, "could not reload the agents after a change");
    }
    Ok(done)
}

/// The signing key's cipher: keys cannot be sealed before the signing key is known.
fn cipher(state: &AppState) -> Result<KeyCipher, ApiError> {
    state
        .auth
        .key()
        .map(|k| KeyCipher::new(&k))
        .ok_or(ApiError::Unavailable {
            retry_after_secs: 2,
        })
}

fn connection_view(row: &ConnectionRow, cipher: Option<&KeyCipher>) -> ConnectionView {
    let has_key = row.key_cipher.is_some();
    let key_status = match (has_key, open_connection(row, cipher).key) {
        (false, _) => KeyStatus::None,
        (true, Some(_)) => KeyStatus::Ok,
        (true, None) => KeyStatus::Unreadable,
    };
    ConnectionView {
        id: row.id.clone(),
        name: row.name.clone(),
        kind: row.kind.clone(),
        base_url: row.base_url.clone(),
        has_key,
        key_hint: row.key_hint.clone(),
        key_status,
        created_at: rfc3339(row.created_at),
        updated_at: rfc3339(row.updated_at),
    }
}

/// Every provider connection, oldest first, without keys.
#[utoipa::path(get, path = "/api/admin/connections", operation_id = "adminListConnections",
    tag = "admin", security(("bearer" = []), ("cookie" = [])),
    responses((status = 200, description = "Connections", body = ConnectionList),
        (status = 403, response = crate::error::responses::Forbidden)))]
pub(crate) async fn list_connections(
    State(state): State<AppState>,
    _admin: AdminUser,
) -> Result<Json<ConnectionList>, ApiError> {
    let snap = snapshot(&state).await?;
    let cipher = state.auth.key().map(|k| KeyCipher::new(&k));
    Ok(Json(ConnectionList {
        connections: snap
            .connections
            .iter()
            .map(|c| connection_view(c, cipher.as_ref()))
            .collect(),
    }))
}

/// Store a key (sealed) on a row, or remove it (`""`).
fn set_key(row: &mut ConnectionRow, key: &str, cipher: &KeyCipher) {
    if key.is_empty() {
        row.key_cipher = None;
        row.key_nonce = None;
        row.key_version = 0;
        row.key_hint = None;
    } else {
        let sealed = cipher.seal(&row.id, key);
        row.key_cipher = Some(sealed.cipher);
        row.key_nonce = Some(sealed.nonce);
        row.key_version = KEY_VERSION;
        row.key_hint = hint(key);
    }
}

const NAME_TAKEN: &str = "a connection with this name exists";

/// Create a provider connection (`{"name","kind","base_url"?,"api_key"?}`); the key is sealed
/// and never returned.
#[utoipa::path(post, path = "/api/admin/connections", operation_id = "adminCreateConnection",
    tag = "admin", security(("bearer" = []), ("cookie" = [])),
    request_body = crate::contract::personas::ConnectionInput,
    responses((status = 201, description = "The connection", body = ConnectionView),
        (status = 403, response = crate::error::responses::Forbidden),
        (status = 409, response = crate::error::responses::Conflict)))]
pub(crate) async fn create_connection(
    State(state): State<AppState>,
    _admin: AdminUser,
    JsonObject(body): JsonObject,
) -> Result<impl IntoResponse, ApiError> {
    let input = ConnectionFields::parse(&body, true)?;
    let cipher = cipher(&state)?;
    let now = now_ms();
    let mut row = ConnectionRow {
        id: uuid::Uuid::now_v7().to_string(),
        name: input.name.unwrap_or_default(),
        kind: input.kind.unwrap_or_default(),
        base_url: input.base_url.flatten(),
        key_cipher: None,
        key_nonce: None,
        key_version: 0,
        key_hint: None,
        created_at: now,
        updated_at: now,
    };
    if let Some(Some(key)) = &input.api_key {
        set_key(&mut row, key, &cipher);
    }
    let put = PersonaChange::PutConnection {
        row: row.clone(),
        create: true,
    };
    change(&state, put, NAME_TAKEN).await?;
    Ok((
        StatusCode::CREATED,
        Json(connection_view(&row, Some(&cipher))),
    ))
}

/// Change a connection (`{"name"?,"kind"?,"base_url"?,"api_key"?}`): a new `api_key` replaces
/// the stored one (rotation), `""` or `null` removes it; absent keeps it.
#[utoipa::path(patch, path = "/api/admin/connections/{id}", operation_id = "adminUpdateConnection",
    tag = "admin", security(("bearer" = []), ("cookie" = [])),
    params(("id" = String, Path, description = "Connection id")),
    request_body = crate::contract::personas::ConnectionInput,
    responses((status = 200, description = "The connection", body = ConnectionView),
        (status = 403, response = crate::error::responses::Forbidden),
        (status = 404, response = crate::error::responses::NotFound),
        (status = 409, response = crate::error::responses::Conflict)))]
pub(crate) async fn update_connection(
    State(state): State<AppState>,
    _admin: AdminUser,
    IdPath(id): IdPath,
    JsonObject(body): JsonObject,
) -> Result<Json<ConnectionView>, ApiError> {
    let input = ConnectionFields::parse(&body, false)?;
    let cipher = cipher(&state)?;
    let snap = snapshot(&state).await?;
    let mut row = snap
        .connections
        .into_iter()
        .find(|c| c.id == id)
        .ok_or(ApiError::NotFound)?;
    if let Some(name) = input.name {
        row.name = name;
    }
    if let Some(kind) = input.kind {
        row.kind = kind;
    }
    if let Some(base_url) = input.base_url {
        row.base_url = base_url;
    }
    if let Some(key) = input.api_key {
        set_key(&mut row, key.as_deref().unwrap_or(""), &cipher);
    }
    row.updated_at = now_ms().max(row.updated_at + 1);
    let put = PersonaChange::PutConnection {
        row: row.clone(),
        create: false,
    };
    if !change(&state, put, NAME_TAKEN).await? {
        return Err(ApiError::NotFound);
    }
    Ok(Json(connection_view(&row, Some(&cipher))))
}

/// Delete a connection no agent uses (409 while one does).
#[utoipa::path(delete, path = "/api/admin/connections/{id}", operation_id = "adminDeleteConnection",
    tag = "admin", security(("bearer" = []), ("cookie" = [])),
    params(("id" = String, Path, description = "Connection id")),
    responses((status = 204, description = "Deleted"),
        (status = 403, response = crate::error::responses::Forbidden),
        (status = 404, response = crate::error::responses::NotFound),
        (status = 409, response = crate::error::responses::Conflict)))]
pub(crate) async fn delete_connection(
    State(state): State<AppState>,
    _admin: AdminUser,
    IdPath(id): IdPath,
) -> Result<StatusCode, ApiError> {
    let gone = change(
        &state,
        PersonaChange::DeleteConnection { id },
        "agents still use this connection: move or delete them first",
    )
    .await?;
    if gone {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound)
    }
}

/// The chat models the connection's provider lists (the admin UI's model picker); 503 when
/// the provider does not answer with a list.
#[utoipa::path(get, path = "/api/admin/connections/{id}/models",
    operation_id = "adminConnectionModels", tag = "admin",
    security(("bearer" = []), ("cookie" = [])),
    params(("id" = String, Path, description = "Connection id")),
    responses((status = 200, description = "Models", body = ModelList),
        (status = 403, response = crate::error::responses::Forbidden),
        (status = 404, response = crate::error::responses::NotFound),
        (status = 503, response = crate::error::responses::Unavailable)))]
pub(crate) async fn connection_models(
    State(state): State<AppState>,
    _admin: AdminUser,
    IdPath(id): IdPath,
) -> Result<Json<ModelList>, ApiError> {
    let snap = snapshot(&state).await?;
    let row = snap
        .connections
        .iter()
        .find(|c| c.id == id)
        .ok_or(ApiError::NotFound)?;
    let cipher = state.auth.key().map(|k| KeyCipher::new(&k));
    let connection: Connection = open_connection(row, cipher.as_ref());
    match super::discovery::connection_models(state.agents.http(), &connection).await {
        Some(models) => Ok(Json(ModelList { models })),
        None => Err(ApiError::Unavailable {
            retry_after_secs: 5,
        }),
    }
}
