//! `emergence migrate`: apply the schema migrations of the configured database and exit.

use std::{process::ExitCode, time::Duration};

use clap::Args;

use crate::{db, settings::Settings, telemetry};

#[derive(Args, Debug)]
pub struct MigrateArgs {
    /// Database URL (overrides `DATABASE_URL`).
    #[arg(long)]
    pub database_url: Option<String>,
}

pub async fn run(mut settings: Settings, args: MigrateArgs) -> anyhow::Result<ExitCode> {
    if let Some(u) = args.database_url {
        settings.database.url = crate::settings::Secret::new(u);
    }
    telemetry::init(&settings.log);
    let db = &settings.database;
    let store = db::connect(
        db::Target::of(db),
        2,
        Duration::from_millis(db.connect_timeout_ms.max(5_000)),
        true,
    )
    .await
    .map_err(|e| anyhow::anyhow!("connecting to the database: {e}"))?;
    store
        .migrate()
        .await
        .map_err(|e| anyhow::anyhow!("migrating: {e}"))?;
    println!("migrations applied ({})", store.backend_name());
    Ok(ExitCode::SUCCESS)
}
