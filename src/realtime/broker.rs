//! The broker interface: how events reach the other instances. The in-process broker has no
//! other instances; the Redis broker (scale-out) plugs in behind the same trait.

use super::Event;

/// Broker connectivity, as `/readyz` and `status` frames report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokerState {
    Local,
    Up,
    Down,
}

impl BrokerState {
    pub fn as_str(self) -> &'static str {
        match self {
            BrokerState::Local => "local",
            BrokerState::Up => "up",
            BrokerState::Down => "down",
        }
    }
}

/// Carries events to the other instances. Publishing never blocks.
pub trait Broker: Send + Sync {
    fn publish(&self, event: &Event);
    fn state(&self) -> BrokerState;
}

/// A single instance: nothing to carry.
pub struct LocalBroker;

impl Broker for LocalBroker {
    fn publish(&self, _event: &Event) {}
    fn state(&self) -> BrokerState {
        BrokerState::Local
    }
}

/// The broker for these settings: Redis when `EMERGENCE_BROKER_URL` is set, else in-process.
pub async fn connect(
    settings: &crate::settings::Settings,
    _realtime: std::sync::Arc<super::Realtime>,
    _db: crate::db::Database,
    _stop: tokio_util::sync::CancellationToken,
) -> Option<std::sync::Arc<dyn Broker>> {
    if settings.broker.url.is_some() {
        tracing::warn!(
            "EMERGENCE_BROKER_URL is set but this build has no Redis broker yet; running in-process"
        );
    }
    None
}
