//! `emergence extract` (hidden): the extraction child. It first limits itself (address space
//! `RLIMIT_AS`, CPU seconds `RLIMIT_CPU`), then reads the file from standard input (at most
//! `--max-bytes`), reads it as `--kind`, and writes one JSON object per line to standard
//! output: `{"chunk":{...}}` for each passage, then `{"done":{"pages":N}}` or
//! `{"failed":{"class","reason"}}`. It runs without the async runtime, the settings or the
//! database: nothing but the file.

use std::{
    io::{BufWriter, Read, Write},
    process::ExitCode,
};

use serde::{Deserialize, Serialize};

use super::{
    chunk::Chunker,
    read::{Failure, read},
};
use crate::{db::documents::Chunk, documents::kind::Kind};

/// The arguments the server passes to its child.
#[derive(clap::Args, Debug, Clone)]
pub struct ExtractArgs {
    /// `pdf`, `docx`, `md`, `txt`, `html` or `csv`.
    #[arg(long)]
    pub kind: Kind,
    /// Most bytes read from standard input.
    #[arg(long)]
    pub max_bytes: u64,
    /// Address space limit, MiB (0: none).
    #[arg(long, default_value_t = 512)]
    pub memory_mb: u64,
    /// CPU time limit, seconds (0: none).
    #[arg(long, default_value_t = 60)]
    pub cpu_secs: u64,
    /// Most passages one document may give.
    #[arg(long, default_value_t = 50_000)]
    pub max_chunks: usize,
}

/// One line of the child's output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChildLine {
    Chunk(Chunk),
    Done { pages: Option<i64> },
    Failed { class: String, reason: String },
}

/// Run the child to its exit code (0 whenever it could say what happened).
pub fn run(args: &ExtractArgs) -> ExitCode {
    if let Err(e) = limit_self(args) {
        eprintln!("emergence extract: cannot set resource limits: {e}");
        return ExitCode::FAILURE;
    }
    let mut bytes = Vec::new();
    if let Err(e) = std::io::stdin()
        .lock()
        .take(args.max_bytes + 1)
        .read_to_end(&mut bytes)
    {
        eprintln!("emergence extract: cannot read the file: {e}");
        return ExitCode::FAILURE;
    }
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let result = if bytes.len() as u64 > args.max_bytes {
        Err(Failure {
            class: "too_large",
            reason: "the file is larger than documents may be".into(),
        })
    } else {
        extract(args, &bytes)
    };
    drop(bytes);
    let written = match result {
        Ok((pages, chunks)) => chunks
            .into_iter()
            .try_for_each(|c| write_line(&mut out, &ChildLine::Chunk(c)))
            .and_then(|()| write_line(&mut out, &ChildLine::Done { pages })),
        Err(f) => write_line(
            &mut out,
            &ChildLine::Failed {
                class: f.class.to_string(),
                reason: f.reason,
            },
        ),
    };
    match written.and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::FAILURE,
    }
}

/// Read the file; a reader's panic (a crate choking on a malformed file) is a corrupt file.
fn extract(args: &ExtractArgs, bytes: &[u8]) -> Result<(Option<i64>, Vec<Chunk>), Failure> {
    let outcome = std::panic::catch_unwind(|| {
        let mut chunker = Chunker::new(args.max_chunks);
        let pages = read(args.kind, bytes, &mut chunker)?;
        Ok((pages, chunker.finish()?))
    });
    let (pages, chunks) = outcome.unwrap_or_else(|_| {
        Err(Failure {
            class: "corrupt",
            reason: "the file could not be read: its content is malformed".into(),
        })
    })?;
    if chunks.is_empty() {
        return Err(Failure {
            class: "no_text",
            reason: "the file has no text".into(),
        });
    }
    Ok((pages, chunks))
}

fn write_line(out: &mut impl Write, line: &ChildLine) -> std::io::Result<()> {
    serde_json::to_writer(&mut *out, line)?;
    out.write_all(b"\n")
}

/// The child's own limits, set before it reads a byte: past the address space, allocations
/// fail (the child aborts); past the CPU seconds, the kernel stops it (SIGXCPU, then SIGKILL).
fn limit_self(args: &ExtractArgs) -> std::io::Result<()> {
    use rlimit::Resource;
    if args.memory_mb > 0 {
        let bytes = args.memory_mb * 1024 * 1024;
        rlimit::setrlimit(Resource::AS, bytes, bytes)?;
    }
    if args.cpu_secs > 0 {
        rlimit::setrlimit(Resource::CPU, args.cpu_secs, args.cpu_secs + 5)?;
    }
    // A crash leaves no core file behind.
    rlimit::setrlimit(Resource::CORE, 0, 0)?;
    Ok(())
}
