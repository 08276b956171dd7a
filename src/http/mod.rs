//! HTTP plumbing shared by the resource modules: JSON bodies and client addresses.

pub mod client_ip;
pub mod json;
