//! The application state shared by every handler: one cheap-to-clone bundle of handles.

use std::sync::{
    Arc,
    atomic::{AtomicU8, Ordering},
};

use crate::{
    agents::Agents,
    auth::Auth,
    db::{Database, writer::MessageWriter},
    limits::Limits,
    metrics::Metrics,
    realtime::Realtime,
    settings::Settings,
    threads::Membership,
};

/// Everything a request handler may need. The router clones it for every request (and for
/// every route it is built with), so it is one shared allocation: a clone is one reference
/// count, not one per service (a cold start spent about 1 ms cloning and dropping the fields).
#[derive(Clone)]
pub struct AppState(Arc<Services>);

impl AppState {
    pub fn new(services: Services) -> Self {
        Self(Arc::new(services))
    }
}

impl std::ops::Deref for AppState {
    type Target = Services;

    fn deref(&self) -> &Services {
        &self.0
    }
}

/// The services behind [`AppState`].
pub struct Services {
    pub settings: Arc<Settings>,
    pub db: Database,
    pub writer: MessageWriter,
    pub auth: Arc<Auth>,
    pub realtime: Arc<Realtime>,
    pub members: Arc<Membership>,
    pub limits: Arc<Limits>,
    pub metrics: Arc<Metrics>,
    pub lifecycle: Arc<Lifecycle>,
    pub agents: Arc<Agents>,
    pub web: Arc<crate::assets::WebUi>,
    /// Uploaded documents: extraction jobs and their limits.
    pub documents: Arc<crate::documents::Documents>,
    /// Per-user memory: capture, summaries, the frames of changes (issue #19).
    pub memories: Arc<crate::memories::Memories>,
}

/// Where the instance is in its life: starting, serving, or draining for shutdown.
#[derive(Default)]
pub struct Lifecycle(AtomicU8);

/// Lifecycle phases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Starting,
    Serving,
    Draining,
}

impl Lifecycle {
    pub fn phase(&self) -> Phase {
        match self.0.load(Ordering::Acquire) {
            0 => Phase::Starting,
            1 => Phase::Serving,
            _ => Phase::Draining,
        }
    }
    pub fn set(&self, phase: Phase) {
        self.0.store(phase as u8, Ordering::Release);
    }
    pub fn is_draining(&self) -> bool {
        self.phase() == Phase::Draining
    }
}
