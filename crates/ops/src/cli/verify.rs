//! `emergence verify --url URL`: run the post-deployment checklist ([`crate::verify`]),
//! draw a progress bar on stderr while it runs, print the table (or `--json`) and exit 0 when
//! everything passed, 1 when a check failed, 2 when nothing could be checked.

use std::{
    io::{IsTerminal, Write},
    process::ExitCode,
    sync::Arc,
    time::Duration,
};

use clap::Args;
use reqwest::Url;
use tokio_util::sync::CancellationToken;

use crate::{
    Secret,
    verify::{self, Live, Options, ProbeUser},
};

#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// The deployment's public URL (http:// or https://).
    #[arg(long, value_parser = parse_http_url)]
    pub url: Url,
    /// A session token of a probe account (sent as `Authorization: Bearer`). Verified without
    /// the database, so WebSockets are measured even during a database outage.
    #[arg(long, env = "EMERGENCE_VERIFY_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// A probe account to log in with (needs the database) when there is no token or it is
    /// refused. Without either, verify registers throwaway users.
    #[arg(long, env = "EMERGENCE_VERIFY_USER", requires = "probe_password")]
    pub probe_user: Option<String>,
    /// The probe account's password.
    #[arg(long, env = "EMERGENCE_VERIFY_PASSWORD", hide_env_values = true)]
    pub probe_password: Option<String>,
    /// A thread the probe identity belongs to: chat there instead of creating a thread (needed
    /// to measure sends while the database is down).
    #[arg(long, env = "EMERGENCE_VERIFY_THREAD")]
    pub thread: Option<String>,
    /// WebSocket connections to open.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub ws_clients: u32,
    /// Seconds the WebSocket clients chat.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub duration: u64,
    /// Where `/metrics` is served (default: URL/metrics).
    #[arg(long, value_parser = parse_http_url)]
    pub metrics_url: Option<Url>,
    /// Do not read metrics (private on Cloud Run): the database reconnection row is skipped.
    #[arg(long, conflicts_with = "metrics_url")]
    pub skip_metrics: bool,
    /// Print a JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
    /// The web UI's first-load request budget.
    #[arg(long, default_value_t = 4)]
    pub max_requests: usize,
}

fn parse_http_url(s: &str) -> Result<Url, String> {
    let url = Url::parse(s).map_err(|e| format!("not a URL: {e}"))?;
    match url.scheme() {
        "http" | "https" if url.host().is_some() => Ok(url),
        _ => Err("expected an http:// or https:// URL with a host".into()),
    }
}

pub async fn run(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let live = Arc::new(Live::default());
    let probe_user = match (args.probe_user, args.probe_password) {
        (Some(username), Some(password)) => Some(ProbeUser {
            username,
            password: Secret::new(password),
        }),
        _ => None,
    };
    let opts = Options {
        url: args.url,
        token: args.token.map(Secret::new),
        probe_user,
        thread: args.thread,
        ws_clients: args.ws_clients as usize,
        duration: Duration::from_secs(args.duration),
        metrics_url: args.metrics_url,
        skip_metrics: args.skip_metrics,
        max_requests: args.max_requests,
        live: live.clone(),
    };
    let stop = CancellationToken::new();
    let bar = (!args.json && std::io::stderr().is_terminal())
        .then(|| tokio::spawn(draw_progress(live, stop.clone())));
    let report = verify::run(opts).await;
    stop.cancel();
    if let Some(bar) = bar {
        let _ = bar.await;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report.to_json())?);
    } else {
        print!("{}", report.render());
    }
    Ok(ExitCode::from(report.exit_code()))
}

/// Redraw one line on stderr until stopped, then erase it.
async fn draw_progress(live: Arc<Live>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {
                let line = live.snapshot().line(30);
                let mut err = std::io::stderr().lock();
                let _ = write!(err, "\r\x1b[2K{line}");
                let _ = err.flush();
            }
        }
    }
    let mut err = std::io::stderr().lock();
    let _ = write!(err, "\r\x1b[2K");
    let _ = err.flush();
}
