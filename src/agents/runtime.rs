//! The agent runtime: starts an answer when a message naming an agent is first stored (never on
//! a repeat), runs debates turn by turn, streams each turn, stores the result once, and cancels or
//! interrupts on request. Generation is owned by the instance, not by any connection: a client
//! that disconnects, reloads or moves to another instance does not stop it; only `cancel` does.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, OnceLock},
    time::{Duration, Instant},
};

use axum::{
    Json, Router,
    extract::State,
    http::StatusCode,
    response::IntoResponse,
    routing::{get, post},
};
use futures_util::StreamExt;
use serde_json::json;
use tokio::sync::mpsc;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use super::{
    AgentSettings, context,
    providers::{CompletionRequest, EventStream, ProviderError, ProviderEvent, Providers},
    streams::StreamEvent,
};
use crate::{
    auth::{Claims, CurrentUser},
    db::{
        AgentRequest, AgentWork, Author, AuthorKind, Message, NewMessage, Page, now_ms,
        writer::WriteEvent,
    },
    domain::{ClientId, MessageBody},
    error::ApiError,
    http::json::{Fields, JsonObject},
    limits::SlotLease,
    messages::SendError,
    ops::metrics::Metrics,
    realtime::{Event, WireMessage, protocol::ErrorFrame},
    settings::Settings,
    state::AppState,
    threads::is_member,
};

/// At most one chunk frame per stream per this interval.
const COALESCE: Duration = Duration::from_millis(25);

/// Why a running job was stopped.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum StopReason {
    Cancelled,
    Interrupted,
}

/// A job (an answer or a whole debate) running on this instance.
struct Job {
    token: CancellationToken,
    reason: Arc<OnceLock<StopReason>>,
    /// The requester's answer slot, given back when the job is removed.
    _slot: Arc<SlotLease>,
}

/// Configured agents, their providers, and the jobs running here.
pub struct Agents {
    agents: Vec<AgentSettings>,
    providers: Providers,
    settings: super::ProviderSettings,
    state: OnceLock<AppState>,
    metrics: Arc<Metrics>,
    /// Running jobs by job id; streams map to their job.
    jobs: Mutex<HashMap<String, Job>>,
    stream_jobs: Mutex<HashMap<String, String>>,
    tasks: TaskTracker,
}

impl Agents {
    pub fn new(settings: &Settings, metrics: Arc<Metrics>) -> Self {
        let p = settings.providers.clone();
        let agents = Self {
            agents: settings.agents.clone(),
            providers: Providers::new(p.clone(), Duration::from_millis(p.connect_timeout_ms)),
            settings: p,
            state: OnceLock::new(),
            metrics,
            jobs: Mutex::new(HashMap::new()),
            stream_jobs: Mutex::new(HashMap::new()),
            tasks: TaskTracker::new(),
        };
        agents.register_metric_labels();
        agents
    }

    /// Export `llm_requests_total` at 0 for every provider and model an agent may call (see
    /// `generate`: its provider and model, or the offline one, and its fallback model).
    fn register_metric_labels(&self) {
        for agent in &self.agents {
            let (provider, model) = self.provider_of(agent);
            let fallback = agent
                .fallback_model
                .as_deref()
                .filter(|_| provider == agent.provider);
            for m in std::iter::once(model.as_str()).chain(fallback) {
                for outcome in crate::ops::metric_labels::LLM_OUTCOMES {
                    self.metrics.llm_requests.register(&[provider, m, outcome]);
                }
            }
        }
    }

    /// Give the runtime the application state (built after it).
    pub fn attach(self: &Arc<Self>, state: AppState) {
        let me = Arc::downgrade(self);
        state
            .realtime
            .set_stream_control(Arc::new(move |event: &StreamEvent| {
                if let Some(me) = me.upgrade() {
                    me.on_control(event);
                }
            }));
        let _ = self.state.set(state);
    }

    pub fn knows(&self, id: &str) -> bool {
        self.agents.iter().any(|a| a.id == id)
    }

    pub fn list(&self) -> &[AgentSettings] {
        &self.agents
    }

    fn agent(&self, id: &str) -> Option<&AgentSettings> {
        self.agents.iter().find(|a| a.id == id)
    }

    /// The provider an agent really uses: its own when configured, else the offline one.
    fn provider_of<'a>(&self, agent: &'a AgentSettings) -> (&'a str, String) {
        if self.providers.available(&agent.provider) {
            (agent.provider.as_str(), agent.model.clone())
        } else {
            ("local", "offline".to_string())
        }
    }

    /// A message was stored for the first time: start what it asks for.
    pub fn on_stored(self: &Arc<Self>, message: &Message, new: &NewMessage) {
        let Some(request) = new.agent.clone() else {
            return;
        };
        let AgentRequest { work, slot, .. } = request;
        let (agents, rounds) = match work {
            AgentWork::Answer { agent } => (vec![agent], 1),
            AgentWork::Debate { agents, rounds } => (agents, rounds),
        };
        let debate = agents.len() > 1;
        let job_id = format!("job-{}", message.id);
        let token = CancellationToken::new();
        let reason = Arc::new(OnceLock::new());
        self.jobs.lock().unwrap_or_else(|e| e.into_inner()).insert(
            job_id.clone(),
            Job {
                token: token.clone(),
                reason: reason.clone(),
                _slot: slot,
            },
        );
        let me = self.clone();
        let thread = message.thread_id.clone();
        self.tasks.spawn(async move {
            'rounds: for _round in 0..rounds {
                for agent_id in &agents {
                    if token.is_cancelled() {
                        break 'rounds;
                    }
                    let debate_id = debate.then(|| job_id.clone());
                    let ok = me
                        .run_turn(&thread, agent_id, debate_id, &job_id, &token, &reason)
                        .await;
                    if !ok {
                        break 'rounds;
                    }
                }
            }
            me.jobs
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&job_id);
        });
    }

    fn app(&self) -> &AppState {
        self.state
            .get()
            .expect("agents attached to the application")
    }

    fn publish(&self, event: StreamEvent) {
        self.app().realtime.publish(Event::Stream(event));
    }

    /// Events from other instances that concern streams running here.
    fn on_control(&self, event: &StreamEvent) {
        match event {
            StreamEvent::Cancel { stream_id } => {
                self.cancel_local(stream_id);
            }
            StreamEvent::SnapshotRequest { stream_id } => {
                let owned = self
                    .stream_jobs
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .contains_key(stream_id);
                if let (true, Some(stream)) = (owned, self.app().realtime.streams.get(stream_id)) {
                    self.publish(StreamEvent::Snapshot {
                        thread: stream.thread.clone(),
                        stream_id: stream.id.clone(),
                        agent_id: stream.agent_id.clone(),
                        agent_name: stream.agent_name.clone(),
                        debate_id: stream.debate_id.clone(),
                        text: stream.text(),
                    });
                }
            }
            _ => {}
        }
    }

    /// Stop a stream (and its debate) if it runs here.
    fn cancel_local(&self, stream_id: &str) -> bool {
        let job_id = self
            .stream_jobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(stream_id)
            .cloned();
        let Some(job_id) = job_id else { return false };
        let jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(job) = jobs.get(&job_id) {
            let _ = job.reason.set(StopReason::Cancelled);
            job.token.cancel();
            return true;
        }
        false
    }

    /// Run one agent turn; `false` when the job must stop (cancelled, interrupted or failed).
    async fn run_turn(
        &self,
        thread: &str,
        agent_id: &str,
        debate_id: Option<String>,
        job_id: &str,
        token: &CancellationToken,
        reason: &Arc<OnceLock<StopReason>>,
    ) -> bool {
        let Some(agent) = self.agent(agent_id).cloned() else {
            return false;
        };
        let stream_id = uuid::Uuid::now_v7().to_string();
        self.stream_jobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(stream_id.clone(), job_id.to_string());
        self.publish(StreamEvent::Start {
            thread: thread.to_string(),
            stream_id: stream_id.clone(),
            agent_id: agent.id.clone(),
            agent_name: agent.name.clone(),
            debate_id,
        });
        let history = self.history(thread).await;
        let request = CompletionRequest {
            model: agent.model.clone(),
            system: context::system_prompt(&agent),
            messages: context::conversation(&agent, &history, self.settings.context_tokens),
            temperature: agent.temperature,
            max_tokens: agent.max_tokens,
        };
        let started = Instant::now();
        let outcome = self
            .generate(thread, &stream_id, &agent, request, token)
            .await;
        let (provider, _) = self.provider_of(&agent);
        self.metrics
            .llm_stream
            .with(&[provider])
            .observe(started.elapsed());
        let text = outcome.text.clone();
        let (status, error) = match (&outcome.error, token.is_cancelled()) {
            (_, true) => {
                let code = match reason.get() {
                    Some(StopReason::Interrupted) => "interrupted",
                    _ => "cancelled",
                };
                (
                    Some("incomplete"),
                    Some((code.to_string(), format!("the answer was {code}"))),
                )
            }
            (Some(e), false) => (
                Some("incomplete"),
                Some((e.code().to_string(), e.to_string())),
            ),
            (None, false) => (None, None),
        };
        let finished_ok = error.is_none();
        if let Some((code, message)) = error {
            // The error first, then the partial text (if any) as an incomplete message.
            self.publish(StreamEvent::Error {
                thread: thread.to_string(),
                stream_id: stream_id.clone(),
                code,
                message,
            });
            if !text.is_empty()
                && let Some(message) = self
                    .store(thread, &stream_id, &agent, text, status, &outcome)
                    .await
            {
                self.app().realtime.publish_message(&message);
            }
        } else if let Some(message) = self
            .store(thread, &stream_id, &agent, text, status, &outcome)
            .await
        {
            self.publish(StreamEvent::End {
                thread: thread.to_string(),
                stream_id: stream_id.clone(),
                message: WireMessage::from(&message),
            });
            // `stream_end` first, then the stored message as `message`.
            self.app().realtime.publish_message(&message);
        }
        self.stream_jobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&stream_id);
        finished_ok
    }

    /// The thread so far: from the database, or the in-memory ring during an outage.
    async fn history(&self, thread: &str) -> Vec<Message> {
        let app = self.app();
        let id = thread.to_string();
        if let Ok(messages) = app
            .db
            .run(|s| async move { s.messages(&id, Page::Latest, 100).await })
            .await
        {
            return messages;
        }
        app.realtime
            .hub
            .replay_from_ring(thread, 0)
            .map(|(_, frames)| {
                frames
                    .iter()
                    .filter_map(|f| serde_json::from_str::<serde_json::Value>(f.as_str()).ok())
                    .filter_map(|v| message_from_json(&v))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Stream from the provider (with retries and fallback before the first token), publishing
    /// coalesced chunks with their offsets.
    async fn generate(
        &self,
        thread: &str,
        stream_id: &str,
        agent: &AgentSettings,
        mut request: CompletionRequest,
        token: &CancellationToken,
    ) -> Generated {
        let (provider, model) = self.provider_of(agent);
        request.model = model.clone();
        let mut out = Generated::default();
        let first_token_timeout = Duration::from_millis(self.settings.first_token_timeout_ms);
        let idle_timeout = Duration::from_millis(self.settings.idle_timeout_ms);
        let started = Instant::now();
        let mut models = vec![model];
        if let Some(fallback) = agent
            .fallback_model
            .clone()
            .filter(|_| provider == agent.provider)
        {
            models.push(fallback);
        }
        // Open the stream: retries on 429/5xx/connection errors, then the fallback model.
        let mut stream: Option<(EventStream, String)> = None;
        let mut last_error = None;
        'models: for m in &models {
            request.model = m.clone();
            for attempt in 0..=self.settings.max_retries {
                if token.is_cancelled() {
                    return out;
                }
                let opened = tokio::select! {
                    _ = token.cancelled() => return out,
                    r = tokio::time::timeout(first_token_timeout, self.providers.open(provider, &request)) => r,
                };
                match opened {
                    Ok(Ok(s)) => {
                        stream = Some((s, m.clone()));
                        break 'models;
                    }
                    Ok(Err(e)) => {
                        self.metrics
                            .llm_requests
                            .with(&[provider, m, outcome_label(&e)])
                            .inc();
                        let retry = e.retryable() && attempt < self.settings.max_retries;
                        let wait = match &e {
                            ProviderError::RateLimited {
                                retry_after: Some(d),
                            } => *d,
                            _ => Duration::from_millis(250 << attempt),
                        };
                        tracing::warn!(provider, model = %m, attempt, error = %e, "provider request failed");
                        last_error = Some(e);
                        if !retry {
                            break;
                        }
                        tokio::select! {
                            _ = token.cancelled() => return out,
                            _ = tokio::time::sleep(wait) => {}
                        }
                    }
                    Err(_) => {
                        self.metrics
                            .llm_requests
                            .with(&[provider, m, "timeout"])
                            .inc();
                        last_error = Some(ProviderError::Timeout);
                        break;
                    }
                }
            }
        }
        let Some((mut events, model)) = stream else {
            out.error = last_error.or(Some(ProviderError::Broken("no answer".into())));
            return out;
        };
        let mut pending = String::new();
        let mut sent_chars = 0usize;
        let mut last_flush = Instant::now() - COALESCE;
        let mut first_token = true;
        let outcome = loop {
            let wait = if first_token {
                first_token_timeout.saturating_sub(started.elapsed())
            } else {
                idle_timeout
            };
            let flush_at = tokio::time::Instant::from_std(last_flush + COALESCE);
            tokio::select! {
                _ = token.cancelled() => break "cancelled",
                _ = tokio::time::sleep_until(flush_at), if !pending.is_empty() => {
                    sent_chars = self.flush(thread, stream_id, &mut pending, sent_chars, &mut out.text);
                    last_flush = Instant::now();
                }
                next = tokio::time::timeout(wait, events.next()) => match next {
                    Err(_) => {
                        out.error = Some(ProviderError::Timeout);
                        break "timeout";
                    }
                    Ok(None) => break "ok",
                    Ok(Some(Err(e))) => {
                        let label = outcome_label(&e);
                        out.error = Some(e);
                        break label;
                    }
                    Ok(Some(Ok(ProviderEvent::Delta(d)))) => {
                        if first_token {
                            first_token = false;
                            self.metrics.llm_first_token.with(&[provider]).observe(started.elapsed());
                        }
                        pending.push_str(&d);
                        if last_flush.elapsed() >= COALESCE {
                            sent_chars = self.flush(thread, stream_id, &mut pending, sent_chars, &mut out.text);
                            last_flush = Instant::now();
                        }
                    }
                    Ok(Some(Ok(ProviderEvent::Usage { prompt, completion }))) => {
                        out.prompt_tokens = prompt.or(out.prompt_tokens);
                        out.completion_tokens = completion.or(out.completion_tokens);
                    }
                }
            }
        };
        if !pending.is_empty() {
            self.flush(thread, stream_id, &mut pending, sent_chars, &mut out.text);
        }
        self.metrics
            .llm_requests
            .with(&[provider, &model, outcome])
            .inc();
        if let Some(p) = out.prompt_tokens {
            self.metrics.llm_tokens.with(&["prompt"]).add(p);
        }
        if let Some(c) = out.completion_tokens {
            self.metrics.llm_tokens.with(&["completion"]).add(c);
        }
        out
    }

    fn flush(
        &self,
        thread: &str,
        stream_id: &str,
        pending: &mut String,
        offset: usize,
        text: &mut String,
    ) -> usize {
        let delta = std::mem::take(pending);
        let n = delta.chars().count();
        text.push_str(&delta);
        self.publish(StreamEvent::Chunk {
            thread: thread.to_string(),
            stream_id: stream_id.to_string(),
            offset,
            delta,
        });
        offset + n
    }

    /// Store an agent answer once (its client_id is derived from the stream), waiting through a
    /// database outage; `None` only when the instance is going away.
    async fn store(
        &self,
        thread: &str,
        stream_id: &str,
        agent: &AgentSettings,
        text: String,
        status: Option<&str>,
        outcome: &Generated,
    ) -> Option<Message> {
        let app = self.app();
        let message = NewMessage {
            id: uuid::Uuid::now_v7().to_string(),
            thread_id: thread.to_string(),
            client_id: format!("agent-{stream_id}"),
            author: Author {
                kind: AuthorKind::Agent,
                id: agent.id.clone(),
                name: agent.name.clone(),
            },
            body: text,
            created_at: now_ms(),
            status: status.map(str::to_string),
            prompt_tokens: outcome.prompt_tokens.map(|v| v as i64),
            completion_tokens: outcome.completion_tokens.map(|v| v as i64),
            agent: None,
            defer_publish: true,
        };
        loop {
            let (tx, mut rx) = mpsc::unbounded_channel();
            if app.writer.submit(message.clone(), tx).is_err() {
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
            while let Some(event) = rx.recv().await {
                match event {
                    WriteEvent::Persisted { message, .. } => return Some(message),
                    WriteEvent::Queued { .. } => continue,
                    WriteEvent::Rejected { reason, .. } => {
                        tracing::error!(?reason, stream_id, "agent answer refused by the database");
                        return None;
                    }
                }
            }
            // The writer went away: the instance is stopping.
            return None;
        }
    }

    /// Let running answers finish within `budget`, then interrupt the rest: each ends with
    /// `stream_error` code `interrupted` and its partial text is stored as incomplete.
    pub async fn drain(&self, budget: Duration) {
        self.tasks.close();
        if tokio::time::timeout(budget, self.tasks.wait())
            .await
            .is_ok()
        {
            return;
        }
        {
            let jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
            for job in jobs.values() {
                let _ = job.reason.set(StopReason::Interrupted);
                job.token.cancel();
            }
        }
        let _ = tokio::time::timeout(Duration::from_secs(2), self.tasks.wait()).await;
    }
}

#[derive(Default)]
struct Generated {
    text: String,
    error: Option<ProviderError>,
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
}

fn outcome_label(e: &ProviderError) -> &'static str {
    match e {
        ProviderError::RateLimited { .. } => "rate_limited",
        ProviderError::Timeout => "timeout",
        _ => "error",
    }
}

fn message_from_json(v: &serde_json::Value) -> Option<Message> {
    Some(Message {
        id: v["id"].as_str()?.to_string(),
        thread_id: v["thread_id"].as_str()?.to_string(),
        seq: v["seq"].as_i64()?,
        client_id: v["client_id"].as_str()?.to_string(),
        author: Author {
            kind: if v["author"]["kind"] == "agent" {
                AuthorKind::Agent
            } else {
                AuthorKind::User
            },
            id: v["author"]["id"].as_str()?.to_string(),
            name: v["author"]["name"].as_str()?.to_string(),
        },
        body: v["body"].as_str()?.to_string(),
        created_at: 0,
        status: v["status"].as_str().map(str::to_string),
    })
}

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
    if !state.agents.cancel_local(stream_id) {
        // Running on another instance: ask it.
        state.realtime.publish(Event::Stream(StreamEvent::Cancel {
            stream_id: stream_id.to_string(),
        }));
    }
    Ok(())
}
