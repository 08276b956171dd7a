//! The in-memory fake's thread list, search and import (issue 17), kept apart from the rest of
//! the fake for size: the same semantics as the SQL backends, without ranking or stemming.

use std::collections::{BTreeMap, HashMap};

use super::{MemoryStore, Result, StoredThread};
use crate::db::{
    AuthorKind, Message, StoreError, Thread,
    lifecycle::{
        ExportedMessage, ImportedThread, ListedThread, MARK_END, MARK_START, MemberFlags,
        SearchHit, SearchQuery, ThreadChange, ThreadMember,
    },
};

/// A member's own `(archived_at, pinned_at)`.
type Flags = (Option<i64>, Option<i64>);

impl MemoryStore {
    pub(super) fn thread_list_data(
        &self,
        user_id: &str,
        archived: bool,
    ) -> Result<Vec<ListedThread>> {
        self.check()?;
        let data = self.data();
        let mut mine: Vec<(&StoredThread, Flags)> = data
            .threads
            .values()
            .filter(|t| t.members.contains_key(user_id))
            .map(|t| (t, t.flags.get(user_id).copied().unwrap_or_default()))
            .filter(|(_, (a, _))| a.is_some() == archived)
            .collect();
        mine.sort_by(|(a, fa), (b, fb)| {
            (
                fa.1.is_none(),
                std::cmp::Reverse((a.last_activity, &a.thread.id)),
            )
                .cmp(&(
                    fb.1.is_none(),
                    std::cmp::Reverse((b.last_activity, &b.thread.id)),
                ))
        });
        Ok(mine
            .into_iter()
            .map(|(t, (a, p))| ListedThread {
                thread: t.thread.clone(),
                archived: a.is_some(),
                pinned: p.is_some(),
            })
            .collect())
    }

    pub(super) fn search_data(&self, q: &SearchQuery) -> Result<Vec<SearchHit>> {
        self.check()?;
        let data = self.data();
        let words: Vec<String> = q.text.split_whitespace().map(str::to_lowercase).collect();
        let mut hits: Vec<SearchHit> = data
            .threads
            .values()
            .filter(|t| t.members.contains_key(&q.user_id))
            .filter(|t| q.thread.as_ref().is_none_or(|id| *id == t.thread.id))
            .flat_map(|t| t.messages.values().map(move |m| (t, m)))
            .filter(|(_, m)| {
                let body = m.body.to_lowercase();
                !words.is_empty() && words.iter().all(|w| body.contains(w.as_str()))
            })
            .filter(|(_, m)| {
                q.author
                    .as_ref()
                    .is_none_or(|a| m.author.kind == AuthorKind::User && m.author.id == *a)
                    && q.agent
                        .as_ref()
                        .is_none_or(|a| m.author.kind == AuthorKind::Agent && m.author.id == *a)
                    && q.from.is_none_or(|f| m.created_at >= f)
                    && q.to.is_none_or(|t| m.created_at < t)
            })
            .map(|(t, m)| SearchHit {
                message: m.clone(),
                thread_title: t.thread.title.clone(),
                snippet: format!("{MARK_START}{}{MARK_END}", m.body),
            })
            .collect();
        hits.sort_by(|a, b| {
            (b.message.created_at, &a.message.id).cmp(&(a.message.created_at, &b.message.id))
        });
        Ok(hits
            .into_iter()
            .skip(q.offset.max(0) as usize)
            .take(q.limit.max(0) as usize)
            .collect())
    }

    pub(super) fn import_thread_data(&self, import: &ImportedThread, now: i64) -> Result<()> {
        self.check()?;
        let mut data = self.data();
        let key = (import.thread.owner_id.clone(), import.content_hash.clone());
        if data
            .imports
            .get(&key)
            .is_some_and(|t| data.threads.contains_key(t))
        {
            return Err(StoreError::Conflict("already imported".into()));
        }
        let mut stored = StoredThread {
            thread: Thread {
                last_seq: import.messages.len() as i64,
                ..import.thread.clone()
            },
            last_activity: now,
            members: BTreeMap::from([(import.thread.owner_id.clone(), now)]),
            messages: BTreeMap::new(),
            by_client_id: HashMap::new(),
            flags: HashMap::new(),
        };
        for (m, seq) in import.messages.iter().zip(1i64..) {
            stored.by_client_id.insert(m.client_id.clone(), seq);
            stored.messages.insert(
                seq,
                Message {
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
                },
            );
        }
        data.threads.insert(import.thread.id.clone(), stored);
        data.imports.insert(key, import.thread.id.clone());
        Ok(())
    }

    pub(super) fn member_flags_data(
        &self,
        thread_id: &str,
        user_id: &str,
    ) -> Result<Option<(bool, bool)>> {
        self.check()?;
        let data = self.data();
        Ok(data
            .threads
            .get(thread_id)
            .filter(|t| t.members.contains_key(user_id))
            .map(|t| {
                let (a, p) = t.flags.get(user_id).copied().unwrap_or_default();
                (a.is_some(), p.is_some())
            }))
    }

    pub(super) fn update_thread_data(
        &self,
        thread_id: &str,
        change: &ThreadChange,
    ) -> Result<Option<Thread>> {
        self.check()?;
        let mut data = self.data();
        let Some(t) = data.threads.get_mut(thread_id) else {
            return Ok(None);
        };
        if let Some(title) = &change.title {
            t.thread.title = title.clone();
        }
        if let Some(agents) = &change.agents {
            t.thread.agents = agents.clone();
        }
        if let Some(owner) = &change.owner_id {
            t.thread.owner_id = owner.clone();
        }
        Ok(Some(t.thread.clone()))
    }

    pub(super) fn set_member_flags_data(
        &self,
        thread_id: &str,
        user_id: &str,
        flags: MemberFlags,
        now: i64,
    ) -> Result<bool> {
        self.check()?;
        let mut data = self.data();
        let Some(t) = data
            .threads
            .get_mut(thread_id)
            .filter(|t| t.members.contains_key(user_id))
        else {
            return Ok(false);
        };
        let entry = t.flags.entry(user_id.to_string()).or_default();
        if let Some(a) = flags.archived {
            entry.0 = a.then(|| entry.0.unwrap_or(now));
        }
        if let Some(p) = flags.pinned {
            entry.1 = p.then(|| entry.1.unwrap_or(now));
        }
        Ok(true)
    }

    pub(super) fn delete_thread_data(&self, thread_id: &str, now: i64) -> Result<Option<i64>> {
        self.check()?;
        let mut data = self.data();
        let Some(t) = data.threads.remove(thread_id) else {
            return Ok(None);
        };
        let last = t.thread.last_seq;
        data.deleted.insert(thread_id.to_string(), (t, now));
        Ok(Some(last))
    }

    pub(super) fn purge_deleted_data(&self, before: i64) -> Result<u64> {
        self.check()?;
        let mut data = self.data();
        let doomed: Vec<String> = data
            .deleted
            .iter()
            .filter(|(_, (_, at))| *at < before)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &doomed {
            data.deleted.remove(id);
        }
        data.imports.retain(|_, t| !doomed.contains(t));
        data.summaries.retain(|(t, _), _| !doomed.contains(t));
        Ok(doomed.len() as u64)
    }

    pub(super) fn thread_members_data(&self, thread_id: &str) -> Result<Vec<ThreadMember>> {
        self.check()?;
        let data = self.data();
        let Some(t) = data.threads.get(thread_id) else {
            return Ok(Vec::new());
        };
        let mut members: Vec<ThreadMember> = t
            .members
            .iter()
            .map(|(id, added)| ThreadMember {
                user_id: id.clone(),
                username: data
                    .users
                    .values()
                    .find(|u| &u.0.id == id)
                    .map(|u| u.0.username.clone())
                    .unwrap_or_else(|| id.clone()),
                added_at: *added,
            })
            .collect();
        members.sort_by(|a, b| (a.added_at, &a.username).cmp(&(b.added_at, &b.username)));
        Ok(members)
    }

    pub(super) fn export_messages_data(&self, thread_id: &str) -> Result<Vec<ExportedMessage>> {
        self.check()?;
        let data = self.data();
        Ok(data
            .threads
            .get(thread_id)
            .map(|t| {
                t.messages
                    .values()
                    .map(|m| ExportedMessage {
                        message: m.clone(),
                        prompt_tokens: None,
                        completion_tokens: None,
                    })
                    .collect()
            })
            .unwrap_or_default())
    }
}
