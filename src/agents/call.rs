//! One provider call of a turn, with its retries: open the stream and wait for its first token;
//! on a retryable failure (408, 409, 429, 5xx, unreachable, a stream that broke before any text)
//! try again while the retry budget allows, after the provider's `Retry-After` or a short
//! backoff, telling the watchers "retrying in N s" (`StreamEvent::Retry`); then the agent's
//! fallback (another model of the agent, or another agent). Once text or reasoning flows, the
//! stream is read to its end, its chunks coalesced; reasoning goes to its own frames
//! (`StreamEvent::Reasoning`) and never into the answer text.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;

use super::{
    AgentSettings,
    jobs::Agents,
    providers::{CompletionRequest, EventStream, ProviderError, ProviderEvent, Route},
};
use crate::{agents::errors, contract::AgentErrorClass, realtime::streams::StreamEvent};

/// At most one chunk frame per stream per this interval.
const COALESCE: Duration = Duration::from_millis(25);

/// Where a call was when it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) enum Phase {
    /// Before the provider answered with a status.
    #[default]
    Connect,
    /// Answered, before the first text.
    FirstToken,
    /// While text was flowing.
    MidStream,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Connect => "connect",
            Phase::FirstToken => "first_token",
            Phase::MidStream => "mid_stream",
        }
    }
}

/// What a call produced.
#[derive(Default)]
pub(super) struct Generated {
    pub text: String,
    /// The model's reasoning ("thinking"), apart from the answer.
    pub reasoning: String,
    /// Reasoning tokens, when the provider reported them.
    pub reasoning_tokens: Option<u64>,
    pub error: Option<ProviderError>,
    pub prompt_tokens: Option<u64>,
    pub completion_tokens: Option<u64>,
    pub phase: Phase,
    pub retries: u32,
    /// The model that answered last (the fallback model when it was used).
    pub model: String,
    /// Its provider (the fallback agent's when it was used).
    pub provider: String,
}

impl Generated {
    /// Usage counts: the last non-zero value wins (gateways send 0 first, the count later).
    fn usage(&mut self, prompt: Option<u64>, completion: Option<u64>) {
        if let Some(p) = prompt.filter(|p| *p > 0) {
            self.prompt_tokens = Some(p);
        }
        if let Some(c) = completion.filter(|c| *c > 0) {
            self.completion_tokens = Some(c);
        }
    }
}

/// A stream that has produced its first text (or ended without any).
struct Opened {
    events: EventStream,
    early: Vec<ProviderEvent>,
}

impl Agents {
    /// Call the provider of `route` (retries and fallback before the first token), publishing
    /// coalesced chunks with their offsets.
    pub(super) async fn generate(
        &self,
        thread: &str,
        stream_id: &str,
        agent: &AgentSettings,
        route: &Route,
        request: CompletionRequest,
        token: &CancellationToken,
    ) -> Generated {
        let mut out = Generated {
            model: route.model.clone(),
            ..Generated::default()
        };
        let first_token_timeout = Duration::from_millis(self.settings.first_token_timeout_ms);
        let budget = Duration::from_millis(self.settings.retry_budget_ms);
        let started = Instant::now();
        let tries = self.tries(agent, route);
        let mut last_try = Duration::ZERO;
        let mut opened = None;
        let mut answering = route.clone();
        'models: for (i, route) in tries.iter().enumerate() {
            if i > 0 && started.elapsed() + last_try > budget {
                break;
            }
            let route = route.clone();
            out.model = route.model.clone();
            out.provider = route.provider.clone();
            answering = route.clone();
            // Watchers (and sockets that attach later) learn the model that answers now.
            if i > 0 {
                self.publish(StreamEvent::ModelChanged {
                    thread: thread.to_string(),
                    stream_id: stream_id.to_string(),
                    model: route.model.clone(),
                });
            }
            for attempt in 0..=self.settings.max_retries {
                let limit = if i == 0 && attempt == 0 {
                    first_token_timeout
                } else {
                    first_token_timeout.min(budget.saturating_sub(started.elapsed()))
                };
                let try_started = Instant::now();
                let mut phase = Phase::Connect;
                let result = tokio::select! {
                    _ = token.cancelled() => {
                        out.phase = phase;
                        return out;
                    }
                    r = tokio::time::timeout(limit, self.first_text(&route, &request, &mut phase)) => r,
                };
                out.phase = phase;
                let e = match result {
                    Ok(Ok(o)) => {
                        opened = Some(o);
                        break 'models;
                    }
                    Ok(Err(e)) => e,
                    Err(_) => ProviderError::timeout(),
                };
                self.count(&route, outcome_label(e.class));
                self.count_error(&route, e.class);
                last_try = try_started.elapsed();
                let wait = e
                    .retry_after
                    .unwrap_or(Duration::from_millis(250 << attempt));
                let retry = e.retryable()
                    && attempt < self.settings.max_retries
                    && started.elapsed() + wait + last_try <= budget;
                if !retry {
                    out.error = Some(e);
                    break;
                }
                out.retries += 1;
                tracing::info!(
                    agent = %agent.id, provider = %route.provider, model = %route.model, stream_id,
                    phase = phase.as_str(), status = e.status, retries = out.retries,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    error_class = errors::class_str(e.class), retry_in_ms = wait.as_millis() as u64,
                    detail = %self.scrub(&route, &e.detail),
                    "provider attempt failed; retrying"
                );
                self.publish(StreamEvent::Retry {
                    thread: thread.to_string(),
                    stream_id: stream_id.to_string(),
                    attempt: out.retries,
                    retry_in_ms: wait.as_millis() as u64,
                    error_class: e.class,
                });
                tokio::select! {
                    _ = token.cancelled() => return out,
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        }
        let Some(opened) = opened else {
            if out.error.is_none() {
                out.error = Some(ProviderError::new(
                    AgentErrorClass::Unavailable,
                    "no answer",
                ));
            }
            return out;
        };
        out.error = None;
        self.read_stream(
            thread, stream_id, &answering, opened, token, started, &mut out,
        )
        .await;
        out
    }

    /// Where a turn may go, in order: the agent's route, its fallback model on the same
    /// provider, then its fallback agent's route (that agent's provider, connection and model;
    /// the persona and its prompt stay the asking agent's).
    pub(super) fn tries(&self, agent: &AgentSettings, route: &Route) -> Vec<Route> {
        let mut tries = vec![route.clone()];
        if let Some(model) = agent
            .fallback_model
            .clone()
            .filter(|m| route.provider == agent.provider && *m != route.model)
        {
            tries.push(Route {
                model,
                ..route.clone()
            });
        }
        if let Some(other) = agent
            .fallback_agent
            .as_deref()
            .filter(|id| *id != agent.id)
            .and_then(|id| self.agent(id))
        {
            let other = self.route(&other);
            if !tries.contains(&other) {
                tries.push(other);
            }
        }
        tries
    }

    /// Open the stream and read it up to its first text (usage before it is kept).
    async fn first_text(
        &self,
        route: &Route,
        request: &CompletionRequest,
        phase: &mut Phase,
    ) -> Result<Opened, ProviderError> {
        let mut events = self.providers.open(route, request).await?;
        *phase = Phase::FirstToken;
        let mut early = Vec::new();
        loop {
            match events.next().await {
                None => return Ok(Opened { events, early }),
                Some(Err(e)) => return Err(e),
                Some(Ok(ev)) => {
                    // Reasoning counts as the first token: the model is answering.
                    let text = matches!(ev, ProviderEvent::Delta(_) | ProviderEvent::Reasoning(_));
                    early.push(ev);
                    if text {
                        return Ok(Opened { events, early });
                    }
                }
            }
        }
    }

    /// Read an opened stream to its end, publishing coalesced chunks.
    #[allow(clippy::too_many_arguments)]
    async fn read_stream(
        &self,
        thread: &str,
        stream_id: &str,
        route: &Route,
        opened: Opened,
        token: &CancellationToken,
        started: Instant,
        out: &mut Generated,
    ) {
        let idle_timeout = Duration::from_millis(self.settings.idle_timeout_ms);
        let Opened { mut events, early } = opened;
        let mut early = early.into_iter();
        let mut pending = Pending::default();
        let mut last_flush = Instant::now() - COALESCE;
        let mut first_token = true;
        let outcome = loop {
            let flush_at = tokio::time::Instant::from_std(last_flush + COALESCE);
            let next = async {
                match early.next() {
                    Some(ev) => Ok(Some(Ok(ev))),
                    None => tokio::time::timeout(idle_timeout, events.next()).await,
                }
            };
            tokio::select! {
                _ = token.cancelled() => break "cancelled",
                _ = tokio::time::sleep_until(flush_at), if !pending.is_empty() => {
                    self.flush(thread, stream_id, &mut pending, out);
                    last_flush = Instant::now();
                }
                next = next => match next {
                    Err(_) => {
                        out.error = Some(ProviderError::timeout());
                        break "timeout";
                    }
                    Ok(None) => break "ok",
                    Ok(Some(Err(e))) => {
                        let label = outcome_label(e.class);
                        out.error = Some(e);
                        break label;
                    }
                    Ok(Some(Ok(ev @ (ProviderEvent::Delta(_) | ProviderEvent::Reasoning(_))))) => {
                        if first_token {
                            first_token = false;
                            out.phase = Phase::MidStream;
                            self.metrics.llm_first_token.with(&[&route.provider]).observe(started.elapsed());
                        }
                        match ev {
                            ProviderEvent::Reasoning(r) => pending.reasoning.push_str(&r),
                            ProviderEvent::Delta(d) => pending.text.push_str(&d),
                            _ => {}
                        }
                        if last_flush.elapsed() >= COALESCE {
                            self.flush(thread, stream_id, &mut pending, out);
                            last_flush = Instant::now();
                        }
                    }
                    Ok(Some(Ok(ProviderEvent::ReasoningTokens(n)))) => {
                        out.reasoning_tokens = Some(n);
                    }
                    Ok(Some(Ok(ProviderEvent::Usage { prompt, completion }))) => {
                        out.usage(prompt, completion);
                    }
                }
            }
        };
        if !pending.is_empty() {
            self.flush(thread, stream_id, &mut pending, out);
        }
        let counted = Route {
            model: out.model.clone(),
            ..route.clone()
        };
        self.count(&counted, outcome);
        if let Some(e) = &out.error {
            self.count_error(&counted, e.class);
        }
        if let Some(p) = out.prompt_tokens {
            self.metrics.llm_tokens.with(&["prompt"]).add(p);
        }
        if let Some(c) = out.completion_tokens {
            self.metrics.llm_tokens.with(&["completion"]).add(c);
        }
    }

    fn count(&self, route: &Route, outcome: &str) {
        self.metrics
            .llm_requests
            .with(&[&route.provider, &route.model, outcome])
            .inc();
    }

    fn count_error(&self, route: &Route, class: AgentErrorClass) {
        self.metrics
            .llm_errors
            .with(&[&route.provider, errors::class_str(class)])
            .inc();
    }

    /// Publish what is pending: the reasoning first, then the answer text, each at its offset.
    fn flush(&self, thread: &str, stream_id: &str, pending: &mut Pending, out: &mut Generated) {
        if !pending.reasoning.is_empty() {
            let delta = std::mem::take(&mut pending.reasoning);
            let offset = pending.reasoning_sent;
            pending.reasoning_sent += delta.chars().count();
            out.reasoning.push_str(&delta);
            self.publish(StreamEvent::Reasoning {
                thread: thread.to_string(),
                stream_id: stream_id.to_string(),
                offset,
                delta,
            });
        }
        if !pending.text.is_empty() {
            let delta = std::mem::take(&mut pending.text);
            let offset = pending.text_sent;
            pending.text_sent += delta.chars().count();
            out.text.push_str(&delta);
            self.publish(StreamEvent::Chunk {
                thread: thread.to_string(),
                stream_id: stream_id.to_string(),
                offset,
                delta,
            });
        }
    }

    /// Upstream detail for the log, without the provider's key (some echo it back).
    pub(super) fn scrub(&self, route: &Route, detail: &str) -> String {
        let own = route
            .connection
            .as_ref()
            .and_then(|c| c.key.as_ref())
            .map(|k| k.expose());
        let mut out = detail.to_string();
        for key in [self.providers.key_of(&route.provider), own]
            .into_iter()
            .flatten()
            .filter(|k| k.len() >= 4)
        {
            out = out.replace(key, "[redacted]");
        }
        out
    }
}

/// Text and reasoning read but not yet published, and how many characters of each were.
#[derive(Default)]
struct Pending {
    text: String,
    text_sent: usize,
    reasoning: String,
    reasoning_sent: usize,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.text.is_empty() && self.reasoning.is_empty()
    }
}

/// The `outcome` label of `llm_requests_total` for a failure.
fn outcome_label(class: AgentErrorClass) -> &'static str {
    match class {
        AgentErrorClass::RateLimited => "rate_limited",
        AgentErrorClass::TimedOut => "timeout",
        _ => "error",
    }
}
