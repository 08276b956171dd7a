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
pub fn connect(
    settings: &crate::settings::Settings,
    realtime: std::sync::Arc<super::Realtime>,
    db: crate::db::Database,
    metrics: std::sync::Arc<crate::metrics::Metrics>,
    stop: tokio_util::sync::CancellationToken,
) -> anyhow::Result<std::sync::Arc<dyn Broker>> {
    match &settings.broker.url {
        Some(url) => {
            let mut target = super::redis::RedisTarget::parse(url.expose())?;
            target.channel = settings.broker.channel.clone();
            Ok(super::redis::RedisBroker::start(
                target, realtime, db, metrics, stop,
            ))
        }
        None => {
            metrics.broker_up.set(1);
            Ok(std::sync::Arc::new(LocalBroker))
        }
    }
}
