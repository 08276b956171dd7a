//! Document settings (`[documents]`, issue #19): how large an upload may be
//! (`EMERGENCE_DOCUMENTS_MAX_BYTES`), each user's storage quota
//! (`EMERGENCE_DOCUMENTS_QUOTA_BYTES`), and the bounds of the extraction child process (memory,
//! CPU seconds, wall-clock time, how many run at once per instance), where files are kept
//! (`EMERGENCE_DOCUMENTS_STORAGE`: the database, or a bucket), and the embeddings model of hybrid
//! retrieval (`[documents.embeddings]`, [`super::embeddings`]).

use std::path::PathBuf;

use serde::Deserialize;

use super::{Env, embeddings::EmbeddingSettings};

/// Uploads, storage and extraction.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DocumentSettings {
    /// Largest file accepted, in bytes (413 `file_too_large` above; default 25 MiB).
    pub max_bytes: u64,
    /// Bytes of documents one user may keep (403 `quota_exceeded` above; 0: no quota;
    /// default 250 MiB).
    pub quota_bytes: u64,
    /// Address space of the extraction child, in MiB (`RLIMIT_AS`; default 512).
    pub extract_memory_mb: u64,
    /// CPU seconds of the extraction child (`RLIMIT_CPU`; default 60).
    pub extract_cpu_secs: u64,
    /// Wall-clock limit of one extraction, in seconds (the child is killed after; default 120).
    pub extract_timeout_secs: u64,
    /// Extractions running at once on this instance (default 2).
    pub extract_concurrency: usize,
    /// The executable run as `EXE extract` (default: this server's own binary). Tests that run
    /// the server in-process point it at the built `emergence` binary.
    pub extractor: Option<PathBuf>,
    /// Passages an agent turn receives at most (default 5).
    pub passages: usize,
    /// Where uploaded files are kept: unset or `database` (default), or a bucket URL
    /// (`s3://bucket/prefix`, `gs://bucket/prefix`, `file:///dir`; `EMERGENCE_DOCUMENTS_STORAGE`).
    pub storage: Option<String>,
    /// Options of that store, by `object_store`'s names (`endpoint`, `region`,
    /// `access_key_id`, `secret_access_key`, `allow_http`, `service_account`, ...), over the
    /// store's standard environment variables.
    pub storage_options: std::collections::BTreeMap<String, String>,
    /// The embeddings model of hybrid retrieval (off by default).
    pub embeddings: EmbeddingSettings,
}

impl Default for DocumentSettings {
    fn default() -> Self {
        Self {
            max_bytes: 25 * 1024 * 1024,
            quota_bytes: 250 * 1024 * 1024,
            extract_memory_mb: 512,
            extract_cpu_secs: 60,
            extract_timeout_secs: 120,
            extract_concurrency: 2,
            extractor: None,
            passages: 5,
            storage: None,
            storage_options: Default::default(),
            embeddings: EmbeddingSettings::default(),
        }
    }
}

impl DocumentSettings {
    /// `EMERGENCE_DOCUMENTS_MAX_BYTES`, `EMERGENCE_DOCUMENTS_QUOTA_BYTES`,
    /// `EMERGENCE_DOCUMENTS_EXTRACT_MEMORY_MB`, `EMERGENCE_DOCUMENTS_EXTRACT_TIMEOUT_SECS`,
    /// `EMERGENCE_DOCUMENTS_EXTRACTOR`, `EMERGENCE_DOCUMENTS_STORAGE`.
    pub fn apply_env(&mut self, env: &dyn Env) -> anyhow::Result<()> {
        for (key, slot) in [
            ("EMERGENCE_DOCUMENTS_MAX_BYTES", &mut self.max_bytes),
            ("EMERGENCE_DOCUMENTS_QUOTA_BYTES", &mut self.quota_bytes),
            (
                "EMERGENCE_DOCUMENTS_EXTRACT_MEMORY_MB",
                &mut self.extract_memory_mb,
            ),
            (
                "EMERGENCE_DOCUMENTS_EXTRACT_TIMEOUT_SECS",
                &mut self.extract_timeout_secs,
            ),
        ] {
            if let Some(v) = env.var(key) {
                *slot = v
                    .trim()
                    .parse()
                    .map_err(|e| anyhow::anyhow!("invalid {key}={v:?}: {e}"))?;
            }
        }
        if let Some(v) = env.var("EMERGENCE_DOCUMENTS_EXTRACTOR") {
            self.extractor = Some(PathBuf::from(v));
        }
        if let Some(v) = env.var("EMERGENCE_DOCUMENTS_STORAGE") {
            self.storage = Some(v);
        }
        self.embeddings.apply_env(env)
    }
}
