//! The agent service and its jobs. A job starts when a message that asks for agents is stored for
//! the first time (never on a repeat): the service listens to the writer's [`Stored`] events, it
//! is not called back by anyone. A job is one answer or a whole debate (turns one at a time) and
//! holds the requester's answer slot until it ends. Generation is owned by the instance, not by a
//! connection: a client that disconnects, reloads or moves to another instance does not stop it;
//! only `cancel` (a typed [`StreamEvent::Cancel`] command, from any instance) or a drain does.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, OnceLock},
    time::Duration,
};

use tokio::sync::mpsc;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use super::{
    AgentSettings, ProviderSettings,
    discovery::LocalModels,
    providers::{Providers, Route},
};
use crate::{
    db::{AgentRequest, AgentWork, Database, DebateRole, writer::MessageWriter, writer::Stored},
    limits::SlotLease,
    metrics::Metrics,
    realtime::{Event, Realtime, streams::StreamEvent},
    settings::Settings,
};

/// Why a running job was stopped.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum StopReason {
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

/// Where a turn stands in its debate (none for a plain answer).
#[derive(Debug, Clone)]
pub(super) struct TurnPlace {
    pub debate_id: String,
    pub round: Option<u32>,
    pub role: DebateRole,
}

/// The answer a regenerating job writes a new version of.
#[derive(Debug, Clone)]
pub struct VersionPlace {
    /// The answer's first version (the new one's `version_of`).
    pub of: String,
    /// The first version's `seq`: the new version sees the thread as it was before it.
    pub before_seq: i64,
}

/// What one job runs: its speakers in order for `rounds` rounds, then the mediator's synthesis.
struct JobPlan {
    agents: Vec<String>,
    rounds: u32,
    mediator: Option<String>,
    debate_id: Option<String>,
    version: Option<VersionPlace>,
}

/// What one job needs to run its turns.
pub(super) struct JobControl {
    pub id: String,
    /// Who asked: their budget pays for every turn, and the answers are theirs in usage.
    pub requester: String,
    pub token: CancellationToken,
    pub reason: Arc<OnceLock<StopReason>>,
    /// A regenerating job's answer.
    pub version: Option<VersionPlace>,
}

/// Configured agents, their providers, what they use to answer, and the jobs running here.
pub struct Agents {
    /// The agents of the settings file (they win over stored personas).
    pub(super) configured: Vec<AgentSettings>,
    /// The agents as they are now: settings and stored personas (`registry`).
    pub(super) registry: super::registry::Slot,
    pub(super) providers: Providers,
    pub(super) settings: ProviderSettings,
    /// Chat models found on local servers (Ollama, `local_urls`).
    pub(super) local: Arc<LocalModels>,
    pub(super) metrics: Arc<Metrics>,
    pub(super) realtime: Arc<Realtime>,
    pub(super) db: Database,
    pub(super) writer: MessageWriter,
    /// Token budgets, reserved before each provider call.
    pub(super) budgets: Arc<crate::usage::Budgets>,
    /// Price per model, for `llm_cost_total`.
    pub(super) prices: crate::settings::usage::PriceTable,
    /// Passages of the thread's documents a turn receives at most.
    pub(super) document_passages: usize,
    /// What a turn receives of its requester's memory items (issue #19).
    pub(super) memories: crate::settings::memories::MemorySettings,
    /// The embeddings model of hybrid retrieval, when one is configured.
    pub(super) embedder: Option<Arc<crate::documents::embed::Embedder>>,
    /// Running jobs by job id; streams map to their job.
    jobs: Mutex<HashMap<String, Job>>,
    pub(super) stream_jobs: Mutex<HashMap<String, String>>,
    tasks: TaskTracker,
}

impl Agents {
    pub fn new(
        settings: &Settings,
        metrics: Arc<Metrics>,
        realtime: Arc<Realtime>,
        db: Database,
        writer: MessageWriter,
    ) -> Self {
        let p = settings.providers.clone();
        let embedder = crate::documents::embed::Embedder::from_settings(settings, metrics.clone());
        let agents = Self {
            configured: settings.agents.clone(),
            registry: std::sync::RwLock::new(Arc::new(super::registry::Registry::from_settings(
                &settings.agents,
            ))),
            providers: Providers::new(p.clone(), Duration::from_millis(p.connect_timeout_ms)),
            settings: p,
            local: Arc::new(LocalModels::default()),
            metrics,
            realtime,
            budgets: Arc::new(crate::usage::Budgets::new(
                db.clone(),
                settings.budgets.clone(),
            )),
            prices: settings.prices.clone(),
            document_passages: settings.documents.passages,
            memories: settings.memories.clone(),
            embedder,
            db,
            writer,
            jobs: Mutex::new(HashMap::new()),
            stream_jobs: Mutex::new(HashMap::new()),
            tasks: TaskTracker::new(),
        };
        agents.register_metric_labels();
        agents
    }

    /// Export `llm_requests_total` at 0 for every provider and model an agent may call (see
    /// `call::generate`: its provider and model, a local one, or the offline one, and its
    /// fallback model and fallback agent), and `llm_errors_total` for each of those providers and failure classes.
    pub(super) fn register_metric_labels(&self) {
        let registry = self.registry();
        for agent in registry.agents.iter().map(|p| &p.settings) {
            let route = self.route(agent);
            for route in self.tries(agent, &route) {
                for class in super::errors::CLASSES
                    .iter()
                    .filter(|c| super::errors::is_provider_failure(**c))
                {
                    self.metrics
                        .llm_errors
                        .register(&[&route.provider, super::errors::class_str(*class)]);
                }
                self.metrics.llm_cost.register(&[&agent.id, &route.model]);
                for outcome in crate::metrics::labels::LLM_OUTCOMES {
                    self.metrics
                        .llm_requests
                        .register(&[&route.provider, &route.model, outcome]);
                }
            }
        }
    }

    /// Act on stored messages (start what they ask for) and on stream commands (cancel,
    /// snapshot requests) until both channels close or `stop`.
    pub fn listen(
        self: &Arc<Self>,
        mut stored: mpsc::UnboundedReceiver<Stored>,
        mut commands: mpsc::UnboundedReceiver<StreamEvent>,
        stop: CancellationToken,
    ) {
        let me = self.clone();
        let db = self.db.clone();
        self.local.watch(
            self.providers.clone(),
            self.settings.clone(),
            async move { db.first_attempt().await },
            stop.clone(),
            move |_| me.register_metric_labels(),
        );
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    Some(s) = stored.recv() => me.on_stored(s),
                    Some(c) = commands.recv() => me.on_command(&c),
                    else => return,
                }
            }
        });
    }

    /// The token budgets every agent call is checked against.
    pub fn budgets(&self) -> &crate::usage::Budgets {
        &self.budgets
    }

    pub fn knows(&self, id: &str) -> bool {
        self.registry().agents.iter().any(|a| a.settings.id == id)
    }

    /// The agents any message may ask now.
    pub fn list(&self) -> Vec<AgentSettings> {
        self.registry()
            .agents
            .iter()
            .map(|a| a.settings.clone())
            .collect()
    }

    pub(super) fn agent(&self, id: &str) -> Option<AgentSettings> {
        self.registry()
            .agents
            .iter()
            .find(|a| a.settings.id == id)
            .map(|a| a.settings.clone())
    }

    /// Where an agent's calls really go: its own provider when configured; else (the default
    /// personas on `local`, or a provider without a key) the first local chat model found on
    /// this machine; else the offline agent.
    pub(super) fn route(&self, agent: &AgentSettings) -> Route {
        // A stored persona calls its own connection.
        let connection = self
            .registry()
            .agents
            .iter()
            .find(|a| a.settings.id == agent.id)
            .and_then(|a| a.connection.clone());
        if let Some(c) = connection {
            return Route {
                provider: c.kind.clone(),
                model: agent.model.clone(),
                base_url: None,
                connection: Some(c),
            };
        }
        if agent.provider != "local" && self.providers.available(&agent.provider) {
            return Route {
                provider: agent.provider.clone(),
                model: agent.model.clone(),
                base_url: None,
                connection: None,
            };
        }
        match self.local.first() {
            Some(m) => Route {
                provider: m.provider.to_string(),
                model: m.model,
                base_url: Some(m.base_url),
                connection: None,
            },
            None => Route {
                provider: "local".into(),
                model: "offline".into(),
                base_url: None,
                connection: None,
            },
        }
    }

    /// The provider and model an agent really uses (what `GET /api/agents` shows).
    pub fn provider_of(&self, agent: &AgentSettings) -> (String, String) {
        let route = self.route(agent);
        (route.provider, route.model)
    }

    /// A message was stored: start what it asks for, the first time only.
    fn on_stored(self: &Arc<Self>, stored: Stored) {
        let (true, Some(request)) = (stored.first, stored.request) else {
            return;
        };
        let AgentRequest {
            work,
            slots,
            requester,
        } = request;
        let message = &stored.message;
        let single = |agent: String| JobPlan {
            agents: vec![agent],
            rounds: 1,
            mediator: None,
            debate_id: None,
            version: None,
        };
        let plans: Vec<(String, JobPlan)> = match work {
            AgentWork::Answer { agent } => vec![(format!("job-{}", message.id), single(agent))],
            // One job per agent: each answer runs and stops on its own.
            AgentWork::Several { agents } => agents
                .into_iter()
                .enumerate()
                .map(|(i, agent)| (format!("job-{}-{i}", message.id), single(agent)))
                .collect(),
            AgentWork::Debate {
                agents,
                rounds,
                mediator,
            } => {
                let id = crate::db::debate_id_for(&message.id);
                vec![(
                    id.clone(),
                    JobPlan {
                        agents,
                        rounds,
                        mediator,
                        debate_id: Some(id),
                        version: None,
                    },
                )]
            }
        };
        for ((job_id, plan), slot) in plans.into_iter().zip(slots) {
            self.start_job(
                message.thread_id.clone(),
                job_id,
                requester.clone(),
                plan,
                slot,
            );
        }
    }

    /// Write a new version of an answer (the caller recorded the request once, see
    /// `crate::regenerate`): one turn of `agent`, holding the requester's `slot` until it ends.
    pub fn regenerate(
        self: &Arc<Self>,
        thread: String,
        job_id: String,
        requester: String,
        agent: String,
        version: VersionPlace,
        slot: Arc<SlotLease>,
    ) {
        let plan = JobPlan {
            agents: vec![agent],
            rounds: 1,
            mediator: None,
            debate_id: None,
            version: Some(version),
        };
        self.start_job(thread, job_id, requester, plan, slot);
    }

    /// Run one job's turns in order, holding `slot` until it ends.
    fn start_job(
        self: &Arc<Self>,
        thread: String,
        job_id: String,
        requester: String,
        plan: JobPlan,
        slot: Arc<SlotLease>,
    ) {
        let job = JobControl {
            id: job_id,
            requester,
            token: CancellationToken::new(),
            reason: Arc::new(OnceLock::new()),
            version: plan.version.clone(),
        };
        self.jobs.lock().unwrap_or_else(|e| e.into_inner()).insert(
            job.id.clone(),
            Job {
                token: job.token.clone(),
                reason: job.reason.clone(),
                _slot: slot,
            },
        );
        let me = self.clone();
        self.tasks.spawn(async move {
            let place = |round: Option<u32>, role: DebateRole| {
                plan.debate_id.as_ref().map(|id| TurnPlace {
                    debate_id: id.clone(),
                    round,
                    role,
                })
            };
            let mut finished = true;
            'rounds: for round in 1..=plan.rounds {
                for agent_id in &plan.agents {
                    if job.token.is_cancelled()
                        || !me
                            .run_turn(
                                &thread,
                                agent_id,
                                place(Some(round), DebateRole::Turn),
                                &job,
                            )
                            .await
                    {
                        finished = false;
                        break 'rounds;
                    }
                }
            }
            // The mediator closes a debate that ran all its rounds.
            if let Some(mediator) = plan.mediator.as_ref().filter(|_| finished)
                && !job.token.is_cancelled()
            {
                me.run_turn(&thread, mediator, place(None, DebateRole::Synthesis), &job)
                    .await;
            }
            me.jobs
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&job.id);
            // Every instance forgets the debate: it can no longer be stopped.
            if let Some(debate_id) = plan.debate_id {
                me.publish(StreamEvent::DebateEnded { thread, debate_id });
            }
        });
    }

    pub(super) fn publish(&self, event: StreamEvent) {
        self.realtime.publish(Event::Stream(event));
    }

    /// Commands about streams (from this instance or another) that concern streams running here.
    fn on_command(&self, event: &StreamEvent) {
        match event {
            StreamEvent::Cancel { stream_id } => {
                self.cancel_local(stream_id);
            }
            // A debate's job id is its debate id.
            StreamEvent::CancelDebate { debate_id } => {
                self.cancel_job(debate_id);
            }
            StreamEvent::SnapshotRequest { stream_id } => {
                let owned = self
                    .stream_jobs
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .contains_key(stream_id);
                if let (true, Some(stream)) = (owned, self.realtime.streams.get(stream_id)) {
                    self.publish(StreamEvent::Snapshot {
                        thread: stream.thread.clone(),
                        stream_id: stream.id.clone(),
                        agent_id: stream.agent_id.clone(),
                        agent_name: stream.agent_name.clone(),
                        debate_id: stream.debate_id.clone(),
                        text: stream.text(),
                        reasoning: stream.reasoning(),
                        model: stream.model(),
                        round: stream.round,
                        role: stream.role,
                        version_of: stream.version_of.clone(),
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
        self.cancel_job(&job_id)
    }

    /// Stop a job (an answer or a whole debate) if it runs here: its running turn ends
    /// `cancelled` and no further turn starts.
    fn cancel_job(&self, job_id: &str) -> bool {
        let jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(job) = jobs.get(job_id) {
            let _ = job.reason.set(StopReason::Cancelled);
            job.token.cancel();
            return true;
        }
        false
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
