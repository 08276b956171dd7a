//! Messages: history over HTTP, and sending — the one path (shared by HTTP and WebSocket) that
//! authorises a send, applies the per-user rate limit and hands the message to the writer.

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

use crate::db::{AgentRequest, AgentWork};
use crate::{
    auth::{Claims, CurrentUser},
    db::{
        Author, AuthorKind, NewMessage, Page, StoreError, now_ms,
        writer::{Rejection, Reply, WriteEvent},
    },
    domain::{ClientId, MessageBody},
    error::ApiError,
    http::json::{Fields, JsonObject},
    limits::retry_after_secs,
    realtime::protocol::message_json,
    state::AppState,
    threads::{is_member, member_thread},
};

pub fn routes() -> Router<AppState> {
    Router::new().route(
        "/api/threads/{id}/messages",
        get(history).post(post_message),
    )
}

/// A send, parsed.
#[derive(Debug, Clone)]
pub struct SendRequest {
    pub thread: String,
    pub client_id: ClientId,
    pub body: MessageBody,
    pub agent: Option<AgentAsk>,
}

/// What a send asks of the agents.
#[derive(Debug, Clone)]
pub enum AgentAsk {
    /// One agent answers (an unknown agent is `not_found`).
    Answer(String),
    /// Agents debate in turn (their ids are checked by the caller).
    Debate { agents: Vec<String>, rounds: u32 },
}

/// Why a send was refused before reaching the writer.
#[derive(Debug, Clone)]
pub enum SendError {
    NotFound(&'static str),
    Unavailable {
        retry_after_ms: u64,
    },
    RateLimited {
        retry_after_ms: u64,
    },
    /// The request is malformed in a way only known after lookups (e.g. a debate's agents).
    Validation(String),
    /// A per-user concurrency limit (agent streams) is reached.
    TooMany(String),
}

/// Authorise, rate-limit and queue a send; the outcome arrives on `reply`.
pub async fn submit(
    state: &AppState,
    user: &Claims,
    req: SendRequest,
    reply: Reply,
) -> Result<(), SendError> {
    match is_member(state, &req.thread, &user.uid).await {
        Ok(true) => {}
        Ok(false) => return Err(SendError::NotFound("thread not found")),
        Err(StoreError::Unavailable(_)) => {
            return Err(SendError::Unavailable {
                retry_after_ms: 2000,
            });
        }
        Err(e) => {
            tracing::error!(error = %e, "membership check failed");
            return Err(SendError::Unavailable {
                retry_after_ms: 2000,
            });
        }
    }
    if let Some(AgentAsk::Answer(agent)) = &req.agent
        && !state.agents.knows(agent)
    {
        return Err(SendError::NotFound("unknown agent"));
    }
    if let Err(wait) = state.limits.send.check(&user.uid) {
        crate::limits::count_rate_limited(&state.metrics, "send");
        return Err(SendError::RateLimited {
            retry_after_ms: wait.as_millis().max(1) as u64,
        });
    }
    // An agent request takes its answer slot now, atomically; the slot travels with the message
    // to the job that runs it, and comes back when every copy is dropped.
    let slot = match &req.agent {
        Some(_) => Some(
            state
                .limits
                .answers
                .reserve(&user.uid)
                .await
                .map_err(|limit| {
                    crate::limits::count_rate_limited(&state.metrics, "agents");
                    SendError::TooMany(format!(
                        "at most {limit} agent answers may run at once per user"
                    ))
                })?,
        ),
        None => None,
    };
    let message = NewMessage {
        id: uuid::Uuid::now_v7().to_string(),
        thread_id: req.thread,
        client_id: req.client_id.as_str().to_string(),
        author: Author {
            kind: AuthorKind::User,
            id: user.uid.clone(),
            name: user.name.clone(),
        },
        body: req.body.into_string(),
        created_at: now_ms(),
        status: None,
        prompt_tokens: None,
        completion_tokens: None,
        agent: req.agent.zip(slot).map(|(ask, slot)| AgentRequest {
            work: match ask {
                AgentAsk::Answer(agent) => AgentWork::Answer { agent },
                AgentAsk::Debate { agents, rounds } => AgentWork::Debate { agents, rounds },
            },
            requester: user.uid.clone(),
            slot,
        }),
        defer_publish: false,
    };
    state
        .writer
        .submit(message, reply)
        .map_err(|_| SendError::Unavailable {
            retry_after_ms: 1000,
        })
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
        .map_err(|e| match e {
            SendError::NotFound("unknown agent") => ApiError::field("agent", "unknown agent"),
            SendError::NotFound(_) => ApiError::NotFound,
            SendError::Unavailable { retry_after_ms } => ApiError::Unavailable {
                retry_after_secs: retry_after_ms.div_ceil(1000),
            },
            SendError::RateLimited { retry_after_ms } => ApiError::RateLimited {
                retry_after_secs: retry_after_secs(Duration::from_millis(retry_after_ms)),
                policy: state.limits.send.policy(),
                message: "too many messages; slow down".into(),
            },
            SendError::Validation(why) => ApiError::field("agent", why),
            SendError::TooMany(why) => ApiError::RateLimited {
                retry_after_secs: 1,
                policy: format!("{};w=1", state.settings.limits.agent_streams_per_user),
                message: why,
            },
        })?;
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
