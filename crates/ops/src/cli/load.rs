//! `emergence load`: the open-loop WebSocket load generator (see [`crate::load`]), usable
//! against a local server, a benchmark peer (`--protocol broadcast`) or a real deployment.
//!
//! The generator gets a tokio runtime of its own, sized by `--threads`, on a separate OS thread,
//! so its CPU use is what the flag says and not whatever the CLI's runtime happens to have.
//! Scenarios with a shape of their own are subcommands: `emergence load agentstream` (the
//! watchers of agent answers) and, hidden, `emergence load fake-provider` (the provider those
//! answers come from in the benchmark).

use std::{io::Write, process::ExitCode, time::Duration};

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::load::{self, LoadConfig, Mode, Protocol};

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct LoadArgs {
    #[command(subcommand)]
    pub scenario: Option<Scenario>,
    /// Base URL of the server, e.g. http://127.0.0.1:8080.
    #[arg(long, required = true)]
    pub url: Option<String>,
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

/// Load scenarios with options of their own.
#[derive(Subcommand, Debug)]
pub enum Scenario {
    /// Agent token streams: W sockets watch each of S agent answers, asked all at once; chunk
    /// latency from the provider's emit to receipt, lost and repeated chunks (the markers of
    /// the benchmark's fake provider).
    Agentstream(AgentStreamArgs),
    /// A fake OpenAI-compatible provider streaming marked chunks at a steady pace (benchmarks).
    #[command(hide = true)]
    FakeProvider(FakeProviderArgs),
    /// The loopback floor: a broadcast room doing one write per delivery and nothing else
    /// (benchmarks: the peers' protocol, every text frame to every connection).
    #[command(hide = true)]
    FloorRoom(FloorRoomArgs),
}

#[derive(Args, Debug)]
pub struct FloorRoomArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9003")]
    pub listen: std::net::SocketAddr,
    /// The coalescing floor instead: frames appended to each socket's buffer, one sweeper per
    /// worker thread writing each socket's whole buffer at once (this many threads; 0: one per
    /// core).
    #[arg(long)]
    pub sweep: Option<usize>,
}

#[derive(Args, Debug)]
pub struct AgentStreamArgs {
    /// Base URL of the server, e.g. http://127.0.0.1:8080.
    #[arg(long)]
    pub url: String,
    /// Token of every socket; without it a user is registered (not with --thread-list: then
    /// the sockets send none, as for a relay without accounts).
    #[arg(long, env = "EMERGENCE_LOAD_TOKEN")]
    pub token: Option<String>,
    /// File of thread ids, one per line, to watch; without it, --answers threads naming the
    /// agent are created.
    #[arg(long)]
    pub thread_list: Option<std::path::PathBuf>,
    /// Concurrent answers (threads created) when no --thread-list is given.
    #[arg(long, default_value_t = 100)]
    pub answers: usize,
    /// Sockets watching each answer.
    #[arg(long, default_value_t = 3)]
    pub watchers: usize,
    /// The agent each ask names.
    #[arg(long)]
    pub agent: String,
    /// Seconds to wait for every answer to end once asked.
    #[arg(long, default_value_t = 60.0)]
    pub timeout: f64,
    /// Tokens in each provider chunk (for the tokens-delivered count).
    #[arg(long, default_value_t = 3)]
    pub tokens_per_chunk: u64,
    /// Tokio worker threads for the watchers.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Concurrent handshakes while connecting.
    #[arg(long, default_value_t = 128)]
    pub connect_concurrency: usize,
    /// WebSocket path on the server.
    #[arg(long, default_value = "/ws")]
    pub ws_path: String,
    /// Print `READY` once every socket is subscribed, ask when a line arrives on stdin, print
    /// `GO`, and end with `DONE <json>` (how bench/agentstream.py drives it).
    #[arg(long)]
    pub stdin_go: bool,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct FakeProviderArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9100")]
    pub listen: std::net::SocketAddr,
    /// Length of each answer in seconds.
    #[arg(long, default_value_t = 10.0)]
    pub answer_secs: f64,
    /// Tokens per chunk.
    #[arg(long, default_value_t = 3)]
    pub tokens_per_chunk: u32,
}

/// Run `make()` to completion on a runtime of its own (`threads` workers; 0: a current-thread
/// runtime) on a separate OS thread.
async fn on_own_runtime<T, F>(
    threads: usize,
    make: impl FnOnce() -> F + Send + 'static,
) -> anyhow::Result<T>
where
    T: Send + 'static,
    F: std::future::Future<Output = anyhow::Result<T>>,
{
    let worker = std::thread::Builder::new()
        .name("load".into())
        .spawn(move || {
            let mut builder = if threads == 0 {
                tokio::runtime::Builder::new_current_thread()
            } else {
                let mut b = tokio::runtime::Builder::new_multi_thread();
                b.worker_threads(threads);
                b
            };
            builder
                .thread_name("load-worker")
                .enable_all()
                .build()
                .context("starting the generator's runtime")?
                .block_on(make())
        })
        .context("starting the generator thread")?;
    tokio::task::spawn_blocking(move || worker.join())
        .await
        .context("waiting for the generator")?
        .map_err(|_| anyhow::anyhow!("the generator panicked"))?
}

/// Write `text` to stdout; a closed pipe (`| head`) is not an error worth a panic.
fn print(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}

async fn run_agentstream(args: AgentStreamArgs) -> anyhow::Result<ExitCode> {
    let threads = match &args.thread_list {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("reading {}", path.display()))?
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect(),
        None => Vec::new(),
    };
    let cfg = load::agentstream::AgentStreamConfig {
        url: args.url,
        ws_path: args.ws_path,
        token: args.token,
        threads,
        answers: args.answers,
        watchers: args.watchers,
        agent: args.agent,
        timeout: Duration::from_secs_f64(args.timeout.max(0.1)),
        connect_concurrency: args.connect_concurrency.max(1),
        tokens_per_chunk: args.tokens_per_chunk,
        stdin_go: args.stdin_go,
    };
    let (stdin_go, json) = (args.stdin_go, args.json);
    let report = on_own_runtime(args.threads.max(1), move || load::agentstream::run(cfg)).await?;
    let text = if stdin_go {
        format!("DONE {}\n", serde_json::to_string(&report)?)
    } else if json {
        serde_json::to_string_pretty(&report)? + "\n"
    } else {
        report.to_text()
    };
    print(&text);
    Ok(ExitCode::SUCCESS)
}

async fn run_fake_provider(args: FakeProviderArgs) -> anyhow::Result<ExitCode> {
    let cfg = load::fake_provider::FakeConfig {
        listen: args.listen,
        answer: Duration::from_secs_f64(args.answer_secs.max(0.1)),
        tokens_per_chunk: args.tokens_per_chunk.max(1),
    };
    on_own_runtime(0, move || load::fake_provider::serve(cfg)).await?;
    Ok(ExitCode::SUCCESS)
}

pub async fn run(args: LoadArgs) -> anyhow::Result<ExitCode> {
    match args.scenario {
        Some(Scenario::Agentstream(a)) => return run_agentstream(a).await,
        Some(Scenario::FakeProvider(a)) => return run_fake_provider(a).await,
        Some(Scenario::FloorRoom(a)) => {
            match a.sweep {
                None => on_own_runtime(0, move || load::floor_room::serve(a.listen)).await?,
                Some(n) => {
                    let n = if n == 0 {
                        std::thread::available_parallelism().map_or(2, |n| n.get())
                    } else {
                        n
                    };
                    on_own_runtime(n, move || load::floor_sweep::serve(a.listen, n)).await?
                }
            }
            return Ok(ExitCode::SUCCESS);
        }
        None => {}
    }
    let threads = args.threads.max(1);
    let json = args.json;
    let cfg = LoadConfig {
        url: args.url.context("--url is required")?,
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
    let report = on_own_runtime(threads, move || load::run(cfg)).await?;
    let text = if json {
        serde_json::to_string_pretty(&report)? + "\n"
    } else {
        report.to_text()
    };
    print(&text);
    Ok(ExitCode::SUCCESS)
}
