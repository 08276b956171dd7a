//! Operations: the operator tools that run as subcommands: the post-deploy verifier, the log
//! guard and the load generator. (The metrics registry they read is `crate::metrics`.)

pub mod guard;
pub mod load;
pub mod verify;
