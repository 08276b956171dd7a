//! `emergence serve`: run the server until SIGTERM/SIGINT.

use std::{net::SocketAddr, process::ExitCode};

use anyhow::Context;
use clap::Args;

use crate::{Application, settings::Settings, telemetry};

#[derive(Args, Debug, Default)]
pub struct ServeArgs {
    /// Listen port (overrides `PORT`).
    #[arg(long)]
    pub port: Option<u16>,
    /// Database URL (overrides `DATABASE_URL`).
    #[arg(long)]
    pub database_url: Option<String>,
    /// Serve `/metrics` on this address instead of the main listener.
    #[arg(long)]
    pub metrics_addr: Option<SocketAddr>,
    /// Make index.html load hashed assets from this base URL (a CDN or bucket).
    #[arg(long)]
    pub asset_base_url: Option<String>,
}

pub async fn run(mut settings: Settings, args: ServeArgs) -> anyhow::Result<ExitCode> {
    if let Some(p) = args.port {
        settings.server.port = p;
    }
    if let Some(u) = args.database_url {
        settings.database.url = crate::settings::Secret::new(u);
    }
    if let Some(a) = args.metrics_addr {
        settings.server.metrics_addr = Some(a);
    }
    if let Some(b) = args.asset_base_url {
        settings.web.asset_base_url = Some(b);
    }
    telemetry::init(&settings.log);
    let app = Application::build(settings)
        .await
        .context("starting the server")?;
    app.run_until_stopped().await?;
    Ok(ExitCode::SUCCESS)
}
