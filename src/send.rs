//! The one send path, shared by HTTP and WebSocket: authorise a send (membership), apply the
//! per-user rate limit, reserve an answer slot when it asks for agents, and hand the message to
//! the writer. What happens to it then arrives on the caller's reply channel.

use std::time::Duration;

use crate::{
    auth::Claims,
    contract::ErrorCode,
    db::{
        AgentRequest, AgentWork, Author, AuthorKind, DebateMeta, DebateRole, MessageMeta,
        NewMessage, StoreError, now_ms, writer::Reply,
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
    /// Several agents answer at once, each in its own stream (unknown agents are `not_found`).
    Several(Vec<String>),
    /// Agents debate in turn, then the mediator (if any) writes a closing synthesis (their ids
    /// are checked by the caller).
    Debate {
        agents: Vec<String>,
        rounds: u32,
        mediator: Option<String>,
    },
}

/// Most agents one message may ask at once.
pub const MAX_PARALLEL_AGENTS: usize = 4;

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
    /// The `client_id` is another user's.
    Conflict(&'static str),
    /// The sender's token budget is spent (the message asks for agents).
    BudgetExceeded(crate::usage::budget::Exhausted),
}

/// Authorise, rate-limit and queue a send; the outcome arrives on `reply`.
pub async fn submit(
    state: &AppState,
    user: &Claims,
    req: SendRequest,
    reply: Reply,
) -> Result<(), SendError> {
    check_member(state, user, &req.thread).await?;
    match &req.agent {
        Some(AgentAsk::Answer(agent)) if !state.agents.knows(agent) => {
            return Err(SendError::UnknownAgent);
        }
        Some(AgentAsk::Several(agents)) if agents.iter().any(|a| !state.agents.knows(a)) => {
            return Err(SendError::UnknownAgent);
        }
        _ => {}
    }
    check_send_rate(state, user)?;
    // A spent budget refuses the request before it is stored: no provider is called.
    if req.agent.is_some()
        && let Err(spent) = state.agents.budgets().check(&user.uid, now_ms()).await
    {
        return Err(SendError::BudgetExceeded(spent));
    }
    // An agent request takes its answer slots now, atomically (one per parallel answer, one for
    // a whole debate); the slots travel with the message to the jobs that run it, and come back
    // when every copy is dropped.
    let wanted = match &req.agent {
        Some(AgentAsk::Several(agents)) => agents.len(),
        Some(_) => 1,
        None => 0,
    };
    let mut slots = Vec::with_capacity(wanted);
    for _ in 0..wanted {
        slots.push(reserve_answer_slot(state, user).await?);
    }
    let id = uuid::Uuid::now_v7().to_string();
    let meta = match &req.agent {
        Some(AgentAsk::Debate {
            agents,
            rounds,
            mediator,
        }) => Some(Box::new(MessageMeta {
            debate: Some(DebateMeta {
                id: crate::db::debate_id_for(&id),
                role: DebateRole::Topic,
                round: None,
                agents: Some(agents.clone()),
                rounds: Some(*rounds),
                mediator: mediator.clone(),
            }),
            ..MessageMeta::default()
        })),
        _ => None,
    };
    let message = NewMessage {
        id,
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
        meta,
        requester: None,
        agent: req.agent.map(|ask| AgentRequest {
            work: match ask {
                AgentAsk::Answer(agent) => AgentWork::Answer { agent },
                AgentAsk::Several(agents) => AgentWork::Several { agents },
                AgentAsk::Debate {
                    agents,
                    rounds,
                    mediator,
                } => AgentWork::Debate {
                    agents,
                    rounds,
                    mediator,
                },
            },
            requester: user.uid.clone(),
            slots,
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

/// The sender must be a member of the thread (a stranger's thread looks like none).
pub(crate) async fn check_member(
    state: &AppState,
    user: &Claims,
    thread: &str,
) -> Result<(), SendError> {
    match is_member(state, thread, &user.uid).await {
        Ok(true) => Ok(()),
        Ok(false) => Err(SendError::NotFound("thread not found")),
        Err(StoreError::Unavailable(_)) => Err(SendError::Unavailable {
            retry_after_ms: 2000,
        }),
        Err(e) => {
            tracing::error!(error = %e, "membership check failed");
            Err(SendError::Unavailable {
                retry_after_ms: 2000,
            })
        }
    }
}

/// The per-user send rate (sends, debates and regenerate requests alike).
pub(crate) fn check_send_rate(state: &AppState, user: &Claims) -> Result<(), SendError> {
    state.limits.send.check(&user.uid).map_err(|wait| {
        crate::limits::count_rate_limited(&state.metrics, "send");
        SendError::RateLimited {
            retry_after_ms: wait.as_millis().max(1) as u64,
        }
    })
}

/// One of the user's answer slots, held by the job it is given to.
pub(crate) async fn reserve_answer_slot(
    state: &AppState,
    user: &Claims,
) -> Result<std::sync::Arc<crate::limits::SlotLease>, SendError> {
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
    mediator: Option<String>,
    reply: Reply,
) -> Result<(), SendError> {
    if let Some(unknown) = agents.iter().find(|a| !state.agents.knows(a)) {
        return Err(SendError::Validation(format!("unknown agent {unknown:?}")));
    }
    if let Some(unknown) = mediator.as_ref().filter(|m| !state.agents.knows(m)) {
        return Err(SendError::Validation(format!(
            "unknown mediator {unknown:?}"
        )));
    }
    // The topic is an ordinary send (membership, limits, idempotency) that asks for a debate.
    let req = SendRequest {
        thread,
        client_id,
        body: topic,
        agent: Some(AgentAsk::Debate {
            agents,
            rounds,
            mediator,
        }),
    };
    submit(state, user, req, reply).await
}

/// The one mapping of a refused send to the contract's error code, for HTTP and WebSocket alike.
impl From<&SendError> for ErrorCode {
    fn from(e: &SendError) -> Self {
        match e {
            SendError::NotFound(_) | SendError::UnknownAgent => ErrorCode::NotFound,
            SendError::Unavailable { .. } => ErrorCode::Unavailable,
            SendError::RateLimited { .. } | SendError::TooMany(_) => ErrorCode::RateLimited,
            SendError::Validation(_) => ErrorCode::Validation,
            SendError::Conflict(_) => ErrorCode::Conflict,
            SendError::BudgetExceeded(_) => ErrorCode::BudgetExceeded,
        }
    }
}

impl SendError {
    /// The human text of the refusal, on both transports.
    pub fn message(&self) -> String {
        match self {
            SendError::NotFound(what) | SendError::Conflict(what) => (*what).to_string(),
            SendError::UnknownAgent => "unknown agent".into(),
            SendError::Unavailable { .. } => "the database is unavailable; retry later".into(),
            SendError::RateLimited { .. } => "too many messages".into(),
            SendError::Validation(why) | SendError::TooMany(why) => why.clone(),
            SendError::BudgetExceeded(spent) => {
                format!(
                    "your usage budget is spent; it resets at {}",
                    spent.resets_at()
                )
            }
        }
    }

    /// `budget_exceeded`: when the budget starts again.
    pub fn resets_at(&self) -> Option<String> {
        match self {
            SendError::BudgetExceeded(spent) => Some(spent.resets_at()),
            _ => None,
        }
    }

    /// When to try again, for the refusals that pass.
    pub fn retry_after_ms(&self) -> Option<u64> {
        match self {
            SendError::Unavailable { retry_after_ms }
            | SendError::RateLimited { retry_after_ms } => Some(*retry_after_ms),
            // An agent answer slot frees when a running answer ends; a second is a fair guess.
            SendError::TooMany(_) => Some(1000),
            SendError::NotFound(_)
            | SendError::UnknownAgent
            | SendError::Validation(_)
            | SendError::Conflict(_)
            | SendError::BudgetExceeded(_) => None,
        }
    }

    /// Whether the refusal is about the agent(s) the request names. HTTP reports such a refusal
    /// on that body field (422 `validation` with `fields`); the WebSocket, which has no fields,
    /// keeps the code (`not_found` for an unknown agent, `docs/protocol.md`).
    pub fn concerns_agents(&self) -> bool {
        matches!(self, SendError::UnknownAgent | SendError::Validation(_))
    }

    /// The HTTP answer for a refused send, from the code, message and retry time above;
    /// `agent_field` names the request field that holds the agent(s) (`agent` on messages,
    /// `agents` on debates).
    pub fn into_api_error(self, state: &AppState, agent_field: &str) -> ApiError {
        if self.concerns_agents() {
            return ApiError::field(agent_field, self.message());
        }
        let retry_after_secs =
            retry_after_secs(Duration::from_millis(self.retry_after_ms().unwrap_or(1000)));
        if let SendError::BudgetExceeded(spent) = &self {
            let wait = (spent.resets_at_ms - now_ms()).max(1000) as u64;
            return ApiError::BudgetExceeded {
                resets_at: spent.resets_at(),
                retry_after_secs: wait.div_ceil(1000),
            };
        }
        match ErrorCode::from(&self) {
            // The contract's one 404 body: a missing thread and a stranger's look the same.
            ErrorCode::NotFound => ApiError::NotFound,
            ErrorCode::Unavailable => ApiError::Unavailable { retry_after_secs },
            ErrorCode::Conflict => ApiError::Conflict(self.message()),
            ErrorCode::RateLimited => ApiError::RateLimited {
                retry_after_secs,
                policy: self.limit_policy(state),
                message: self.message(),
            },
            other => ApiError::Internal(anyhow::anyhow!("send refused with {other:?}")),
        }
    }

    /// The `RateLimit-Policy` of the limit that refused the send.
    fn limit_policy(&self, state: &AppState) -> String {
        match self {
            SendError::TooMany(_) => {
                format!("{};w=1", state.settings.limits.agent_streams_per_user)
            }
            _ => state.limits.send.policy(),
        }
    }
}
