//! Text extraction, bounded: the server never parses an uploaded file itself. It runs its own
//! binary as a child (`emergence extract`, [`child`]) that limits its own address space and
//! CPU time before reading a byte, feeds it the file part by part from the database on
//! standard input, and reads passages back as JSON lines, all under a wall-clock timeout
//! (the child is killed when it ends). A zip bomb, a PDF with a billion objects or a 20 MB
//! single line costs at most one child's limits; the server's own memory holds one part of the
//! file and the passages.

pub mod child;
pub mod chunk;
mod read;

use std::{path::Path, process::Stdio, time::Duration};

use futures_util::StreamExt;
use tokio::{io::AsyncWriteExt, process::Command};
use tokio_util::codec::{FramedRead, LinesCodec};

use crate::{
    db::{Database, StoreError, documents::Chunk},
    documents::files::Files,
    documents::kind::Kind,
    settings::documents::DocumentSettings,
};
use child::ChildLine;

/// Longest line the child may write (a passage is at most ~1,200 characters).
const MAX_LINE: usize = 256 * 1024;

/// What extraction found.
#[derive(Debug)]
pub struct Extracted {
    pub pages: Option<i64>,
    pub chunks: Vec<Chunk>,
}

/// How an extraction ended without passages.
#[derive(Debug)]
pub enum NotExtracted {
    /// The file cannot be read: a stable class (metrics label) and the reason users see.
    Failed { class: String, reason: String },
    /// The database could not give the file: try again later (the document stays queued).
    Retry(StoreError),
}

impl NotExtracted {
    fn failed(class: &str, reason: &str) -> Self {
        NotExtracted::Failed {
            class: class.to_string(),
            reason: reason.to_string(),
        }
    }
}

/// Extract the text of document `id` (of `kind`, `size` bytes) in a child process running
/// `exe extract`.
pub async fn extract(
    exe: &Path,
    settings: &DocumentSettings,
    db: &Database,
    files: &Files,
    id: &str,
    kind: Kind,
) -> Result<Extracted, NotExtracted> {
    let mut child = Command::new(exe)
        .arg("extract")
        .arg("--kind")
        .arg(kind.as_str())
        .arg("--max-bytes")
        .arg(settings.max_bytes.to_string())
        .arg("--memory-mb")
        .arg(settings.extract_memory_mb.to_string())
        .arg("--cpu-secs")
        .arg(settings.extract_cpu_secs.to_string())
        // The child needs nothing of the server's environment (keys, database URL).
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| {
            tracing::error!(error = %e, exe = %exe.display(), "cannot start the extraction child");
            NotExtracted::failed("internal", "the extractor could not be started")
        })?;
    let stdin = child.stdin.take().expect("stdin is piped");
    let stdout = child.stdout.take().expect("stdout is piped");
    let wall = Duration::from_secs(settings.extract_timeout_secs.max(1));
    let run = async {
        let feed = feed(db, files, id, stdin);
        let read = read_lines(stdout);
        let (fed, lines) = tokio::join!(feed, read);
        fed?;
        let status = child.wait().await.ok();
        Ok::<_, NotExtracted>((lines, status))
    };
    let (lines, status) = match tokio::time::timeout(wall, run).await {
        Ok(outcome) => outcome?,
        Err(_) => {
            return Err(NotExtracted::failed(
                "timeout",
                "reading the file took longer than extraction may (the file may be malicious or too complex)",
            ));
        }
    };
    let (mut chunks, mut end) = (Vec::new(), None);
    for line in lines {
        match line {
            ChildLine::Chunk(c) => chunks.push(c),
            other => end = Some(other),
        }
    }
    match end {
        Some(ChildLine::Done { pages }) => Ok(Extracted { pages, chunks }),
        Some(ChildLine::Failed { class, reason }) => Err(NotExtracted::Failed { class, reason }),
        _ => {
            tracing::warn!(
                document = id,
                ?status,
                "the extraction child stopped without an answer"
            );
            Err(NotExtracted::failed(
                "resources",
                "reading the file needed more memory or CPU time than extraction may use (the file may be malicious or too complex)",
            ))
        }
    }
}

/// Write the file to the child part by part; a child that stopped reading (it failed, or has
/// what it needs) ends the feeding quietly.
async fn feed(
    db: &Database,
    files: &Files,
    id: &str,
    mut stdin: tokio::process::ChildStdin,
) -> Result<(), NotExtracted> {
    let mut part_no = 0;
    loop {
        let part = files
            .part(db, id, part_no)
            .await
            .map_err(NotExtracted::Retry)?;
        let Some(bytes) = part else {
            break;
        };
        if stdin.write_all(&bytes).await.is_err() {
            return Ok(());
        }
        part_no += 1;
    }
    let _ = stdin.shutdown().await;
    Ok(())
}

/// The child's output lines; a line that is not one of ours (a library's stray print) is
/// skipped, and so is the rest after a line too long to be ours.
async fn read_lines(stdout: tokio::process::ChildStdout) -> Vec<ChildLine> {
    let mut lines = FramedRead::new(stdout, LinesCodec::new_with_max_length(MAX_LINE));
    let mut out = Vec::new();
    while let Some(line) = lines.next().await {
        let Ok(line) = line else {
            break;
        };
        if let Ok(parsed) = serde_json::from_str::<ChildLine>(&line) {
            out.push(parsed);
        }
    }
    out
}
