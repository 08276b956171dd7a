//! Black-box integration tests: each starts the real server on port 0 with its own database.

mod support;

mod agents;
mod alerts;
mod auth;
mod authz;
mod backup;
mod chat;
mod early_answers;
mod frames;
mod fuzz;
mod hardening;
mod lifecycle;
mod metric_meanings;
mod metric_meanings_db;
mod metrics;
mod ops_cli;
mod ops_guard_metrics;
mod ops_verify_outage;
mod readiness;
mod resilience;
mod scale;
mod security;
mod security_limits;
mod soak;
mod storage;
mod streams;
mod web;
