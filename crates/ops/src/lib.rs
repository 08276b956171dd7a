//! Emergence's operator tools, outside the server library: the post-deployment verifier
//! ([`verify`]), the log guard ([`guard`]) and the open-loop load generator ([`load`]), with
//! their command lines ([`cli`], run by the `emergence` binary as `emergence verify|guard|load`).
//!
//! They reach a deployment only through its public interface, with the typed client of
//! `emergence-client` (the same client the integration tests use); none of them links the server.

pub mod cli;
pub mod guard;
pub mod load;
mod secret;
pub mod verify;

pub use secret::Secret;
