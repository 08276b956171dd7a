//! Regenerate: a new version of an agent answer (complete or `incomplete`), written by the same
//! agent or another one, stored as a new message whose `version_of` names the answer's first
//! version (versions are append-only; readers switch between them). The request is recorded once
//! per `(thread, client_id)` before anything starts, so a repeated request (a reconnect, a
//! double click, another instance) never starts a second provider call. Debate turns are not
//! regenerated: every later turn answered the turn as it was.

use crate::{
    agents::VersionPlace,
    auth::Claims,
    db::{AuthorKind, Message, StoreError, now_ms, versions::Regeneration},
    domain::ClientId,
    send::{SendError, check_member, check_send_rate, reserve_answer_slot},
    state::AppState,
};

/// A regenerate request, parsed (`{"type":"regenerate",...}`).
#[derive(Debug, Clone, PartialEq)]
pub struct RegenerateRequest {
    pub thread: String,
    pub client_id: ClientId,
    /// The answer to regenerate (any of its versions).
    pub message_id: String,
    /// Another agent to write the new version (default: the answer's own).
    pub agent: Option<String>,
}

/// Authorise, rate-limit and record a regenerate request; the first time, start the new
/// version. Returns the answer's first version (the group the new version joins), also for a
/// repeat, which starts nothing.
pub async fn submit(
    state: &AppState,
    user: &Claims,
    req: RegenerateRequest,
) -> Result<String, SendError> {
    check_member(state, user, &req.thread).await?;
    check_send_rate(state, user)?;
    let target = message(state, &req.thread, &req.message_id)
        .await?
        .ok_or(SendError::NotFound("message not found"))?;
    if target.author.kind != AuthorKind::Agent {
        return Err(SendError::Validation(
            "message_id: only an agent's answer can be regenerated".into(),
        ));
    }
    let meta = target.meta.as_deref();
    if meta.is_some_and(|m| m.debate.is_some()) {
        return Err(SendError::Validation(
            "message_id: a debate turn cannot be regenerated".into(),
        ));
    }
    let agent = req.agent.unwrap_or_else(|| target.author.id.clone());
    if !state.agents.knows(&agent) {
        return Err(SendError::UnknownAgent);
    }
    let version_of = meta
        .and_then(|m| m.version_of.clone())
        .unwrap_or_else(|| target.id.clone());
    // The new version sees the thread as it was before the first version.
    let before_seq = if version_of == target.id {
        target.seq
    } else {
        message(state, &req.thread, &version_of)
            .await?
            .map_or(target.seq, |first| first.seq)
    };
    // A spent budget refuses the request before anything is recorded: no provider is called.
    if let Err(spent) = state.agents.budgets().check(&user.uid, now_ms()).await {
        return Err(SendError::BudgetExceeded(spent));
    }
    let slot = reserve_answer_slot(state, user).await?;
    let claim = Regeneration {
        thread_id: req.thread.clone(),
        client_id: req.client_id.as_str().to_string(),
        requester_id: user.uid.clone(),
        message_id: target.id.clone(),
        version_of: version_of.clone(),
        agent_id: agent.clone(),
        created_at: now_ms(),
    };
    let c = claim.clone();
    let stored = state
        .db
        .run(|s| async move { s.claim_regeneration(&c).await })
        .await
        .map_err(unavailable)?;
    if stored.requester_id != user.uid {
        return Err(SendError::Conflict(
            "client_id already used by another user",
        ));
    }
    if stored == claim {
        let job_id = format!("job-regen-{}", uuid::Uuid::now_v7());
        let place = VersionPlace {
            of: version_of,
            before_seq,
        };
        let requester = user.uid.clone();
        state
            .agents
            .regenerate(req.thread, job_id, requester, agent, place, slot);
    }
    // A repeat drops its slot here: the first request's job holds its own.
    Ok(stored.version_of)
}

async fn message(state: &AppState, thread: &str, id: &str) -> Result<Option<Message>, SendError> {
    let (thread, id) = (thread.to_string(), id.to_string());
    state
        .db
        .run(|s| async move { s.message_by_id(&thread, &id).await })
        .await
        .map_err(unavailable)
}

fn unavailable(e: StoreError) -> SendError {
    if !e.is_unavailable() {
        tracing::error!(error = %e, "regenerate request failed");
    }
    SendError::Unavailable {
        retry_after_ms: 2000,
    }
}
