//! `emergence guard --logs FILE|-`: judge recorded logs ([`crate::guard`]) and exit 0 (OK),
//! 1 (DEGRADED), 2 (CRITICAL) or 3 (the input could not be read as logs).

use std::{io::Read, path::PathBuf, process::ExitCode};

use clap::Args;

use crate::guard;

#[derive(Args, Debug)]
pub struct GuardArgs {
    /// Emergence JSON logs or a Cloud Logging export (JSON array or lines); `-` for stdin.
    #[arg(long)]
    pub logs: PathBuf,
    /// Print a JSON object instead of the summary.
    #[arg(long)]
    pub json: bool,
}

/// Exit code for input that could not be read.
const UNREADABLE: u8 = 3;

pub fn run(args: GuardArgs) -> anyhow::Result<ExitCode> {
    let input = match read(&args.logs) {
        Ok(text) => text,
        Err(e) => return Ok(unreadable(&args, &format!("{}: {e}", args.logs.display()))),
    };
    let analysis = match guard::analyse(&input) {
        Ok(a) => a,
        Err(e) => return Ok(unreadable(&args, &e.to_string())),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&analysis.to_json())?);
    } else {
        print!("{}", analysis.render());
    }
    Ok(ExitCode::from(analysis.status().exit_code()))
}

/// Bytes that are not UTF-8 are replaced rather than refused: one bad line must not hide the rest.
fn read(path: &PathBuf) -> std::io::Result<String> {
    let mut bytes = Vec::new();
    if path.as_os_str() == "-" {
        std::io::stdin().lock().read_to_end(&mut bytes)?;
    } else {
        bytes = std::fs::read(path)?;
    }
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

fn unreadable(args: &GuardArgs, why: &str) -> ExitCode {
    if args.json {
        println!(
            "{}",
            serde_json::json!({"status": "UNREADABLE", "error": why})
        );
    } else {
        eprintln!("emergence guard: cannot read the logs: {why}");
    }
    ExitCode::from(UNREADABLE)
}
