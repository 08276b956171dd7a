//! The command line: `serve`, `migrate` and the operations tools. Each subcommand is a small module.

mod assets;
mod backup;
mod guard;
mod load;
mod migrate;
mod restore;
mod serve;
mod verify;

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};

use crate::settings::{ProcessEnv, Settings};

/// Emergence: real-time multi-agent AI chat server.
#[derive(Parser, Debug)]
#[command(name = "emergence", version, about)]
pub struct Cli {
    /// Settings file (TOML); also `EMERGENCE_CONFIG`.
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the server (the default).
    Serve(serve::ServeArgs),
    /// Apply database migrations and exit.
    Migrate(migrate::MigrateArgs),
    /// Write a consistent copy of the database to a file (the server may keep running).
    Backup(backup::BackupArgs),
    /// Restore a backup into an empty database (`--force` to replace one that holds data).
    Restore(restore::RestoreArgs),
    /// Open-loop WebSocket load generator (fan-out latency, idle connections, persisted msgs/s).
    Load(load::LoadArgs),
    /// Post-deployment checklist: health, web UI, WebSockets, the seed targets.
    Verify(verify::VerifyArgs),
    /// Judge recorded logs (JSON lines or a Cloud Logging export): OK, DEGRADED or CRITICAL.
    Guard(guard::GuardArgs),
    /// The embedded web UI's hashed files (`assets export DIR` for a bucket or CDN).
    Assets(assets::AssetsArgs),
}

/// Entry point used by `main`.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
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
            None => serve::run(settings, serve::ServeArgs::default()).await,
            Some(Command::Serve(args)) => serve::run(settings, args).await,
            Some(Command::Migrate(args)) => migrate::run(settings, args).await,
            Some(Command::Backup(args)) => backup::run(settings, args).await,
            Some(Command::Restore(args)) => restore::run(settings, args).await,
            Some(Command::Load(args)) => load::run(args).await,
            Some(Command::Verify(args)) => verify::run(args).await,
            Some(Command::Guard(args)) => guard::run(args),
            Some(Command::Assets(args)) => assets::run(args),
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
