//! Agents: AI personas that answer in threads. Their settings live in `settings::agents`; this
//! module owns the runtime: the jobs started by stored messages (`jobs`), one streamed turn
//! (`turn`) and its provider call (`call`), the HTTP routes (`http`), the context an agent sees
//! (`context`) and the summaries of older turns that no longer fit it (`summary`), the
//! providers, local models found on this machine (`discovery`) and what users read when an
//! answer fails (`errors`).

pub(crate) mod admin;
mod call;
mod context;
pub mod discovery;
pub mod errors;
pub(crate) mod http;
mod jobs;
pub mod providers;
pub mod registry;
pub mod secrets;
pub mod summary;
mod turn;

pub use crate::settings::agents::{AgentSettings, ProviderSettings, default_agents};
pub use http::routes;
pub use jobs::{Agents, VersionPlace};
