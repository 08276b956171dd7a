//! The server's command line: `serve` (the default), `migrate`, `admin`, `backup`, `restore`,
//! `assets`, and the hidden `extract` (the document extraction child). Each subcommand is a
//! small module. The `emergence` binary (`src/main.rs`) puts these next to the operator tools'
//! subcommands (`emergence_ops::cli`: `load`, `verify`, `guard`).

mod admin;
mod assets;
mod backup;
mod migrate;
mod restore;
mod serve;

use std::process::ExitCode;

use clap::Subcommand;

use crate::settings::Settings;

/// The server's subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the server (the default).
    Serve(serve::ServeArgs),
    /// Apply database migrations and exit.
    Migrate(migrate::MigrateArgs),
    /// Account administration: `create-user NAME [--admin]` (password on stdin), `promote NAME`.
    Admin(admin::AdminArgs),
    /// Write a consistent copy of the database to a file (the server may keep running).
    Backup(backup::BackupArgs),
    /// Restore a backup into an empty database (`--force` to replace one that holds data).
    Restore(restore::RestoreArgs),
    /// The embedded web UI's hashed files (`assets export DIR` for a bucket or CDN).
    Assets(assets::AssetsArgs),
    /// The document extraction child (run by the server itself, never by hand): the file on
    /// standard input, its passages as JSON lines on standard output.
    #[command(hide = true)]
    Extract(crate::documents::extract::child::ExtractArgs),
}

impl Command {
    /// The extraction child, which runs without the async runtime and the settings.
    pub fn as_extract(&self) -> Option<&crate::documents::extract::child::ExtractArgs> {
        match self {
            Command::Extract(args) => Some(args),
            _ => None,
        }
    }
}

/// Run one server command (`None`: serve) to its exit code.
pub async fn run(settings: Settings, command: Option<Command>) -> anyhow::Result<ExitCode> {
    match command {
        None => serve::run(settings, serve::ServeArgs::default()).await,
        Some(Command::Serve(args)) => serve::run(settings, args).await,
        Some(Command::Migrate(args)) => migrate::run(settings, args).await,
        Some(Command::Admin(args)) => admin::run(settings, args).await,
        Some(Command::Backup(args)) => backup::run(settings, args).await,
        Some(Command::Restore(args)) => restore::run(settings, args).await,
        Some(Command::Assets(args)) => assets::run(args),
        Some(Command::Extract(args)) => Ok(crate::documents::extract::child::run(&args)),
    }
}
