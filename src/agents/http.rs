//! The agents' HTTP surface: `GET /api/agents` and `POST /api/threads/{id}/debate` (a debate
//! starts through the one send path, `send::start_debate`, like the WebSocket frame).

use std::time::Duration;

use axum::{
    Json, Router,
    extract::State,
    http::StatusCode,
    response::IntoResponse,
    routing::{get, post},
};
use tokio::sync::mpsc;

use crate::{
    auth::CurrentUser,
    contract::http::{AcceptedStatus, AgentList, AgentView, DebateAccepted, NewDebate},
    db::writer::WriteEvent,
    domain::{ClientId, MessageBody},
    error::ApiError,
    http::json::{Fields, JsonObject},
    send::start_debate,
    state::AppState,
};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/agents", get(list_agents))
        .route("/api/threads/{id}/debate", post(post_debate))
}

/// The agents any message may ask (never their keys).
#[utoipa::path(
    get,
    path = "/api/agents",
    operation_id = "listAgents",
    tag = "agents",
    security(("bearer" = []), ("cookie" = [])),
    responses((status = 200, description = "The configured agents", body = AgentList))
)]
pub(crate) async fn list_agents(
    State(state): State<AppState>,
    _user: CurrentUser,
) -> Json<AgentList> {
    let agents = state
        .agents
        .list()
        .iter()
        .map(|a| {
            let (provider, model) = state.agents.provider_of(a);
            AgentView {
                id: a.id.clone(),
                name: a.name.clone(),
                provider,
                model,
                colour: a.colour.clone(),
            }
        })
        .collect();
    Json(AgentList { agents })
}

/// Start a debate.
///
/// The topic is stored as the caller's message (idempotent by `client_id`), then the agents
/// answer in turn for `rounds` rounds; the turns stream over the WebSocket.
#[utoipa::path(
    post,
    path = "/api/threads/{id}/debate",
    operation_id = "startDebate",
    tag = "agents",
    params(("id" = String, Path, description = "Thread id")),
    request_body = NewDebate,
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 202, description = "The debate is on its way", body = DebateAccepted),
        (status = 404, response = crate::error::responses::NotFound),
        (status = 409, response = crate::error::responses::Conflict),
        (status = 429, response = crate::error::responses::RateLimited),
    )
)]
pub(crate) async fn post_debate(
    State(state): State<AppState>,
    user: CurrentUser,
    crate::http::IdPath(thread): crate::http::IdPath,
    JsonObject(body): JsonObject,
) -> Result<impl IntoResponse, ApiError> {
    let mut f = Fields::new(&body);
    let client_id = f.string("client_id");
    let client_id = f.parse("client_id", client_id, ClientId::parse);
    let topic = f.string("topic");
    let topic = f.parse("topic", topic, MessageBody::parse);
    let agents: Vec<String> = f
        .opt_strings("agents")
        .unwrap_or_default()
        .into_iter()
        .map(str::to_string)
        .collect();
    let rounds = body.get("rounds").and_then(|v| v.as_u64());
    if !(2..=8).contains(&agents.len()) {
        f.reject("agents", "a debate needs 2 to 8 agents");
    }
    if !matches!(rounds, Some(1..=10)) {
        f.reject("rounds", "must be an integer from 1 to 10");
    }
    let mediator = f.opt_string("mediator").map(str::to_string);
    if mediator.as_ref().is_some_and(|m| !state.agents.knows(m)) {
        f.reject("mediator", "unknown agent");
    }
    f.finish()?;
    let client_id = client_id.expect("checked");
    let (tx, mut rx) = mpsc::unbounded_channel();
    let cid = client_id.as_str().to_string();
    start_debate(
        &state,
        &user.claims,
        thread,
        client_id,
        topic.expect("checked"),
        agents,
        rounds.unwrap_or(1) as u32,
        mediator,
        tx,
    )
    .await
    .map_err(|e| e.into_api_error(&state, "agents"))?;
    // Wait briefly for the topic to be stored, to report conflicts.
    if let Ok(Some(WriteEvent::Rejected {
        reason: crate::db::writer::Rejection::ClientIdTaken,
        ..
    })) = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await
    {
        return Err(ApiError::Conflict(
            "client_id already used by another author in this thread".into(),
        ));
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(DebateAccepted {
            client_id: cid,
            status: AcceptedStatus::Accepted,
        }),
    ))
}
