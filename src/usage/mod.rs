//! Usage, cost and budgets (issue #15): who spent which tokens through which agent and model,
//! what that cost (`report`, from the stored per-message token counts and the settings' price
//! table), and the per-user daily and monthly token budgets checked before any provider call
//! (`budget`). `http` owns the routes.

pub mod budget;
pub(crate) mod http;
pub mod report;

pub use budget::Budgets;
pub use http::routes;
