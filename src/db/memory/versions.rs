//! The in-memory fake's regenerated answers (issue 16): one message by id, and regenerate
//! requests recorded once per `(thread, client_id)`, as the SQL backends do.

use super::{MemoryStore, Result};
use crate::db::{Message, versions::Regeneration};

impl MemoryStore {
    pub(super) fn message_by_id_data(&self, thread_id: &str, id: &str) -> Result<Option<Message>> {
        self.check()?;
        let data = self.data();
        Ok(data
            .threads
            .get(thread_id)
            .and_then(|t| t.messages.values().find(|m| m.id == id).cloned()))
    }

    pub(super) fn claim_regeneration_data(&self, claim: &Regeneration) -> Result<Regeneration> {
        self.check()?;
        let mut data = self.data();
        let key = (claim.thread_id.clone(), claim.client_id.clone());
        Ok(data
            .regenerations
            .entry(key)
            .or_insert_with(|| claim.clone())
            .clone())
    }
}
