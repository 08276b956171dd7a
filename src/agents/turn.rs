//! One agent turn: open the provider's stream (retries and a fallback model before the first
//! token), publish its chunks coalesced (`stream_chunk`, at most one per stream every 25 ms),
//! and store the answer through the writer like any other message; delivery then sends
//! `stream_end` followed by the stored `message`. A failure or a stop ends the stream with
//! `stream_error`, and its partial text is stored as `incomplete`.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{
    AgentSettings, context,
    jobs::{Agents, JobControl, StopReason},
    providers::{CompletionRequest, EventStream, ProviderError, ProviderEvent},
};
use crate::{
    contract::ErrorCode,
    db::{Author, AuthorKind, Message, NewMessage, Page, now_ms, writer::WriteEvent},
    realtime::streams::StreamEvent,
};

/// At most one chunk frame per stream per this interval.
const COALESCE: Duration = Duration::from_millis(25);

impl Agents {
    /// Run one agent turn of `job`; `false` when the job must stop (cancelled, interrupted or
    /// failed).
    pub(super) async fn run_turn(
        &self,
        thread: &str,
        agent_id: &str,
        debate_id: Option<String>,
        job: &JobControl,
    ) -> bool {
        let (token, reason) = (&job.token, &job.reason);
        let Some(agent) = self.agent(agent_id).cloned() else {
            return false;
        };
        let stream_id = uuid::Uuid::now_v7().to_string();
        self.stream_jobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(stream_id.clone(), job.id.clone());
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
                    Some(StopReason::Interrupted) => ErrorCode::Interrupted,
                    _ => ErrorCode::Cancelled,
                };
                (
                    Some("incomplete"),
                    Some((code, format!("the answer was {}", code.as_str()))),
                )
            }
            (Some(e), false) => (Some("incomplete"), Some((e.code(), e.to_string()))),
            (None, false) => (None, None),
        };
        let finished_ok = error.is_none();
        match error {
            // The error first, then the partial text (if any) as an incomplete message.
            Some((code, message)) => {
                self.publish(StreamEvent::Error {
                    thread: thread.to_string(),
                    stream_id: stream_id.clone(),
                    code,
                    message,
                });
                if !text.is_empty() {
                    self.store(thread, &stream_id, &agent, text, status, &outcome, false)
                        .await;
                }
            }
            // Stored as the stream's answer: delivery sends `stream_end`, then the `message`.
            None => {
                self.store(thread, &stream_id, &agent, text, status, &outcome, true)
                    .await;
            }
        }
        self.stream_jobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&stream_id);
        finished_ok
    }

    /// The thread so far: from the database, or the in-memory ring during an outage.
    async fn history(&self, thread: &str) -> Vec<Message> {
        let id = thread.to_string();
        if let Ok(messages) = self
            .db
            .run(|s| async move { s.messages(&id, Page::Latest, 100).await })
            .await
        {
            return messages;
        }
        self.realtime
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

    /// Store an agent answer once (its client_id is derived from the stream) through the writer,
    /// like any message, waiting through a database outage. `answer`: it is the stream's answer
    /// (delivered after `stream_end`), not an incomplete remainder.
    #[allow(clippy::too_many_arguments)]
    async fn store(
        &self,
        thread: &str,
        stream_id: &str,
        agent: &AgentSettings,
        text: String,
        status: Option<&str>,
        outcome: &Generated,
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
