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

/// Resolves once the other instances' events for a followed thread reach this instance.
pub type Following = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// Carries events to the other instances. Publishing never blocks.
pub trait Broker: Send + Sync {
    fn publish(&self, event: &Event);
    fn state(&self) -> BrokerState;
    /// A socket here subscribed to `thread`: receive its events from now on (sharded
    /// fan-out). Every `follow` is paired with one [`Broker::unfollow`].
    fn follow(&self, thread: &str) -> Following;
    /// A socket here left `thread`; a while after the last one, its events stop coming
    /// ([`Inbound::Unfollowed`]).
    fn unfollow(&self, thread: &str);
}

/// A single instance: nothing to carry.
pub struct LocalBroker;

impl Broker for LocalBroker {
    fn publish(&self, _event: &Event) {}
    fn state(&self) -> BrokerState {
        BrokerState::Local
    }
    fn follow(&self, _thread: &str) -> Following {
        Box::pin(std::future::ready(()))
    }
    fn unfollow(&self, _thread: &str) {}
}

/// What the broker brings from the other instances, for realtime to apply (in order).
#[derive(Debug)]
pub enum Inbound {
    /// Another instance's event.
    Event(Box<Event>),
    /// Another instance could not publish events of these threads: re-read them.
    Resync(Vec<String>),
    /// The broker (re)connected: whatever was sent before is unknown here (a gap, or sockets
    /// that subscribed before the first connection succeeded); re-read everything subscribed
    /// here and ask for snapshots of streams run elsewhere.
    Reconnected,
    /// The broker's connectivity changed (`status` frames).
    State(BrokerState),
    /// This instance stopped receiving the thread's events (sharded fan-out, no subscriber
    /// here for a while).
    Unfollowed(String),
}

/// The broker, and the receiver of what the other instances send (`None`: there are none).
pub type Connected = (
    std::sync::Arc<dyn Broker>,
    Option<tokio::sync::mpsc::UnboundedReceiver<Inbound>>,
);

/// The broker for these settings: Redis when `EMERGENCE_BROKER_URL` is set, else in-process.
pub fn connect(
    settings: &crate::settings::Settings,
    metrics: std::sync::Arc<crate::metrics::Metrics>,
    stop: tokio_util::sync::CancellationToken,
) -> anyhow::Result<Connected> {
    match &settings.broker.url {
        Some(url) => {
            let mut target = super::redis::RedisTarget::parse(url.expose())?;
            target.channel = settings.broker.channel.clone();
            let (broker, inbound) =
                super::redis::RedisBroker::start(target, settings.broker.sharding, metrics, stop);
            Ok((broker, Some(inbound)))
        }
        None => {
            metrics.broker_up.set(1);
            Ok((std::sync::Arc::new(LocalBroker), None))
        }
    }
}
