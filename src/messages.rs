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
use tokio::sync::mpsc;

use crate::{
    auth::CurrentUser,
    contract::{
        MessageView, ServerFrame,
        http::{HistoryQuery, MessageList, PostMessage, QueuedMessage, QueuedStatus},
    },
    db::{
        Page,
        writer::{Rejection, WriteEvent},
    },
    domain::{ClientId, MessageBody},
    error::ApiError,
    http::json::{Fields, JsonObject},
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

/// Post a message.
///
/// The same send path as the WebSocket's `send`. Idempotent by `client_id`: the same
/// `client_id` again by the same author answers 200 with the stored message, by another 409.
#[utoipa::path(
    post,
    path = "/api/threads/{id}/messages",
    operation_id = "postMessage",
    tag = "messages",
    params(("id" = String, Path, description = "Thread id")),
    request_body = PostMessage,
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 201, description = "Stored", body = MessageView),
        (status = 200, description = "Stored before (same `client_id`, same author)", body = MessageView),
        (status = 202, description = "Queued while the database is down; repeat the POST later", body = QueuedMessage),
        (status = 404, response = crate::error::responses::NotFound),
        (status = 409, response = crate::error::responses::Conflict),
        (status = 429, response = crate::error::responses::RateLimited),
    )
)]
pub(crate) async fn post_message(
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
    let agents = f.opt_strings("agents").map(|ids| {
        let mut unique: Vec<String> = Vec::with_capacity(ids.len());
        for id in ids {
            if !unique.iter().any(|u| u == id) {
                unique.push(id.to_string());
            }
        }
        unique
    });
    if let Some(ids) = &agents
        && !(1..=crate::send::MAX_PARALLEL_AGENTS).contains(&ids.len())
    {
        f.reject("agents", "must name 1 to 4 agents");
    }
    if agent.is_some() && agents.is_some() {
        f.reject("agents", "give agent or agents, not both");
    }
    f.finish()?;
    let agent = agent.or(agents.map(AgentAsk::Several));
    let agent_field = match agent {
        Some(AgentAsk::Several(_)) => "agents",
        _ => "agent",
    };
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
        .map_err(|e| e.into_api_error(&state, agent_field))?;
    let first = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await;
    match first {
        Ok(Some(WriteEvent::Persisted { message, existed })) => {
            let status = if existed {
                StatusCode::OK
            } else {
                StatusCode::CREATED
            };
            Ok((status, Json(MessageView::from(&message))).into_response())
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
            Json(QueuedMessage {
                client_id,
                status: QueuedStatus::Queued,
            }),
        )
            .into_response()),
        Ok(None) => Err(ApiError::Internal(anyhow::anyhow!("writer stopped"))),
    }
}

/// Parse `limit`, `after_seq` and `before_seq` (each problem named by its parameter).
fn history_query(q: &HashMap<String, String>) -> Result<HistoryQuery, ApiError> {
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
    let around = int("around_seq");
    if limit.is_some_and(|l| l < 1) {
        errors.insert("limit".into(), "must be at least 1".into());
    }
    if after.is_some() && before.is_some() {
        errors.insert(
            "before_seq".into(),
            "use after_seq or before_seq, not both".into(),
        );
    }
    if around.is_some() && (after.is_some() || before.is_some()) {
        errors.insert(
            "around_seq".into(),
            "use one of after_seq, before_seq and around_seq".into(),
        );
    }
    if around.is_some_and(|n| n < 1) {
        errors.insert("around_seq".into(), "must be at least 1".into());
    }
    if after.is_some_and(|n| n < 0) {
        errors.insert("after_seq".into(), "must not be negative".into());
    }
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    Ok(HistoryQuery {
        limit,
        after_seq: after,
        before_seq: before,
        around_seq: around,
    })
}

/// The page a valid query asks for, and its size.
fn page_of(q: &HistoryQuery) -> (Page, i64) {
    let limit = q.limit.unwrap_or(50).min(500);
    let page = match (q.after_seq, q.before_seq, q.around_seq) {
        (Some(n), _, _) => Page::After(n),
        (_, Some(n), _) => Page::Before(n),
        // `seq` has no gaps, so the page centred on N is the one read forward from just before
        // its first message: the same query (and the same outage fallback) as `after_seq`.
        (_, _, Some(n)) => Page::After((n - 1 - (limit - 1) / 2).max(0)),
        _ => Page::Latest,
    };
    (page, limit)
}

/// A page of a thread's history, in ascending `seq`.
///
/// While the database is down, only `after_seq` pages are answered, from the recent messages
/// this instance keeps (else 503).
#[utoipa::path(
    get,
    path = "/api/threads/{id}/messages",
    operation_id = "listMessages",
    tag = "messages",
    params(("id" = String, Path, description = "Thread id"), HistoryQuery),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "The page", body = MessageList),
        (status = 404, response = crate::error::responses::NotFound),
        (status = 422, response = crate::error::responses::Validation),
    )
)]
pub(crate) async fn history(
    State(state): State<AppState>,
    user: CurrentUser,
    crate::http::IdPath(thread): crate::http::IdPath,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<MessageList>, ApiError> {
    let (page, limit) = page_of(&history_query(&q)?);
    if !state.db.is_up() {
        return history_while_down(&state, &user, &thread, page, limit).await;
    }
    member_thread(&state, &thread, user.id()).await?;
    let messages = state
        .db
        .run(|s| async move { s.messages(&thread, page, limit).await })
        .await?;
    Ok(Json(MessageList {
        messages: messages.iter().map(MessageView::from).collect(),
    }))
}

/// While the database is down, answer from the ring of recent messages when it holds the page.
async fn history_while_down(
    state: &AppState,
    user: &CurrentUser,
    thread: &str,
    page: Page,
    limit: i64,
) -> Result<Json<MessageList>, ApiError> {
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
    // The ring keeps `message` frames as sent; each carries the message whole.
    let messages = frames
        .iter()
        .take(limit as usize)
        .filter_map(|f| match serde_json::from_str::<ServerFrame>(f.as_str()) {
            Ok(ServerFrame::Message { message, .. }) => Some(message),
            _ => None,
        })
        .collect();
    Ok(Json(MessageList { messages }))
}
