//! The operator tools' subcommands of the `emergence` binary: `load`, `verify` and `guard`.
//! The binary (`src/main.rs` of the server package) puts them next to the server's own.

mod guard;
mod load;
mod verify;

use std::process::ExitCode;

use clap::Subcommand;

pub use guard::GuardArgs;
pub use load::LoadArgs;
pub use verify::VerifyArgs;

/// The operator tools' subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Open-loop WebSocket load generator (fan-out latency, idle connections, persisted msgs/s).
    Load(LoadArgs),
    /// Post-deployment checklist: health, web UI, WebSockets, the seed targets.
    Verify(VerifyArgs),
    /// Judge recorded logs (JSON lines or a Cloud Logging export): OK, DEGRADED or CRITICAL.
    Guard(GuardArgs),
}

/// Run one operator command to its exit code.
pub async fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Load(args) => load::run(args).await,
        Command::Verify(args) => verify::run(args).await,
        Command::Guard(args) => guard::run(args),
    }
}
