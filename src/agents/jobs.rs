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

use super::{AgentSettings, ProviderSettings, providers::Providers};
use crate::{
    db::{AgentRequest, AgentWork, Database, writer::MessageWriter, writer::Stored},
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

/// What one job needs to run its turns.
pub(super) struct JobControl {
    pub id: String,
    pub token: CancellationToken,
    pub reason: Arc<OnceLock<StopReason>>,
}

/// Configured agents, their providers, what they use to answer, and the jobs running here.
pub struct Agents {
    pub(super) agents: Vec<AgentSettings>,
    pub(super) providers: Providers,
    pub(super) settings: ProviderSettings,
    pub(super) metrics: Arc<Metrics>,
    pub(super) realtime: Arc<Realtime>,
    pub(super) db: Database,
    pub(super) writer: MessageWriter,
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
        let agents = Self {
            agents: settings.agents.clone(),
            providers: Providers::new(p.clone(), Duration::from_millis(p.connect_timeout_ms)),
            settings: p,
            metrics,
            realtime,
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
    /// `turn::generate`: its provider and model, or the offline one, and its fallback model).
    fn register_metric_labels(&self) {
        for agent in &self.agents {
            let (provider, model) = self.provider_of(agent);
            let fallback = agent
                .fallback_model
                .as_deref()
                .filter(|_| provider == agent.provider);
            for m in std::iter::once(model.as_str()).chain(fallback) {
                for outcome in crate::metrics::labels::LLM_OUTCOMES {
                    self.metrics.llm_requests.register(&[provider, m, outcome]);
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

    pub fn knows(&self, id: &str) -> bool {
        self.agents.iter().any(|a| a.id == id)
    }

    pub fn list(&self) -> &[AgentSettings] {
        &self.agents
    }

    pub(super) fn agent(&self, id: &str) -> Option<&AgentSettings> {
        self.agents.iter().find(|a| a.id == id)
    }

    /// The provider an agent really uses: its own when configured, else the offline one.
    pub(super) fn provider_of<'a>(&self, agent: &'a AgentSettings) -> (&'a str, String) {
        if self.providers.available(&agent.provider) {
            (agent.provider.as_str(), agent.model.clone())
        } else {
            ("local", "offline".to_string())
        }
    }

    /// A message was stored: start what it asks for, the first time only.
    fn on_stored(self: &Arc<Self>, stored: Stored) {
        let (true, Some(request)) = (stored.first, stored.request) else {
            return;
        };
        let AgentRequest { work, slot, .. } = request;
        let (agents, rounds) = match work {
            AgentWork::Answer { agent } => (vec![agent], 1),
            AgentWork::Debate { agents, rounds } => (agents, rounds),
        };
        let debate = agents.len() > 1;
        let job = JobControl {
            id: format!("job-{}", stored.message.id),
            token: CancellationToken::new(),
            reason: Arc::new(OnceLock::new()),
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
        let thread = stored.message.thread_id;
        self.tasks.spawn(async move {
            'rounds: for _round in 0..rounds {
                for agent_id in &agents {
                    if job.token.is_cancelled() {
                        break 'rounds;
                    }
                    let debate_id = debate.then(|| job.id.clone());
                    if !me.run_turn(&thread, agent_id, debate_id, &job).await {
                        break 'rounds;
                    }
                }
            }
            me.jobs
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&job.id);
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
