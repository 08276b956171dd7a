//! The one send path, shared by HTTP and WebSocket: authorise a send (membership), apply the
//! per-user rate limit, reserve an answer slot when it asks for agents, and hand the message to
//! the writer. What happens to it then arrives on the caller's reply channel.

use std::time::Duration;

use crate::{
    auth::Claims,
    db::{
        AgentRequest, AgentWork, Author, AuthorKind, NewMessage, StoreError, now_ms, writer::Reply,
    },
    domain::{ClientId, MessageBody},
    error::ApiError,
    limits::retry_after_secs,
    state::AppState,
    threads::is_member,
};

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
    /// The message names an agent that does not exist.
    UnknownAgent,
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
        return Err(SendError::UnknownAgent);
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
        stream_id: None,
    };
    state
        .writer
        .submit(message, reply)
        .map_err(|_| SendError::Unavailable {
            retry_after_ms: 1000,
        })
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
    reply: Reply,
) -> Result<(), SendError> {
    if let Some(unknown) = agents.iter().find(|a| !state.agents.knows(a)) {
        return Err(SendError::Validation(format!("unknown agent {unknown:?}")));
    }
    // The topic is an ordinary send (membership, limits, idempotency) that asks for a debate.
    let req = SendRequest {
        thread,
        client_id,
        body: topic,
        agent: Some(AgentAsk::Debate { agents, rounds }),
    };
    submit(state, user, req, reply).await
}

impl SendError {
    /// The HTTP answer for a refused send; `agent_field` names the request field that holds the
    /// agent(s) (`agent` on messages, `agents` on debates).
    pub fn into_api_error(self, state: &AppState, agent_field: &str) -> ApiError {
        match self {
            SendError::NotFound(_) => ApiError::NotFound,
            SendError::UnknownAgent => ApiError::field(agent_field, "unknown agent"),
            SendError::Validation(why) => ApiError::field(agent_field, why),
            SendError::Unavailable { retry_after_ms } => ApiError::Unavailable {
                retry_after_secs: retry_after_ms.div_ceil(1000),
            },
            SendError::RateLimited { retry_after_ms } => ApiError::RateLimited {
                retry_after_secs: retry_after_secs(Duration::from_millis(retry_after_ms)),
                policy: state.limits.send.policy(),
                message: "too many messages; slow down".into(),
            },
            SendError::TooMany(why) => ApiError::RateLimited {
                retry_after_secs: 1,
                policy: format!("{};w=1", state.settings.limits.agent_streams_per_user),
                message: why,
            },
        }
    }
}
