//! The agent runtime: starts answers when a message naming an agent is first stored, runs
//! debates, cancels streams.

use std::{
    sync::{Arc, OnceLock},
    time::Duration,
};

use axum::Router;

use crate::{
    auth::Claims,
    db::{Message, NewMessage, writer::Reply},
    domain::{ClientId, MessageBody},
    messages::SendError,
    ops::metrics::Metrics,
    realtime::protocol::ErrorFrame,
    settings::Settings,
    state::AppState,
};

use super::AgentSettings;

/// Configured agents and their running streams.
pub struct Agents {
    agents: Vec<AgentSettings>,
    state: OnceLock<AppState>,
    #[allow(dead_code)]
    metrics: Arc<Metrics>,
}

impl Agents {
    pub fn new(settings: &Settings, metrics: Arc<Metrics>) -> Self {
        Self {
            agents: settings.agents.clone(),
            state: OnceLock::new(),
            metrics,
        }
    }

    pub fn attach(&self, state: AppState) {
        let _ = self.state.set(state);
    }

    pub fn knows(&self, id: &str) -> bool {
        self.agents.iter().any(|a| a.id == id)
    }

    pub fn list(&self) -> &[AgentSettings] {
        &self.agents
    }

    /// A message was stored for the first time.
    pub fn on_stored(&self, _message: &Message, _new: &NewMessage) {}

    /// Finish or interrupt running streams within `budget`.
    pub async fn drain(&self, _budget: Duration) {}
}

pub fn routes() -> Router<AppState> {
    Router::new()
}

#[allow(clippy::too_many_arguments)]
pub async fn start_debate(
    _state: &AppState,
    _user: &Claims,
    _thread: String,
    _client_id: ClientId,
    _topic: MessageBody,
    _agents: Vec<String>,
    _rounds: u32,
    _reply: Reply,
) -> Result<(), SendError> {
    Err(SendError::NotFound("debates are not available yet"))
}

pub async fn cancel(_state: &AppState, _user: &Claims, _stream_id: &str) -> Result<(), ErrorFrame> {
    Err(ErrorFrame::new("not_found", "no such stream"))
}
