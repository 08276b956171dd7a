//! `emergence backup --out FILE`: a consistent copy of the whole database, taken while the server
//! may be running (SQLite `VACUUM INTO`, PostgreSQL `pg_dump` custom format).

use std::{path::PathBuf, process::ExitCode};

use clap::Args;

use crate::settings::Settings;

#[derive(Args, Debug)]
pub struct BackupArgs {
    /// The backup file to write; it must not exist yet.
    #[arg(long)]
    pub out: PathBuf,
    /// Database URL (overrides `DATABASE_URL`).
    #[arg(long)]
    pub database_url: Option<String>,
}

pub async fn run(settings: Settings, args: BackupArgs) -> anyhow::Result<ExitCode> {
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
    let contents = crate::db::backup::backup(&url, &args.out).await?;
    println!("backup written to {} ({contents})", args.out.display());
    Ok(ExitCode::SUCCESS)
}
