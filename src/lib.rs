//! Emergence: a self-hosted, real-time, multi-agent AI chat server.
//!
//! A message's path (docs/architecture.md draws it): HTTP `POST` ([`messages`]) or WebSocket
//! `send` ([`realtime::connection`]) → [`send`] (authorise, rate-limit, reserve an answer slot) →
//! [`db::writer`] (queue, group commit, gapless `seq`), which reports a `Stored` event →
//! [`realtime`] delivers it (hub fan-out here, broker to other instances) and hands requests for
//! agents on to [`agents`], whose answers take the same write path. Each subscriber's connection
//! task writes what is queued for its socket in one go. The operator tools that measure all of it
//! live outside this library, in `crates/ops` (with the typed client of `crates/client`).

/// The allocator: jemalloc, whose background thread returns freed memory to the system after a
/// burst (glibc malloc keeps it; mimalloc costs more per idle connection): measured side by side
/// in docs/performance.md. It is also the process's `malloc` (unprefixed), so SQLite, which
/// allocates through `malloc`, uses it too: glibc's malloc was 7 % of the server's CPU under the
/// persist bench. `--no-default-features` builds with the system allocator.
#[cfg(feature = "jemalloc")]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read before `main`: a background thread purges freed pages (after
/// `dirty_decay_ms`) even while the process is idle, so RSS returns to its baseline.
#[cfg(feature = "jemalloc")]
#[unsafe(export_name = "malloc_conf")]
#[allow(non_upper_case_globals)]
pub static malloc_conf: Option<&'static std::ffi::c_char> =
    Some(unsafe { &*c"background_thread:true,dirty_decay_ms:5000,muzzy_decay_ms:0".as_ptr() });

pub mod agents;
pub mod assets;
pub mod auth;
pub mod cli;
pub mod db;
pub mod documents;
pub mod domain;
pub mod error;
pub mod export;
pub mod health;
pub mod http;
pub mod limits;
pub mod memories;
pub mod memory;
pub mod messages;
pub mod metrics;
pub mod openapi;
pub mod realtime;
pub mod regenerate;
pub mod search;
pub mod send;
pub mod settings;
pub mod startup;
pub mod state;
pub mod telemetry;
pub mod threads;
pub mod usage;

/// The wire contract (frames, error codes, HTTP bodies) lives in its own crate
/// (`crates/contract`), shared with the typed client and the operator tools.
pub use emergence_contract as contract;

pub use settings::Settings;
pub use startup::Application;
