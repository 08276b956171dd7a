//! Operations: Prometheus metrics, and (as subcommands) the post-deploy verifier, the log guard
//! and the load generator.

pub mod guard;
pub mod load;
pub mod memory;
pub mod metric_labels;
pub mod metrics;
pub mod verify;
