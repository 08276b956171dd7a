//! `/api/admin/agents*`: personas. The settings file's agents are listed read-only (`source:
//! "settings"`) and win: a stored persona may not take their id or name, and editing or
//! deleting one of them is refused (409) with a sentence saying where it is defined.

use axum::{Json, extract::State, http::StatusCode, response::IntoResponse};

use super::{change, input::AgentFields, input::slug, snapshot};
use crate::{
    agents::{AgentSettings, registry::Source},
    auth::AdminUser,
    contract::personas::{AdminAgentList, AdminAgentView, AgentSource},
    db::{
        now_ms,
        personas::{PersonaChange, PersonaRow, PersonaSnapshot},
        rfc3339,
    },
    error::ApiError,
    http::{IdPath, json::JsonObject},
    state::AppState,
};

const SETTINGS_AGENT: &str =
    "this agent is defined in the settings file, which wins: change it there";
const TAKEN: &str = "an agent with this id or name exists";

fn settings_view(a: &AgentSettings) -> AdminAgentView {
    AdminAgentView {
        id: a.id.clone(),
        name: a.name.clone(),
        colour: a.colour.clone(),
        system_prompt: a.system_prompt.clone(),
        connection_id: None,
        provider: a.provider.clone(),
        model: a.model.clone(),
        temperature: a.temperature,
        max_tokens: a.max_tokens,
        fallback_model: a.fallback_model.clone(),
        fallback_agent: a.fallback_agent.clone(),
        enabled: true,
        source: AgentSource::Settings,
        active: true,
        updated_at: None,
    }
}

fn stored_view(state: &AppState, row: &PersonaRow, snap: &PersonaSnapshot) -> AdminAgentView {
    let active = state
        .agents
        .registry()
        .agents
        .iter()
        .any(|p| p.source == Source::Database && p.settings.id == row.id);
    let provider = row
        .connection_id
        .as_ref()
        .and_then(|id| snap.connections.iter().find(|c| &c.id == id))
        .map_or_else(|| "local".to_string(), |c| c.kind.clone());
    AdminAgentView {
        id: row.id.clone(),
        name: row.name.clone(),
        colour: row.colour.clone(),
        system_prompt: row.system_prompt.clone(),
        connection_id: row.connection_id.clone(),
        provider,
        model: row.model.clone(),
        temperature: row.temperature_milli as f32 / 1000.0,
        max_tokens: row.max_tokens.clamp(0, u32::MAX as i64) as u32,
        fallback_model: row.fallback_model.clone(),
        fallback_agent: row.fallback_agent.clone(),
        enabled: row.enabled,
        source: AgentSource::Database,
        active,
        updated_at: Some(rfc3339(row.updated_at)),
    }
}

/// Whether the settings file defines an agent with this id or (case-insensitive) name.
fn in_settings(state: &AppState, id: Option<&str>, name: Option<&str>) -> bool {
    state.settings.agents.iter().any(|a| {
        id.is_some_and(|id| a.id == id)
            || name.is_some_and(|n| a.name.to_lowercase() == n.to_lowercase())
    })
}

/// Every agent: the settings file's (read-only), then the stored ones, oldest first.
#[utoipa::path(get, path = "/api/admin/agents", operation_id = "adminListAgents",
    tag = "admin", security(("bearer" = []), ("cookie" = [])),
    responses((status = 200, description = "Agents", body = AdminAgentList),
        (status = 403, response = crate::error::responses::Forbidden)))]
pub(crate) async fn list_agents(
    State(state): State<AppState>,
    _admin: AdminUser,
) -> Result<Json<AdminAgentList>, ApiError> {
    let snap = snapshot(&state).await?;
    let agents = state
        .settings
        .agents
        .iter()
        .map(settings_view)
        .chain(snap.agents.iter().map(|r| stored_view(&state, r, &snap)))
        .collect();
    Ok(Json(AdminAgentList { agents }))
}

/// Checks against the other rows: the connection exists, the fallback agent is another agent
/// (of the settings file or stored).
fn check_links(state: &AppState, row: &PersonaRow, snap: &PersonaSnapshot) -> Result<(), ApiError> {
    let mut errors = crate::error::FieldErrors::new();
    if let Some(id) = &row.connection_id
        && !snap.connections.iter().any(|c| &c.id == id)
    {
        errors.insert("connection_id".into(), "no such connection".into());
    }
    if let Some(id) = &row.fallback_agent {
        let known = in_settings(state, Some(id), None) || snap.agents.iter().any(|a| &a.id == id);
        if id == &row.id {
            errors.insert("fallback_agent".into(), "cannot be the agent itself".into());
        } else if !known {
            errors.insert("fallback_agent".into(), "no such agent".into());
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::Validation(errors))
    }
}

/// Create a persona (`{"name","model","id"?,"colour"?,"system_prompt"?,"connection_id"?,
/// "temperature"?,"max_tokens"?,"fallback_model"?,"fallback_agent"?,"enabled"?}`); every instance offers it
/// within seconds.
#[utoipa::path(post, path = "/api/admin/agents", operation_id = "adminCreateAgent",
    tag = "admin", security(("bearer" = []), ("cookie" = [])),
    request_body = crate::contract::personas::AgentInput,
    responses((status = 201, description = "The agent", body = AdminAgentView),
        (status = 403, response = crate::error::responses::Forbidden),
        (status = 409, response = crate::error::responses::Conflict)))]
pub(crate) async fn create_agent(
    State(state): State<AppState>,
    _admin: AdminUser,
    JsonObject(body): JsonObject,
) -> Result<impl IntoResponse, ApiError> {
    let input = AgentFields::parse(&body, true)?;
    let name = input.name.unwrap_or_default();
    let id = input.id.unwrap_or_else(|| slug(&name));
    if in_settings(&state, Some(&id), Some(&name)) {
        return Err(ApiError::Conflict(
            "an agent of the settings file has this id or name, and it wins".into(),
        ));
    }
    let now = now_ms();
    let row = PersonaRow {
        id,
        name,
        colour: input.colour.flatten(),
        system_prompt: input.system_prompt.unwrap_or_default(),
        connection_id: input.connection_id.flatten(),
        model: input.model.unwrap_or_default(),
        temperature_milli: (input.temperature.unwrap_or(0.7) * 1000.0).round() as i64,
        max_tokens: input.max_tokens.unwrap_or(1024),
        fallback_model: input.fallback_model.flatten(),
        fallback_agent: input.fallback_agent.flatten(),
        enabled: input.enabled.unwrap_or(true),
        created_at: now,
        updated_at: now,
    };
    let snap = snapshot(&state).await?;
    check_links(&state, &row, &snap)?;
    let put = PersonaChange::PutAgent {
        row: row.clone(),
        create: true,
    };
    change(&state, put, TAKEN).await?;
    let snap = snapshot(&state).await?;
    Ok((StatusCode::CREATED, Json(stored_view(&state, &row, &snap))))
}

/// Change a persona (every field optional; `"enabled": false` disables it: messages can no
/// longer ask it, its past answers stay).
#[utoipa::path(patch, path = "/api/admin/agents/{id}", operation_id = "adminUpdateAgent",
    tag = "admin", security(("bearer" = []), ("cookie" = [])),
    params(("id" = String, Path, description = "Agent id")),
    request_body = crate::contract::personas::AgentInput,
    responses((status = 200, description = "The agent", body = AdminAgentView),
        (status = 403, response = crate::error::responses::Forbidden),
        (status = 404, response = crate::error::responses::NotFound),
        (status = 409, response = crate::error::responses::Conflict)))]
pub(crate) async fn update_agent(
    State(state): State<AppState>,
    _admin: AdminUser,
    IdPath(id): IdPath,
    JsonObject(body): JsonObject,
) -> Result<Json<AdminAgentView>, ApiError> {
    let snap = snapshot(&state).await?;
    let stored = snap.agents.iter().find(|a| a.id == id).cloned();
    let Some(mut row) = stored else {
        if in_settings(&state, Some(&id), None) {
            return Err(ApiError::Conflict(SETTINGS_AGENT.into()));
        }
        return Err(ApiError::NotFound);
    };
    let input = AgentFields::parse(&body, false)?;
    if let Some(name) = input.name {
        if in_settings(&state, None, Some(&name)) {
            return Err(ApiError::Conflict(
                "an agent of the settings file has this name, and it wins".into(),
            ));
        }
        row.name = name;
    }
    if let Some(c) = input.colour {
        row.colour = c;
    }
    if let Some(p) = input.system_prompt {
        row.system_prompt = p;
    }
    if let Some(c) = input.connection_id {
        row.connection_id = c;
    }
    if let Some(m) = input.model {
        row.model = m;
    }
    if let Some(t) = input.temperature {
        row.temperature_milli = (t * 1000.0).round() as i64;
    }
    if let Some(n) = input.max_tokens {
        row.max_tokens = n;
    }
    if let Some(f) = input.fallback_model {
        row.fallback_model = f;
    }
    if let Some(f) = input.fallback_agent {
        row.fallback_agent = f;
    }
    if let Some(e) = input.enabled {
        row.enabled = e;
    }
    row.updated_at = now_ms().max(row.updated_at + 1);
    check_links(&state, &row, &snap)?;
    let put = PersonaChange::PutAgent {
        row: row.clone(),
        create: false,
    };
    if !change(&state, put, TAKEN).await? {
        return Err(ApiError::NotFound);
    }
    let snap = snapshot(&state).await?;
    Ok(Json(stored_view(&state, &row, &snap)))
}

/// Delete a persona (its past answers stay, under its name).
#[utoipa::path(delete, path = "/api/admin/agents/{id}", operation_id = "adminDeleteAgent",
    tag = "admin", security(("bearer" = []), ("cookie" = [])),
    params(("id" = String, Path, description = "Agent id")),
    responses((status = 204, description = "Deleted"),
        (status = 403, response = crate::error::responses::Forbidden),
        (status = 404, response = crate::error::responses::NotFound),
        (status = 409, response = crate::error::responses::Conflict)))]
pub(crate) async fn delete_agent(
    State(state): State<AppState>,
    _admin: AdminUser,
    IdPath(id): IdPath,
) -> Result<StatusCode, ApiError> {
    let gone = change(&state, PersonaChange::DeleteAgent { id: id.clone() }, TAKEN).await?;
    if gone {
        Ok(StatusCode::NO_CONTENT)
    } else if in_settings(&state, Some(&id), None) {
        Err(ApiError::Conflict(SETTINGS_AGENT.into()))
    } else {
        Err(ApiError::NotFound)
    }
}
