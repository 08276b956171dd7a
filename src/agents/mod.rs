//! Agents: AI personas that answer in threads. Their settings live in `settings::agents`; this
//! module owns the runtime: the jobs started by stored messages (`jobs`), one streamed turn
//! (`turn`), the HTTP routes (`http`), the context an agent sees (`context`) and the providers.

mod context;
mod http;
mod jobs;
pub mod providers;
mod turn;

pub use crate::settings::agents::{AgentSettings, ProviderSettings, default_agents};
pub use http::routes;
pub use jobs::Agents;
