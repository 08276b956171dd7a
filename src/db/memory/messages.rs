//! The in-memory fake's messages: history pages, the lookup by `client_id`, and the batch insert
//! through the same [`BatchPlan`] as the SQL group commit (gapless `seq` in batch order,
//! exactly-once by `(thread, client_id)`).

use std::collections::HashSet;

use super::{MemoryStore, Result};
use crate::db::{InsertOutcome, Message, NewMessage, Page, batch::BatchPlan};

impl MemoryStore {
    pub(super) fn messages_data(
        &self,
        thread_id: &str,
        page: Page,
        limit: i64,
    ) -> Result<Vec<Message>> {
        self.check()?;
        let data = self.data();
        let Some(t) = data.threads.get(thread_id) else {
            return Ok(Vec::new());
        };
        let limit = limit.max(0) as usize;
        let mut page: Vec<Message> = match page {
            Page::After(n) => t
                .messages
                .range(n.saturating_add(1)..)
                .take(limit)
                .map(|(_, m)| m.clone())
                .collect(),
            Page::Before(n) => t
                .messages
                .range(..n)
                .rev()
                .take(limit)
                .map(|(_, m)| m.clone())
                .collect(),
            Page::Latest => t.messages.values().rev().take(limit).cloned().collect(),
        };
        page.sort_by_key(|m| m.seq);
        Ok(page)
    }

    pub(super) fn message_by_client_id_data(
        &self,
        thread_id: &str,
        client_id: &str,
    ) -> Result<Option<Message>> {
        self.check()?;
        let data = self.data();
        Ok(data.threads.get(thread_id).and_then(|t| {
            let seq = t.by_client_id.get(client_id)?;
            t.messages.get(seq).cloned()
        }))
    }

    pub(super) fn insert_messages_data(&self, batch: &[NewMessage]) -> Result<Vec<InsertOutcome>> {
        self.check_batch(batch)?;
        let mut data = self.data();
        let ids: HashSet<(&str, &str)> = batch
            .iter()
            .map(|m| (m.thread_id.as_str(), m.client_id.as_str()))
            .collect();
        let already: Vec<Message> = ids
            .iter()
            .filter_map(|(thread, client_id)| {
                let t = data.threads.get(*thread)?;
                t.messages.get(t.by_client_id.get(*client_id)?).cloned()
            })
            .collect();
        let mut plan = BatchPlan::new(batch, already);
        let now = batch.iter().map(|m| m.created_at).max().unwrap_or(0);
        for (thread, count) in plan.fresh_counts() {
            let last = data.threads.get_mut(thread).map(|t| {
                t.thread.last_seq += count;
                t.last_activity = now;
                t.thread.last_seq
            });
            plan.reserved(thread, last);
        }
        for (m, seq) in plan.rows() {
            let t = data
                .threads
                .get_mut(&m.thread_id)
                .expect("a reserved thread exists");
            t.by_client_id.insert(m.client_id.clone(), seq);
            let stored = Message {
                id: m.id.clone(),
                thread_id: m.thread_id.clone(),
                seq,
                client_id: m.client_id.clone(),
                author: m.author.clone(),
                body: m.body.clone(),
                created_at: m.created_at,
                status: m.status.clone(),
                prompt_tokens: m.prompt_tokens,
                completion_tokens: m.completion_tokens,
                meta: m.meta.clone(),
            };
            assert!(t.messages.insert(seq, stored).is_none(), "seq {seq} taken");
        }
        drop(data);
        self.batches
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(batch.len());
        Ok(plan.outcomes())
    }
}
