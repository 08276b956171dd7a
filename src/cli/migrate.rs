//! `emergence migrate`: apply the schema migrations of the configured database and exit.

use std::{process::ExitCode, time::Duration};

use clap::Args;

use crate::{
    db::{self, SharedStore},
    settings::Settings,
    telemetry,
};

#[derive(Args, Debug)]
pub struct MigrateArgs {
    /// Database URL (overrides `DATABASE_URL`).
    #[arg(long)]
    pub database_url: Option<String>,
}

pub async fn run(settings: Settings, args: MigrateArgs) -> anyhow::Result<ExitCode> {
    let store = open_migrated(settings, args.database_url).await?;
    println!("migrations applied ({})", store.backend_name());
    Ok(ExitCode::SUCCESS)
}

/// The configured database (or `url`), connected with the CLI's small pool and migrated: what
/// every subcommand that works on the database starts from (`migrate`, `admin`).
pub(super) async fn open_migrated(
    mut settings: Settings,
    url: Option<String>,
) -> anyhow::Result<SharedStore> {
    if let Some(u) = url {
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
    Ok(store)
}
