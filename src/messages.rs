//! Messages as an HTTP resource: history (from the database, or from the ring of recent
//! messages during an outage) and `POST` of a message, which takes the one send path (`send`).

use std::{collections::HashMap, time::Duration};

use axum::{
    Json, Router,
    extract::{Query, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::get,
};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::{
    auth::CurrentUser,
    db::{
        Page,
        writer::{Rejection, WriteEvent},
    },
    domain::{ClientId, MessageBody},
    error::ApiError,
    http::json::{Fields, JsonObject},
    realtime::protocol::message_json,
    send::{AgentAsk, SendRequest, submit},
    state::AppState,
    threads::member_thread,
};

pub fn routes() -> Router<AppState> {
    Router::new().route(
        "/api/threads/{id}/messages",
        get(history).post(post_message),
    )
}

async fn post_message(
    State(state): State<AppState>,
    user: CurrentUser,
    crate::http::IdPath(thread): crate::http::IdPath,
    JsonObject(body): JsonObject,
) -> Result<Response, ApiError> {
    let mut f = Fields::new(&body);
    let client_id = f.string("client_id");
    let client_id = f.parse("client_id", client_id, ClientId::parse);
    let text = f.string("body");
    let text = f.parse("body", text, MessageBody::parse);
    let agent = f
        .opt_string("agent")
        .map(|a| AgentAsk::Answer(a.to_string()));
    f.finish()?;
    let req = SendRequest {
        thread,
        client_id: client_id.expect("checked"),
        body: text.expect("checked"),
        agent,
    };
    let client_id = req.client_id.as_str().to_string();
    let (tx, mut rx) = mpsc::unbounded_channel();
    submit(&state, &user.claims, req, tx)
        .await
        .map_err(|e| e.into_api_error(&state, "agent"))?;
    let first = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await;
    match first {
        Ok(Some(WriteEvent::Persisted { message, existed })) => {
            let status = if existed {
                StatusCode::OK
            } else {
                StatusCode::CREATED
            };
            Ok((status, Json(message_json(&message))).into_response())
        }
        Ok(Some(WriteEvent::Rejected {
            reason: Rejection::ClientIdTaken,
            ..
        })) => Err(ApiError::Conflict(
            "client_id already used by another author in this thread".into(),
        )),
        Ok(Some(WriteEvent::Rejected {
            reason: Rejection::NoThread,
            ..
        })) => Err(ApiError::NotFound),
        Ok(Some(WriteEvent::Rejected {
            reason: Rejection::Internal,
            ..
        })) => Err(ApiError::Internal(anyhow::anyhow!(
            "message refused by the database"
        ))),
        // Queued (database down), or still waiting: it is in the queue; repeat the POST later.
        Ok(Some(WriteEvent::Queued { .. })) | Err(_) => Ok((
            StatusCode::ACCEPTED,
            Json(json!({"client_id": client_id, "status": "queued"})),
        )
            .into_response()),
        Ok(None) => Err(ApiError::Internal(anyhow::anyhow!("writer stopped"))),
    }
}

/// Parse `limit`, `after_seq` and `before_seq`.
fn page_params(q: &HashMap<String, String>) -> Result<(Page, i64), ApiError> {
    let mut errors = crate::error::FieldErrors::new();
    let mut int = |name: &str| -> Option<i64> {
        let raw = q.get(name)?;
        match raw.trim().parse::<i64>() {
            Ok(n) => Some(n),
            Err(_) => {
                errors.insert(name.into(), "must be an integer".into());
                None
            }
        }
    };
    let limit = int("limit");
    let after = int("after_seq");
    let before = int("before_seq");
    if limit.is_some_and(|l| l < 1) {
        errors.insert("limit".into(), "must be at least 1".into());
    }
    if after.is_some() && before.is_some() {
        errors.insert(
            "before_seq".into(),
            "use after_seq or before_seq, not both".into(),
        );
    }
    if after.is_some_and(|n| n < 0) {
        errors.insert("after_seq".into(), "must not be negative".into());
    }
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let limit = limit.unwrap_or(50).min(500);
    let page = match (after, before) {
        (Some(n), _) => Page::After(n),
        (_, Some(n)) => Page::Before(n),
        _ => Page::Latest,
    };
    Ok((page, limit))
}

async fn history(
    State(state): State<AppState>,
    user: CurrentUser,
    crate::http::IdPath(thread): crate::http::IdPath,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let (page, limit) = page_params(&q)?;
    if !state.db.is_up() {
        return history_while_down(&state, &user, &thread, page, limit).await;
    }
    member_thread(&state, &thread, user.id()).await?;
    let messages = state
        .db
        .run(|s| async move { s.messages(&thread, page, limit).await })
        .await?;
    Ok(Json(
        json!({"messages": messages.iter().map(message_json).collect::<Vec<_>>()}),
    ))
}

/// While the database is down, answer from the ring of recent messages when it holds the page.
async fn history_while_down(
    state: &AppState,
    user: &CurrentUser,
    thread: &str,
    page: Page,
    limit: i64,
) -> Result<Json<Value>, ApiError> {
    let unavailable = ApiError::Unavailable {
        retry_after_secs: 2,
    };
    match state.members.check(thread, user.id()) {
        Some(true) => {}
        Some(false) => return Err(ApiError::NotFound),
        None => return Err(unavailable),
    }
    let Page::After(after) = page else {
        return Err(unavailable);
    };
    let Some((_, frames)) = state.realtime.hub.replay_from_ring(thread, after) else {
        return Err(unavailable);
    };
    let messages: Vec<Value> = frames
        .iter()
        .take(limit as usize)
        .filter_map(|f| serde_json::from_str::<Value>(f.as_str()).ok())
        .map(|mut v| {
            if let Some(o) = v.as_object_mut() {
                o.remove("type");
                o.remove("thread");
            }
            v
        })
        .collect();
    Ok(Json(json!({"messages": messages})))
}
