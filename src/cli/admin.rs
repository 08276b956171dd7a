//! `emergence admin`: account administration from the host, for the first admin of a closed
//! server or a locked-out one. `create-user NAME [--admin]` reads the password from the first
//! line of standard input (never a flag: other users of the host could read it);
//! `promote NAME` makes an existing account an active admin.

use std::{io::BufRead, process::ExitCode};

use clap::{Args, Subcommand};

use crate::{
    auth::password::Hasher,
    db::{
        accounts::{
            AccessChange, AccessOutcome, NewAccount, Registered, Registration, Role, Status,
        },
        now_ms,
    },
    domain::{Password, Username},
    settings::Settings,
};

#[derive(Args, Debug)]
pub struct AdminArgs {
    /// Database URL (overrides `DATABASE_URL`).
    #[arg(long, global = true)]
    pub database_url: Option<String>,
    #[command(subcommand)]
    pub command: AdminCommand,
}

#[derive(Subcommand, Debug)]
pub enum AdminCommand {
    /// Create an active account; the password is the first line of standard input.
    CreateUser {
        username: String,
        /// Make it an administrator.
        #[arg(long)]
        admin: bool,
    },
    /// Make an existing account an active administrator.
    Promote { username: String },
}

pub async fn run(settings: Settings, args: AdminArgs) -> anyhow::Result<ExitCode> {
    let store = super::migrate::open_migrated(settings, args.database_url).await?;
    match args.command {
        AdminCommand::CreateUser { username, admin } => {
            let name =
                Username::parse(&username).map_err(|why| anyhow::anyhow!("username {why}"))?;
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line)?;
            let line = line.trim_end_matches(['\r', '\n']);
            let password =
                Password::parse(line).map_err(|why| anyhow::anyhow!("password {why}"))?;
            let hash = Hasher::new(1).hash(password.expose().to_string()).await?;
            let account = NewAccount {
                id: uuid::Uuid::now_v7().to_string(),
                username: name.as_str().to_string(),
                key: name.key(),
                password_hash: hash,
                mode: Registration::Open,
                invite_hash: None,
                admin,
                now: now_ms(),
            };
            match store.register_user(&account).await? {
                Registered::Created(a) => {
                    println!("created {} ({}, {})", a.username, a.role.as_str(), a.id);
                    Ok(ExitCode::SUCCESS)
                }
                Registered::Taken => anyhow::bail!("the username {username} is taken"),
                other => anyhow::bail!("not created: {other:?}"),
            }
        }
        AdminCommand::Promote { username } => {
            let name =
                Username::parse(&username).map_err(|why| anyhow::anyhow!("username {why}"))?;
            let user = store
                .user_by_key(&name.key())
                .await?
                .ok_or_else(|| anyhow::anyhow!("no account named {username}"))?;
            for change in [
                AccessChange::Role(Role::Admin),
                AccessChange::Status(Status::Active),
            ] {
                if let AccessOutcome::NotFound = store.set_access(&user.id, change).await? {
                    anyhow::bail!("no account named {username}");
                }
            }
            println!("{} is now an administrator", user.username);
            Ok(ExitCode::SUCCESS)
        }
    }
}
