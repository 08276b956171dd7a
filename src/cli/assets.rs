//! `emergence assets export DIR`: write the web UI's content-hashed files (with their brotli and
//! gzip variants) for a bucket or CDN; then serve with `--asset-base-url URL`.

use std::{path::PathBuf, process::ExitCode};

use clap::{Args, Subcommand};

#[derive(Args, Debug)]
pub struct AssetsArgs {
    #[command(subcommand)]
    pub command: AssetsCommand,
}

#[derive(Subcommand, Debug)]
pub enum AssetsCommand {
    /// Write `assets/*` (hashed, immutable) under DIR.
    Export {
        /// Target directory (created if missing).
        dir: PathBuf,
    },
    /// List the embedded files.
    List,
}

pub fn run(args: AssetsArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        AssetsCommand::Export { dir } => {
            let n = crate::assets::export(&dir)?;
            println!(
                "wrote {n} hashed files under {}; upload them with `Cache-Control: public, max-age=31536000, immutable` \
                 and serve with --asset-base-url <their base URL>",
                dir.join("assets").display()
            );
            Ok(ExitCode::SUCCESS)
        }
        AssetsCommand::List => {
            for p in crate::assets::embedded_paths() {
                println!("{p}");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
