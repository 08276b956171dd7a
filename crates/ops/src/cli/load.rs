//! `emergence load`: the open-loop WebSocket load generator (see [`crate::load`]), usable
//! against a local server, a benchmark peer (`--protocol broadcast`) or a real deployment.
//!
//! The generator gets a tokio runtime of its own, sized by `--threads`, on a separate OS thread,
//! so its CPU use is what the flag says and not whatever the CLI's runtime happens to have.

use std::{io::Write, process::ExitCode, time::Duration};

use anyhow::Context;
use clap::Args;

use crate::load::{self, LoadConfig, Mode, Protocol};

#[derive(Args, Debug)]
pub struct LoadArgs {
    /// Base URL of the server, e.g. http://127.0.0.1:8080.
    #[arg(long)]
    pub url: String,
    /// fanout: subscribers in one thread; idle: connections to hold open. Each is a socket: raise
    /// the open-files limit first (`ulimit -n 65536`, or as far as the hard limit allows).
    #[arg(long, default_value_t = 100)]
    pub clients: usize,
    /// Sending connections (fanout, persist); each gets its own user unless --token is given.
    #[arg(long, default_value_t = 1)]
    pub senders: usize,
    /// Tokio worker threads for the generator.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Messages per second in total (fanout), sent on a fixed schedule whatever the server does.
    #[arg(long, default_value_t = 10.0)]
    pub rate: f64,
    /// Seconds of load (fanout, persist) or of holding the connections (idle).
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Seconds to wait after the run for deliveries or acks still in flight.
    #[arg(long, default_value_t = 5.0)]
    pub grace: f64,
    /// Use this token for every connection instead of registering users.
    #[arg(long, env = "EMERGENCE_LOAD_TOKEN")]
    pub token: Option<String>,
    /// Use this thread instead of creating one (the token's user must be a member).
    #[arg(long)]
    pub thread: Option<String>,
    #[arg(long, value_enum, default_value_t = Mode::Fanout)]
    pub mode: Mode,
    #[arg(long, value_enum, default_value_t = Protocol::Emergence)]
    pub protocol: Protocol,
    /// In-flight sends per sender (persist).
    #[arg(long, default_value_t = 64)]
    pub window: usize,
    /// Extra bytes of padding in each message body.
    #[arg(long, default_value_t = 0)]
    pub body_bytes: usize,
    /// WebSocket path on the server.
    #[arg(long, default_value = "/ws")]
    pub ws_path: String,
    /// Concurrent handshakes while connecting.
    #[arg(long, default_value_t = 128)]
    pub connect_concurrency: usize,
    /// Print the report as JSON on stdout (and no progress bar).
    #[arg(long)]
    pub json: bool,
}

pub async fn run(args: LoadArgs) -> anyhow::Result<ExitCode> {
    let threads = args.threads.max(1);
    let json = args.json;
    let cfg = LoadConfig {
        url: args.url,
        ws_path: args.ws_path,
        mode: args.mode,
        protocol: args.protocol,
        clients: args.clients,
        senders: args.senders,
        rate: args.rate,
        duration: Duration::from_secs_f64(args.duration.max(0.1)),
        grace: Duration::from_secs_f64(args.grace.max(0.0)),
        window: args.window.max(1),
        body_bytes: args.body_bytes,
        token: args.token,
        thread: args.thread,
        connect_concurrency: args.connect_concurrency.max(1),
        progress: load::progress_wanted(json),
    };
    let generator = std::thread::Builder::new()
        .name("load".into())
        .spawn(move || {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(threads)
                .thread_name("load-worker")
                .enable_all()
                .build()
                .context("starting the generator's runtime")?
                .block_on(load::run(cfg))
        })
        .context("starting the generator thread")?;
    let report = tokio::task::spawn_blocking(move || generator.join())
        .await
        .context("waiting for the generator")?
        .map_err(|_| anyhow::anyhow!("the generator panicked"))??;
    let text = if json {
        serde_json::to_string_pretty(&report)? + "\n"
    } else {
        report.to_text()
    };
    // A closed pipe (`| head`) is not an error worth a panic.
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
    Ok(ExitCode::SUCCESS)
}
