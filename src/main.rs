//! The `emergence` binary: parses the command line and hands over to the server library
//! (`emergence::cli`: serve, migrate, backup, restore, assets) or to the operator tools, which
//! live in their own crate outside it (`emergence_ops::cli`: load, verify, guard).

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use emergence::settings::{ProcessEnv, Settings};

/// Emergence: real-time multi-agent AI chat server.
#[derive(Parser, Debug)]
#[command(name = "emergence", version, about)]
struct Cli {
    /// Settings file (TOML); also `EMERGENCE_CONFIG`.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    #[command(flatten)]
    Server(emergence::cli::Command),
    #[command(flatten)]
    Ops(Box<emergence_ops::cli::Command>),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The document extraction child: no runtime, no settings, limits set before any work.
    if let Some(Command::Server(command)) = &cli.command
        && let Some(args) = command.as_extract()
    {
        return emergence::documents::extract::child::run(args);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("emergence: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        let settings = Settings::load(cli.config.clone(), &ProcessEnv)?;
        match cli.command {
            None => emergence::cli::run(settings, None).await,
            Some(Command::Server(command)) => emergence::cli::run(settings, Some(command)).await,
            Some(Command::Ops(command)) => emergence_ops::cli::run(*command).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("emergence: {e:#}");
            ExitCode::FAILURE
        }
    }
}
