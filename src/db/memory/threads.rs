//! The in-memory fake's threads and members: creation (the owner as first member), lookups and
//! membership, as the SQL backends' `sql/threads.rs` does them.

use std::collections::{BTreeMap, HashMap};

use super::{MemoryStore, Result, StoredThread};
use crate::db::{StoreError, Thread};

impl MemoryStore {
    pub(super) fn create_thread_data(&self, thread: &Thread, now: i64) -> Result<()> {
        self.check()?;
        let mut data = self.data();
        if data.threads.contains_key(&thread.id) {
            return Err(StoreError::Conflict("thread exists".into()));
        }
        let stored = StoredThread {
            thread: Thread {
                created_at: now,
                last_seq: 0,
                ..thread.clone()
            },
            last_activity: now,
            members: BTreeMap::from([(thread.owner_id.clone(), now)]),
            messages: BTreeMap::new(),
            by_client_id: HashMap::new(),
            flags: HashMap::new(),
        };
        data.threads.insert(thread.id.clone(), stored);
        Ok(())
    }

    pub(super) fn thread_data(&self, id: &str) -> Result<Option<Thread>> {
        self.check()?;
        Ok(self.data().threads.get(id).map(|t| t.thread.clone()))
    }

    pub(super) fn threads_for_user_data(&self, user_id: &str) -> Result<Vec<Thread>> {
        self.check()?;
        let data = self.data();
        let mut mine: Vec<&StoredThread> = data
            .threads
            .values()
            .filter(|t| t.members.contains_key(user_id))
            .collect();
        mine.sort_by(|a, b| (b.last_activity, &b.thread.id).cmp(&(a.last_activity, &a.thread.id)));
        Ok(mine.into_iter().map(|t| t.thread.clone()).collect())
    }

    pub(super) fn members_data(&self, thread_id: &str) -> Result<Vec<String>> {
        self.check()?;
        Ok(self
            .data()
            .threads
            .get(thread_id)
            .map(|t| t.members.keys().cloned().collect())
            .unwrap_or_default())
    }

    pub(super) fn memberships_data(&self, user_id: &str) -> Result<Vec<String>> {
        self.check()?;
        let data = self.data();
        let mut ids: Vec<String> = data
            .threads
            .values()
            .filter(|t| t.members.contains_key(user_id))
            .map(|t| t.thread.id.clone())
            .collect();
        ids.sort();
        Ok(ids)
    }

    pub(super) fn add_member_data(&self, thread_id: &str, user_id: &str, now: i64) -> Result<()> {
        self.check()?;
        let mut data = self.data();
        let thread = data
            .threads
            .get_mut(thread_id)
            .ok_or_else(|| StoreError::Other(anyhow::anyhow!("foreign key: no such thread")))?;
        thread.members.entry(user_id.to_string()).or_insert(now);
        Ok(())
    }
}
