//! The in-memory set of revoked sessions that every token check consults.

use std::{collections::HashMap, sync::RwLock};

use crate::db::now_ms;

/// Revoked session ids, with their expiry (after which the token is refused anyway).
#[derive(Default)]
pub struct Revocations {
    revoked: RwLock<HashMap<String, i64>>,
}

impl Revocations {
    pub fn is_revoked(&self, session_id: &str) -> bool {
        self.revoked
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(session_id)
    }

    /// Add a revocation; returns true when it was new.
    pub fn insert(&self, session_id: &str, expires_at: i64) -> bool {
        let mut map = self.revoked.write().unwrap_or_else(|e| e.into_inner());
        if map.len() > 10_000 {
            let now = now_ms();
            map.retain(|_, exp| *exp > now);
        }
        map.insert(session_id.to_string(), expires_at).is_none()
    }

    pub fn len(&self) -> usize {
        self.revoked.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
