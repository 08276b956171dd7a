//! The agents' HTTP surface (`GET /api/agents`, `POST /api/threads/{id}/debate`) and the two
//! requests that both HTTP and WebSocket make: start a debate (an ordinary send that asks for
//! one) and cancel a stream.

use std::time::Duration;

use axum::{
    Json, Router,
    extract::State,
    http::StatusCode,
    response::IntoResponse,
    routing::{get, post},
};
use serde_json::json;
use tokio::sync::mpsc;

use crate::{
    auth::{Claims, CurrentUser},
    db::writer::WriteEvent,
    domain::{ClientId, MessageBody},
    error::ApiError,
    http::json::{Fields, JsonObject},
    messages::SendError,
    realtime::{Event, protocol::ErrorFrame, streams::StreamEvent},
    state::AppState,
    threads::is_member,
};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/agents", get(list_agents))
        .route("/api/threads/{id}/debate", post(post_debate))
}

async fn list_agents(State(state): State<AppState>, _user: CurrentUser) -> Json<serde_json::Value> {
    let agents: Vec<_> = state
        .agents
        .list()
        .iter()
        .map(|a| {
            let (provider, model) = state.agents.provider_of(a);
            json!({"id": a.id, "name": a.name, "provider": provider, "model": model})
        })
        .collect();
    Json(json!({"agents": agents}))
}

async fn post_debate(
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
        tx,
    )
    .await
    .map_err(|e| match e {
        SendError::NotFound(_) => ApiError::NotFound,
        SendError::Validation(why) => ApiError::field("agents", why),
        SendError::Unavailable { retry_after_ms } => ApiError::Unavailable {
            retry_after_secs: retry_after_ms.div_ceil(1000),
        },
        SendError::RateLimited { retry_after_ms } => ApiError::RateLimited {
            retry_after_secs: retry_after_ms.div_ceil(1000).max(1),
            policy: state.limits.send.policy(),
            message: "too many messages; slow down".into(),
        },
        SendError::TooMany(why) => ApiError::RateLimited {
            retry_after_secs: 1,
            policy: format!("{};w=1", state.settings.limits.agent_streams_per_user),
            message: why,
        },
    })?;
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
        Json(json!({"client_id": cid, "status": "accepted"})),
    ))
}

/// Store the topic as the sender's message (idempotent by `client_id`) and, when it is first
/// stored, let the agents answer in turn for `rounds` rounds.
#[allow(clippy::too_many_arguments)]
pub async fn start_debate(
    state: &AppState,
    user: &Claims,
    thread: String,
    client_id: ClientId,
    topic: MessageBody,
    agents: Vec<String>,
    rounds: u32,
    reply: crate::db::writer::Reply,
) -> Result<(), SendError> {
    if let Some(unknown) = agents.iter().find(|a| !state.agents.knows(a)) {
        return Err(SendError::Validation(format!("unknown agent {unknown:?}")));
    }
    // The topic is an ordinary send (membership, limits, idempotency) that asks for a debate.
    let req = crate::messages::SendRequest {
        thread,
        client_id,
        body: topic,
        agent: Some(crate::messages::AgentAsk::Debate { agents, rounds }),
    };
    crate::messages::submit(state, user, req, reply).await
}

/// Stop a stream (or the debate it belongs to), from any member, on any instance.
pub async fn cancel(state: &AppState, user: &Claims, stream_id: &str) -> Result<(), ErrorFrame> {
    let not_found = || ErrorFrame::new("not_found", "no such stream");
    let Some(stream) = state.realtime.streams.get(stream_id) else {
        return Err(not_found());
    };
    match is_member(state, &stream.thread, &user.uid).await {
        Ok(true) => {}
        Ok(false) => return Err(not_found()),
        Err(_) => {
            return Err(
                ErrorFrame::new("unavailable", "the database is unavailable; retry later")
                    .retry_after(2000),
            );
        }
    }
    // A typed command to whichever instance runs the stream (this one included).
    state.realtime.publish(Event::Stream(StreamEvent::Cancel {
        stream_id: stream_id.to_string(),
    }));
    Ok(())
}
