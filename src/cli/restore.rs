//! `emergence restore --from FILE`: put a backup made by `emergence backup` into an empty
//! database (SQLite: the file moves into place; PostgreSQL: `pg_restore`). A database that holds
//! users, threads or messages is replaced only with `--force`, and only with no server on it.

use std::{path::PathBuf, process::ExitCode};

use clap::Args;

use crate::settings::Settings;

#[derive(Args, Debug)]
pub struct RestoreArgs {
    /// The backup file (from `emergence backup`).
    #[arg(long)]
    pub from: PathBuf,
    /// Database URL to restore into (overrides `DATABASE_URL`).
    #[arg(long)]
    pub database_url: Option<String>,
    /// Replace a database that already holds data.
    #[arg(long)]
    pub force: bool,
}

pub async fn run(settings: Settings, args: RestoreArgs) -> anyhow::Result<ExitCode> {
    let url = args
        .database_url
        // PostgreSQL itself when a pooler sits in front (pg_dump / pg_restore need a session).
        .or_else(|| {
            settings
                .database
                .direct_url
                .as_ref()
                .map(|u| u.expose().to_string())
        })
        .unwrap_or_else(|| settings.database.url.expose().to_string());
    let contents = crate::db::backup::restore(&url, &args.from, args.force).await?;
    println!("restored {} ({contents})", args.from.display());
    Ok(ExitCode::SUCCESS)
}
