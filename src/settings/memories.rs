//! Per-user memory settings (`[memories]`, issue #19, docs/memories.md): how many items one user
//! may keep (`EMERGENCE_MEMORIES_MAX_ITEMS`), how long one may be
//! (`EMERGENCE_MEMORIES_MAX_CHARS`), how often a thread is summarised
//! (`EMERGENCE_MEMORIES_SUMMARY_EVERY`), and how much of it an agent turn receives.

use serde::Deserialize;

use super::Env;

/// Limits of the memory items and of what agents receive.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MemorySettings {
    /// Items one user may keep (403 `quota_exceeded` above; captures stop; default 200).
    pub max_items: u32,
    /// Characters of one item's text (422 above; captured text is cut; default 500).
    pub max_chars: u32,
    /// A thread is summarised for its opted-in members each time it reaches a multiple of this
    /// many messages (0: only when archived; default 50).
    pub summary_every: u32,
    /// Items an agent turn receives at most (default 6).
    pub context_items: u32,
    /// Estimated tokens those items may take in the prompt (default 300).
    pub context_tokens: u32,
}

impl Default for MemorySettings {
    fn default() -> Self {
        Self {
            max_items: 200,
            max_chars: 500,
            summary_every: 50,
            context_items: 6,
            context_tokens: 300,
        }
    }
}

impl MemorySettings {
    /// `EMERGENCE_MEMORIES_MAX_ITEMS`, `EMERGENCE_MEMORIES_MAX_CHARS`,
    /// `EMERGENCE_MEMORIES_SUMMARY_EVERY`.
    pub fn apply_env(&mut self, env: &dyn Env) -> anyhow::Result<()> {
        for (key, slot) in [
            ("EMERGENCE_MEMORIES_MAX_ITEMS", &mut self.max_items),
            ("EMERGENCE_MEMORIES_MAX_CHARS", &mut self.max_chars),
            ("EMERGENCE_MEMORIES_SUMMARY_EVERY", &mut self.summary_every),
        ] {
            if let Some(v) = env.var(key) {
                *slot = v
                    .trim()
                    .parse()
                    .map_err(|e| anyhow::anyhow!("invalid {key}={v:?}: {e}"))?;
            }
        }
        Ok(())
    }
}
