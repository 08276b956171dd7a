//! Backups of the whole database, and restoring one into an empty database: what
//! `emergence backup` and `emergence restore` do.
//!
//! * SQLite: `VACUUM INTO` writes a consistent, compacted copy while the server keeps running
//!   (it is one read transaction); restoring copies that file into place, never over a database
//!   that holds data unless forced.
//! * PostgreSQL: the real `pg_dump` (custom format, no owners or privileges, so it restores
//!   under another role such as Cloud SQL's) and `pg_restore`, found on `PATH`. The password is
//!   handed over in `PGPASSWORD`, never on a command line other users of the host can read.
//!
//! Operator tooling: errors are `anyhow` with what to do next, printed by the CLI.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    str::FromStr,
    time::Duration,
};

use anyhow::{Context, anyhow, bail};
use sqlx::{
    Connection, Row,
    postgres::PgConnection,
    sqlite::{SqliteConnectOptions, SqliteConnection},
};

/// What a database holds, as far as users can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Contents {
    pub users: i64,
    pub threads: i64,
    pub messages: i64,
}

impl Contents {
    pub fn is_empty(&self) -> bool {
        *self == Contents::default()
    }
}

impl std::fmt::Display for Contents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} users, {} threads, {} messages",
            self.users, self.threads, self.messages
        )
    }
}

/// Where the database named by a `DATABASE_URL` lives.
enum Target {
    Sqlite(PathBuf),
    Postgres { dsn: String, password: String },
}

impl Target {
    fn parse(url: &str) -> anyhow::Result<Target> {
        if let Some(path) = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
        {
            let path = path.split('?').next().unwrap_or(path);
            return Ok(Target::Sqlite(PathBuf::from(path)));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let mut parsed = reqwest::Url::parse(url).context("parsing the database URL")?;
            let password = parsed
                .password()
                .map(|p| percent_encoding::percent_decode_str(p).decode_utf8())
                .transpose()
                .context("decoding the password in the database URL")?
                .map(|p| p.into_owned())
                .unwrap_or_default();
            parsed
                .set_password(None)
                .map_err(|_| anyhow!("the database URL cannot carry a password"))?;
            return Ok(Target::Postgres {
                dsn: parsed.to_string(),
                password,
            });
        }
        bail!("unsupported DATABASE_URL scheme (use sqlite:// or postgres://)")
    }
}

/// Write a backup of the database at `url` to `out` (which must not exist yet); returns what
/// the backup holds (SQLite) or what the database held as it was dumped (PostgreSQL).
pub async fn backup(url: &str, out: &Path) -> anyhow::Result<Contents> {
    if out.exists() {
        bail!(
            "{} already exists: choose a new file name (a backup never overwrites)",
            out.display()
        );
    }
    match Target::parse(url)? {
        Target::Sqlite(path) => {
            let mut db = open_sqlite(&path, false).await?;
            let out_text = out.to_str().context("the output path is not UTF-8")?;
            sqlx::query("VACUUM INTO $1")
                .bind(out_text)
                .execute(&mut db)
                .await
                .with_context(|| format!("VACUUM INTO {}", out.display()))?;
            db.close().await.ok();
            let mut copy = open_sqlite(out, true).await?;
            check_sqlite_integrity(&mut copy).await?;
            let contents = sqlite_contents(&mut copy)
                .await?
                .context("the copy holds no Emergence tables")?;
            copy.close().await.ok();
            Ok(contents)
        }
        Target::Postgres { dsn, password } => {
            let mut db = connect_pg(&dsn, &password).await?;
            let before = pg_contents(&mut db)
                .await?
                .context("the database holds no Emergence tables (never migrated?)")?;
            db.close().await.ok();
            let out_text = out.to_str().context("the output path is not UTF-8")?;
            run_tool(
                "pg_dump",
                &[
                    "--format=custom",
                    "--no-owner",
                    "--no-privileges",
                    "--file",
                    out_text,
                    "--dbname",
                    &dsn,
                ],
                &password,
            )
            .await?;
            list_archive(out).await?;
            Ok(before)
        }
    }
}

/// Restore the backup `from` into the database at `url`. The target must hold no users,
/// threads or messages unless `force` (then they are replaced). Returns what it holds after.
pub async fn restore(url: &str, from: &Path, force: bool) -> anyhow::Result<Contents> {
    if !from.is_file() {
        bail!("{}: no such backup file", from.display());
    }
    match Target::parse(url)? {
        Target::Sqlite(path) => restore_sqlite(&path, from, force).await,
        Target::Postgres { dsn, password } => {
            list_archive(from).await?;
            let mut db = connect_pg(&dsn, &password).await?;
            let existing = pg_contents(&mut db).await?;
            db.close().await.ok();
            refuse_unless_empty(url_label(&dsn), existing, force)?;
            let mut args = vec![
                "--no-owner",
                "--no-privileges",
                "--exit-on-error",
                "--single-transaction",
            ];
            // A migrated database (a server started on it) has the tables already: replace them.
            if existing.is_some() {
                args.extend(["--clean", "--if-exists"]);
            }
            let from_text = from.to_str().context("the backup path is not UTF-8")?;
            args.extend(["--dbname", &dsn, from_text]);
            run_tool("pg_restore", &args, &password).await?;
            let mut db = connect_pg(&dsn, &password).await?;
            pg_contents(&mut db)
                .await?
                .context("the restored database holds no Emergence tables")
        }
    }
}

async fn restore_sqlite(path: &Path, from: &Path, force: bool) -> anyhow::Result<Contents> {
    let mut backup = open_sqlite(from, true)
        .await
        .with_context(|| format!("{} is not a SQLite database", from.display()))?;
    check_sqlite_integrity(&mut backup).await?;
    let contents = sqlite_contents(&mut backup)
        .await?
        .with_context(|| format!("{} is not an Emergence backup", from.display()))?;
    backup.close().await.ok();
    if path.exists() {
        let mut existing = open_sqlite_waiting(path, false, Duration::from_secs(1)).await?;
        // Nobody else may have it open: a running server would keep writing to the old file.
        sqlx::query("PRAGMA locking_mode = EXCLUSIVE")
            .execute(&mut existing)
            .await?;
        sqlx::query("BEGIN EXCLUSIVE")
            .execute(&mut existing)
            .await
            .with_context(|| {
                format!(
                    "{} is in use: stop the server before restoring",
                    path.display()
                )
            })?;
        let held = sqlite_contents(&mut existing).await?;
        sqlx::query("ROLLBACK").execute(&mut existing).await.ok();
        existing.close().await.ok();
        refuse_unless_empty(path.display().to_string(), held, force)?;
    } else if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    // Copy beside the target, then move it into place: the target is never half written.
    let staging = sibling(path, ".restoring");
    std::fs::copy(from, &staging)
        .with_context(|| format!("copying {} to {}", from.display(), staging.display()))?;
    for stale in [sibling(path, "-wal"), sibling(path, "-shm")] {
        match std::fs::remove_file(&stale) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(e).with_context(|| format!("removing {}", stale.display()));
            }
            _ => {}
        }
    }
    std::fs::rename(&staging, path)
        .with_context(|| format!("moving {} into place", staging.display()))?;
    Ok(contents)
}

fn refuse_unless_empty(what: String, held: Option<Contents>, force: bool) -> anyhow::Result<()> {
    match held {
        Some(c) if !c.is_empty() && !force => bail!(
            "{what} holds {c}: refusing to overwrite it (restore into an empty database, or \
             stop every server on it and pass --force to replace its contents)"
        ),
        _ => Ok(()),
    }
}

/// The DSN without its query string, for messages.
fn url_label(dsn: &str) -> String {
    dsn.split('?').next().unwrap_or(dsn).to_string()
}

/// `path` with `suffix` appended to its file name (`emergence.db` → `emergence.db-wal`).
pub(super) fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

async fn open_sqlite(path: &Path, read_only: bool) -> anyhow::Result<SqliteConnection> {
    open_sqlite_waiting(path, read_only, Duration::from_secs(5)).await
}

/// Open a database file, waiting at most `busy` for another connection's lock.
async fn open_sqlite_waiting(
    path: &Path,
    read_only: bool,
    busy: Duration,
) -> anyhow::Result<SqliteConnection> {
    if !path.is_file() {
        bail!("{}: no such database file", path.display());
    }
    let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))?
        .create_if_missing(false)
        .read_only(read_only)
        .busy_timeout(busy);
    SqliteConnection::connect_with(&options)
        .await
        .with_context(|| format!("opening {}", path.display()))
}

async fn check_sqlite_integrity(db: &mut SqliteConnection) -> anyhow::Result<()> {
    let verdict: String = sqlx::query("PRAGMA integrity_check")
        .fetch_one(&mut *db)
        .await?
        .try_get(0)?;
    if verdict != "ok" {
        bail!("integrity check failed: {verdict}");
    }
    Ok(())
}

/// Row counts, or `None` when the database has no Emergence tables at all (the tables the
/// counts read, whichever ledger recorded the migrations: `_sqlx_migrations`, or the
/// `emergence_migrations` of databases created before).
async fn sqlite_contents(db: &mut SqliteConnection) -> anyhow::Result<Option<Contents>> {
    let tables: i64 = sqlx::query(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' \
         AND name IN ('users', 'threads', 'messages')",
    )
    .fetch_one(&mut *db)
    .await?
    .try_get(0)?;
    if tables < 3 {
        return Ok(None);
    }
    let row = sqlx::query(COUNTS).fetch_one(&mut *db).await?;
    Ok(Some(Contents {
        users: row.try_get(0)?,
        threads: row.try_get(1)?,
        messages: row.try_get(2)?,
    }))
}

async fn pg_contents(db: &mut PgConnection) -> anyhow::Result<Option<Contents>> {
    let present: bool = sqlx::query(
        "SELECT to_regclass('users') IS NOT NULL AND to_regclass('threads') IS NOT NULL \
         AND to_regclass('messages') IS NOT NULL",
    )
    .fetch_one(&mut *db)
    .await?
    .try_get(0)?;
    if !present {
        return Ok(None);
    }
    let row = sqlx::query(COUNTS).fetch_one(&mut *db).await?;
    Ok(Some(Contents {
        users: row.try_get(0)?,
        threads: row.try_get(1)?,
        messages: row.try_get(2)?,
    }))
}

const COUNTS: &str = "SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM threads), \
                      (SELECT count(*) FROM messages)";

async fn connect_pg(dsn: &str, password: &str) -> anyhow::Result<PgConnection> {
    let mut options = sqlx::postgres::PgConnectOptions::from_str(dsn)?;
    if !password.is_empty() {
        options = options.password(password);
    }
    PgConnection::connect_with(&options)
        .await
        .with_context(|| format!("connecting to {}", url_label(dsn)))
}

/// `pg_restore --list`: the archive is readable and complete.
async fn list_archive(file: &Path) -> anyhow::Result<()> {
    let file = file.to_str().context("the backup path is not UTF-8")?;
    run_tool("pg_restore", &["--list", file], "")
        .await
        .context("the file is not a pg_dump custom-format archive")
}

/// Run a PostgreSQL client tool; its error output becomes the error.
async fn run_tool(tool: &str, args: &[&str], password: &str) -> anyhow::Result<()> {
    let mut cmd = tokio::process::Command::new(tool);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if !password.is_empty() {
        cmd.env("PGPASSWORD", password);
    }
    let output = match cmd.output().await {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "{tool} was not found on PATH: install the PostgreSQL client tools, the server's \
             major version or newer (Debian/Ubuntu: apt-get install postgresql-client)"
        ),
        Err(e) => return Err(e).with_context(|| format!("starting {tool}")),
    };
    if !output.status.success() {
        bail!(
            "{tool} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_passwords_leave_the_url_and_are_decoded() {
        let Target::Postgres { dsn, password } =
            Target::parse("postgres://app:p%40ss%2Fw@db.internal:5433/chat?sslmode=require")
                .unwrap()
        else {
            panic!("not postgres");
        };
        assert_eq!(dsn, "postgres://app@db.internal:5433/chat?sslmode=require");
        assert_eq!(password, "p@ss/w");
    }

    #[test]
    fn sqlite_urls_name_their_file() {
        let Target::Sqlite(path) = Target::parse("sqlite:///data/emergence.db?mode=rwc").unwrap()
        else {
            panic!("not sqlite");
        };
        assert_eq!(path, PathBuf::from("/data/emergence.db"));
        assert!(Target::parse("mysql://x").is_err());
    }
}
