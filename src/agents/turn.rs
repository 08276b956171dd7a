//! One agent turn: call the provider (`call`: retries and a fallback model before the first
//! token, chunks coalesced), and store the answer through the writer like any other message;
//! delivery then sends `stream_end` followed by the stored `message`. A failure or a stop ends
//! the stream with `stream_error` (a stable class and its short sentence from `errors`, never
//! upstream text), its partial text is stored as `incomplete`, and one structured log line
//! tells operators what happened.

use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::{
    AgentSettings,
    call::Generated,
    context, errors,
    jobs::{Agents, JobControl, StopReason, TurnPlace},
    providers::{CompletionRequest, Route},
    summary,
};
use crate::{
    contract::{AgentErrorClass, ErrorCode},
    db::{
        Author, AuthorKind, DebateMeta, DebateRole, Message, MessageMeta, NewMessage, Page, now_ms,
        writer::WriteEvent,
    },
    documents::retrieval,
    realtime::streams::StreamEvent,
    usage::budget::Refusal,
};

impl Agents {
    /// Run one agent turn of `job`; `false` when the job must stop (cancelled, interrupted or
    /// failed).
    pub(super) async fn run_turn(
        &self,
        thread: &str,
        agent_id: &str,
        place: Option<TurnPlace>,
        job: &JobControl,
    ) -> bool {
        let (token, reason) = (&job.token, &job.reason);
        let Some(agent) = self.agent(agent_id) else {
            return false;
        };
        let stream_id = uuid::Uuid::now_v7().to_string();
        self.stream_jobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(stream_id.clone(), job.id.clone());
        let route = self.route(&agent);
        self.publish(StreamEvent::Start {
            thread: thread.to_string(),
            stream_id: stream_id.clone(),
            agent_id: agent.id.clone(),
            agent_name: agent.name.clone(),
            debate_id: place.as_ref().map(|p| p.debate_id.clone()),
            model: Some(route.model.clone()),
            round: place.as_ref().and_then(|p| p.round),
            role: place.as_ref().map(|p| p.role),
            version_of: job.version.as_ref().map(|v| v.of.clone()),
        });
        // A new version of an answer sees the thread as it was before the first version.
        let page = job
            .version
            .as_ref()
            .map_or(Page::Latest, |v| Page::Before(v.before_seq));
        let history = context::on_screen(self.history(thread, page).await);
        let mut system = context::system_prompt(&agent);
        if place
            .as_ref()
            .is_some_and(|p| p.role == DebateRole::Synthesis)
        {
            system.push_str(context::SYNTHESIS_PROMPT);
        }
        // The thread's documents: the passages for the last question, within a third of the
        // agent's context window; the conversation gets the rest, its older turns summarised
        // when they no longer fit.
        let window = agent.context_tokens.unwrap_or(self.settings.context_tokens);
        let passages = self
            .passages_for(thread, &job.requester, &history, window / 3)
            .await;
        let mut used = 0;
        if !passages.is_empty() {
            let block = retrieval::prompt_block(&passages);
            used = context::estimate_tokens(&block);
            system.push_str(&block);
        }
        // The requester's memory items (only theirs, only if they opted in), as a system note.
        let remembered = self.memories_for(&job.requester, &history).await;
        if !remembered.is_empty() {
            let block = crate::memories::recall::prompt_block(&remembered);
            used += context::estimate_tokens(&block);
            system.push_str(&block);
        }
        let fitted = self
            .fit_context(
                thread,
                &agent,
                &route,
                &history,
                window.saturating_sub(used),
                job.version.is_none(),
            )
            .await;
        if let Some(s) = &fitted.summary {
            system.push_str(&summary::prompt_block(s));
        }
        let request = CompletionRequest {
            model: route.model.clone(),
            system,
            messages: fitted.messages,
            temperature: agent.temperature,
            max_tokens: agent.max_tokens,
            passages,
            memories: remembered.into_iter().map(|m| m.text).collect(),
        };
        // The requester's budget first: a spent one ends the stream before any provider call.
        let estimate = reservation_estimate(&request);
        let reservation = match self
            .budgets
            .reserve(&job.requester, estimate, now_ms())
            .await
        {
            Ok(r) => r,
            Err(refusal) => {
                self.refuse(thread, &stream_id, refusal);
                return false;
            }
        };
        let started = Instant::now();
        let request_passages = request.passages.clone();
        let outcome = self
            .generate(thread, &stream_id, &agent, &route, request, token)
            .await;
        let spent = match (outcome.prompt_tokens, outcome.completion_tokens) {
            (None, None) if outcome.text.is_empty() && outcome.reasoning.is_empty() => 0,
            // No usage reported: count what was estimated for the prompt and the text.
            (None, None) => {
                estimate - i64::from(agent.max_tokens)
                    + context::estimate_tokens(&outcome.text) as i64
                    + outcome.reasoning.len() as i64 / 4
            }
            (p, c) => (p.unwrap_or(0) + c.unwrap_or(0)) as i64,
        };
        // Settled before the answer is delivered: whoever sees `stream_end` sees the budget spent.
        if let Some(r) = reservation {
            self.budgets.settle(r, spent.max(0)).await;
        }
        self.count_cost(&agent, &outcome);
        self.metrics
            .llm_stream
            .with(&[&route.provider])
            .observe(started.elapsed());
        let text = outcome.text.clone();
        let class = match (&outcome.error, token.is_cancelled()) {
            (_, true) => Some(match reason.get() {
                Some(StopReason::Interrupted) => AgentErrorClass::Interrupted,
                _ => AgentErrorClass::Cancelled,
            }),
            (Some(e), false) => Some(e.class),
            (None, false) => None,
        };
        if let Some(class) = class {
            self.log_failure(
                &agent,
                &route,
                &stream_id,
                &outcome,
                class,
                started.elapsed(),
            );
        }
        let status = class.map(|_| "incomplete");
        let meta = MessageMeta {
            debate: place.map(|p| DebateMeta {
                id: p.debate_id,
                role: p.role,
                round: p.round,
                agents: None,
                rounds: None,
                mediator: None,
            }),
            version_of: job.version.as_ref().map(|v| v.of.clone()),
            model: Some(outcome.model.clone()),
            duration_ms: Some(started.elapsed().as_millis() as u64),
            error_class: class.map(|c| errors::class_str(c).to_string()),
            citations: (!request_passages.is_empty())
                .then(|| request_passages.iter().map(|p| p.citation()).collect()),
            reasoning: (!outcome.reasoning.is_empty()).then(|| outcome.reasoning.clone()),
            reasoning_tokens: outcome.reasoning_tokens,
            context_summary: fitted.summary,
        };
        let error = class.map(|c| (errors::code(c), errors::english(c).to_string(), c));
        let finished_ok = error.is_none();
        match error {
            // The error first, then the partial text (if any) as an incomplete message.
            Some((code, message, class)) => {
                self.publish(StreamEvent::Error {
                    thread: thread.to_string(),
                    stream_id: stream_id.clone(),
                    code,
                    message,
                    error_class: Some(class),
                    resets_at: None,
                });
                if !text.is_empty() {
                    self.store(
                        thread,
                        &stream_id,
                        (&agent, &job.requester),
                        text,
                        status,
                        &outcome,
                        meta,
                        false,
                    )
                    .await;
                }
            }
            // Stored as the stream's answer: delivery sends `stream_end`, then the `message`.
            None => {
                self.store(
                    thread,
                    &stream_id,
                    (&agent, &job.requester),
                    text,
                    status,
                    &outcome,
                    meta,
                    true,
                )
                .await;
            }
        }
        self.stream_jobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&stream_id);
        finished_ok
    }

    /// The one log line of a failed or cancelled call: who, where, when, why. Never the key
    /// (scrubbed from the upstream detail), never the prompt.
    fn log_failure(
        &self,
        agent: &AgentSettings,
        route: &Route,
        stream_id: &str,
        outcome: &Generated,
        class: AgentErrorClass,
        elapsed: Duration,
    ) {
        let error = outcome.error.as_ref();
        let status = error.and_then(|e| e.status);
        let detail = error
            .map(|e| self.scrub(route, &e.detail))
            .unwrap_or_default();
        let (phase, retries) = (outcome.phase.as_str(), outcome.retries);
        let elapsed_ms = elapsed.as_millis() as u64;
        let error_class = errors::class_str(class);
        let provider = if outcome.provider.is_empty() {
            &route.provider
        } else {
            &outcome.provider
        };
        let model = &outcome.model;
        if matches!(
            class,
            AgentErrorClass::Cancelled | AgentErrorClass::Interrupted
        ) {
            tracing::info!(
                agent = %agent.id, provider = %provider, model = %model, stream_id, phase, status,
                retries, elapsed_ms, error_class, "provider call cancelled"
            );
        } else {
            tracing::warn!(
                agent = %agent.id, provider = %provider, model = %model, stream_id, phase, status,
                retries, elapsed_ms, error_class, detail = %detail, "provider call failed"
            );
        }
    }

    /// End a stream that may not call its provider: the requester's budget is spent (with when
    /// it resets), or a budget applies and the database cannot tell what is left.
    fn refuse(&self, thread: &str, stream_id: &str, refusal: Refusal) {
        let (code, message, resets_at) = match refusal {
            Refusal::Exhausted(spent) => (
                ErrorCode::BudgetExceeded,
                format!(
                    "Your usage budget is spent; it resets at {}.",
                    spent.resets_at()
                ),
                Some(spent.resets_at()),
            ),
            Refusal::Unavailable => (
                ErrorCode::Unavailable,
                "Your usage budget cannot be checked right now; try again later.".to_string(),
                None,
            ),
        };
        tracing::info!(
            stream_id,
            code = code.as_str(),
            "agent call refused by the budget"
        );
        self.publish(StreamEvent::Error {
            thread: thread.to_string(),
            stream_id: stream_id.to_string(),
            code,
            message,
            error_class: None,
            resets_at,
        });
        self.stream_jobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(stream_id);
    }

    /// Add what the answer cost (its model's price times the tokens reported) to
    /// `llm_cost_total`.
    fn count_cost(&self, agent: &AgentSettings, outcome: &Generated) {
        let (Some(price), true) = (
            self.prices.get(&outcome.model),
            outcome.prompt_tokens.is_some() || outcome.completion_tokens.is_some(),
        ) else {
            return;
        };
        let cost = price.cost(
            outcome.prompt_tokens.unwrap_or(0),
            outcome.completion_tokens.unwrap_or(0),
        );
        self.metrics
            .llm_cost
            .with(&[&agent.id, &outcome.model])
            .add(cost);
    }

    /// The passages of the thread's documents for the last question in `history` that
    /// `requester` may read, numbered, within `budget` tokens; none when retrieval fails (the
    /// answer goes on without them).
    async fn passages_for(
        &self,
        thread: &str,
        requester: &str,
        history: &[Message],
        budget: usize,
    ) -> Vec<retrieval::Numbered> {
        let Some(question) = history
            .iter()
            .rev()
            .find(|m| m.author.kind == AuthorKind::User)
        else {
            return Vec::new();
        };
        let limit = self.document_passages as i64;
        match retrieval::passages(
            &self.db,
            &self.metrics,
            self.embedder.as_deref(),
            thread,
            requester,
            &question.body,
            limit,
        )
        .await
        {
            Ok(found) => retrieval::numbered(found, budget),
            Err(e) => {
                tracing::warn!(thread, error = %e, "document retrieval failed; answering without passages");
                Vec::new()
            }
        }
    }

    /// The memory items of `requester` for the last question in `history` (none unless they
    /// opted in; none when the database cannot tell: the answer goes on without them).
    async fn memories_for(
        &self,
        requester: &str,
        history: &[Message],
    ) -> Vec<crate::db::memories::MemoryItem> {
        let question = history
            .iter()
            .rev()
            .find(|m| m.author.kind == AuthorKind::User)
            .map_or("", |m| m.body.as_str());
        crate::memories::recall::recall(&self.db, &self.memories, requester, question)
            .await
            .unwrap_or_else(|e| {
                tracing::warn!(error = %e, "memory recall failed; answering without it");
                Vec::new()
            })
    }

    /// The thread so far (`page`): from the database, or the in-memory ring during an outage.
    async fn history(&self, thread: &str, page: Page) -> Vec<Message> {
        let id = thread.to_string();
        if let Ok(messages) = self
            .db
            .run(|s| async move { s.messages(&id, page, 100).await })
            .await
        {
            return messages;
        }
        let before = match page {
            Page::Before(seq) => seq,
            _ => i64::MAX,
        };
        self.realtime
            .hub
            .replay_from_ring(thread, 0)
            .map(|(_, frames)| {
                frames
                    .iter()
                    .filter_map(|f| serde_json::from_str::<serde_json::Value>(f.as_str()).ok())
                    .filter_map(|v| message_from_json(&v))
                    .filter(|m| m.seq < before)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Store an agent answer once (its client_id is derived from the stream) through the writer,
    /// like any message, waiting through a database outage. `answer`: it is the stream's answer
    /// (delivered after `stream_end`), not an incomplete remainder.
    #[allow(clippy::too_many_arguments)]
    async fn store(
        &self,
        thread: &str,
        stream_id: &str,
        (agent, requester): (&AgentSettings, &str),
        text: String,
        status: Option<&str>,
        outcome: &Generated,
        meta: MessageMeta,
        answer: bool,
    ) -> Option<Message> {
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
            meta: Some(Box::new(meta)),
            requester: Some(requester.to_string()),
            agent: None,
            stream_id: answer.then(|| stream_id.to_string()),
        };
        loop {
            let (tx, mut rx) = mpsc::unbounded_channel();
            if self.writer.submit(message.clone(), tx).is_err() {
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
}

/// Tokens to reserve for one call: the prompt as estimated, plus the most the answer may take.
fn reservation_estimate(request: &CompletionRequest) -> i64 {
    let prompt: usize = context::estimate_tokens(&request.system)
        + request
            .messages
            .iter()
            .map(|m| context::estimate_tokens(&m.content))
            .sum::<usize>();
    (prompt + request.max_tokens as usize) as i64
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
        prompt_tokens: v["prompt_tokens"].as_i64(),
        completion_tokens: v["completion_tokens"].as_i64(),
        meta: Some(MessageMeta {
            debate: serde_json::from_value(v["debate"].clone()).ok(),
            version_of: v["version_of"].as_str().map(str::to_string),
            model: v["model"].as_str().map(str::to_string),
            duration_ms: v["duration_ms"].as_u64(),
            error_class: v["error_class"].as_str().map(str::to_string),
            citations: serde_json::from_value(v["citations"].clone()).ok(),
            reasoning: v["reasoning"].as_str().map(str::to_string),
            reasoning_tokens: v["reasoning_tokens"].as_u64(),
            context_summary: serde_json::from_value(v["context_summary"].clone()).ok(),
        })
        .filter(|m| !m.is_empty())
        .map(Box::new),
    })
}
