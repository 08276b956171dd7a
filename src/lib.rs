//! Emergence: a self-hosted, real-time, multi-agent AI chat server.
//!
//! A message's path: HTTP `POST` or WebSocket `send` → [`messages`] (authorise, rate-limit) →
//! [`db::writer`] (queue, group commit, gapless `seq`) → [`realtime`] (hub fan-out here, broker
//! to other instances) → each subscriber's socket writer. [`agents`] answer messages that name
//! them; [`ops`] measures all of it.

pub mod agents;
pub mod assets;
pub mod auth;
pub mod cli;
pub mod db;
pub mod domain;
pub mod error;
pub mod health;
pub mod http;
pub mod limits;
pub mod messages;
pub mod ops;
pub mod realtime;
pub mod settings;
pub mod startup;
pub mod state;
pub mod telemetry;
pub mod threads;

pub use settings::Settings;
pub use startup::Application;
