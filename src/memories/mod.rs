//! Per-user memory (issue #19, docs/memories.md), opt-in: facts a user states about themselves
//! and summaries of their threads, kept as items only that user can see, edit and delete
//! (`http`), and given to the agents that answer that user (`recall`).
//!
//! Capture runs off the hot path: the delivery task hands every newly stored message to
//! [`Memories::listen`] (a channel, like the agents' `Stored` events), which runs the offline
//! fact detector (`detect`) on a person's own message and, for users who opted in, stores what
//! it found; a thread reaching a multiple of `memories.summary_every` messages, or archived by
//! a member, gets an extractive summary (`summary`) for each opted-in member. Every change
//! reaches the owner's sockets on every instance as a `memory` frame ([`Event::ToUser`]).

pub mod detect;
pub(crate) mod http;
pub mod recall;
pub mod summary;

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::{
    contract::{
        ServerFrame,
        memories::{MemoryChange, MemoryView},
    },
    db::{
        AuthorKind, Database, Message, Page, SharedStore, StoreError,
        memories::{Added, MemoriesStore, MemoryItem},
        now_ms, rfc3339,
    },
    realtime::{Event, Realtime},
    settings::memories::MemorySettings,
};

pub use http::routes;

/// Messages of a thread a summary reads at most (the latest ones).
const SUMMARY_WINDOW: i64 = 200;

/// The instance's memory service: capture, summaries, and the frames of changes.
pub struct Memories {
    pub settings: MemorySettings,
    db: Database,
    realtime: Arc<Realtime>,
}

impl Memories {
    pub fn new(settings: MemorySettings, db: Database, realtime: Arc<Realtime>) -> Self {
        Self {
            settings,
            db,
            realtime,
        }
    }

    /// Capture from every newly stored message (`heard`, in commit order) until `stop`.
    pub fn listen(
        self: &Arc<Self>,
        mut heard: mpsc::UnboundedReceiver<Message>,
        stop: CancellationToken,
    ) {
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    m = heard.recv() => match m {
                        Some(m) => me.on_stored(&m).await,
                        None => return,
                    },
                }
            }
        });
    }

    /// One stored message: its author's stated facts, and the thread's summary when it
    /// reached a multiple of `summary_every`. Best effort: a failure is logged, never retried.
    async fn on_stored(&self, m: &Message) {
        if m.author.kind == AuthorKind::User
            && let Err(e) = self.capture_facts(m).await
        {
            tracing::warn!(message = %m.id, error = %e, "memory capture failed");
        }
        let every = i64::from(self.settings.summary_every);
        if every > 0 && m.seq > 0 && m.seq % every == 0 {
            // Only the members who opted in: one read, not one per member (a thread of 33
            // members cost 33 reads every `summary_every` messages, a third of the persist
            // bench's queries).
            let thread = m.thread_id.clone();
            let members = self
                .db
                .run(|s| async move { store_of(&s)?.members_with_memory(&thread).await })
                .await;
            for user in members.unwrap_or_default() {
                self.summarise_for(&user, &m.thread_id).await;
            }
        }
    }

    /// Store the facts `m` states, if its author had memory on when it was stored (turning
    /// memory on never captures what was written before).
    async fn capture_facts(&self, m: &Message) -> Result<(), StoreError> {
        let facts = detect::facts(&m.body);
        if facts.is_empty() {
            return Ok(());
        }
        match self.enabled_since(&m.author.id).await? {
            Some(since) if since <= m.created_at => {}
            _ => return Ok(()),
        }
        for fact in facts {
            let item = self.item(
                &m.author.id,
                "fact",
                &fact,
                format!("fact:{}", detect::dedupe_key(&fact)),
                (Some(&m.thread_id), Some(&m.id)),
            );
            if self.add(item, false).await? == Added::Full {
                break;
            }
        }
        Ok(())
    }

    /// A member archived a thread: summarise it for them, if they opted in (in the
    /// background; the archive has answered already).
    pub fn thread_archived(self: &Arc<Self>, user_id: &str, thread_id: &str) {
        let (me, user, thread) = (self.clone(), user_id.to_string(), thread_id.to_string());
        tokio::spawn(async move { me.summarise_for(&user, &thread).await });
    }

    /// Store (or replace) the summary of `thread_id` for `user_id`, if they opted in.
    async fn summarise_for(&self, user_id: &str, thread_id: &str) {
        if let Err(e) = self.try_summarise(user_id, thread_id).await {
            tracing::warn!(thread = thread_id, error = %e, "thread summary failed");
        }
    }

    async fn try_summarise(&self, user_id: &str, thread_id: &str) -> Result<(), StoreError> {
        if self.enabled_since(user_id).await?.is_none() {
            return Ok(());
        }
        let tid = thread_id.to_string();
        let (thread, messages) = self
            .db
            .run(|s| async move {
                let thread = s.thread(&tid).await?;
                let messages = s.messages(&tid, Page::Latest, SUMMARY_WINDOW).await?;
                Ok((thread, messages))
            })
            .await?;
        let Some(thread) = thread else {
            return Ok(());
        };
        let max = self.settings.max_chars as usize;
        let Some(text) = summary::summarise(&thread.title, &messages, max) else {
            return Ok(());
        };
        let item = self.item(
            user_id,
            "summary",
            &text,
            format!("summary:{thread_id}"),
            (Some(thread_id), None),
        );
        self.add(item, true).await.map(|_| ())
    }

    /// A new item of `user_id` (its text cut to `max_chars`).
    fn item(
        &self,
        user_id: &str,
        kind: &str,
        text: &str,
        dedupe_key: String,
        (thread, message): (Option<&str>, Option<&str>),
    ) -> MemoryItem {
        let now = now_ms();
        MemoryItem {
            id: uuid::Uuid::now_v7().to_string(),
            user_id: user_id.to_string(),
            kind: kind.to_string(),
            text: summary::cut(text, self.settings.max_chars as usize),
            dedupe_key,
            source_thread_id: thread.map(str::to_string),
            source_message_id: message.map(str::to_string),
            created_at: now,
            updated_at: now,
        }
    }

    /// Store an item and tell its owner's sockets; what the store said.
    async fn add(&self, item: MemoryItem, replace: bool) -> Result<Added, StoreError> {
        let max = i64::from(self.settings.max_items);
        let added = self
            .db
            .run(|s| async move { store_of(&s)?.add_memory(&item, max, replace).await })
            .await?;
        if let Added::Stored(stored) = &added {
            let change = if stored.created_at == stored.updated_at {
                MemoryChange::Added
            } else {
                MemoryChange::Updated
            };
            self.announce(&stored.user_id, change, Some(stored));
        }
        Ok(added)
    }

    /// Since when `user_id` has memory on (`None`: off).
    async fn enabled_since(&self, user_id: &str) -> Result<Option<i64>, StoreError> {
        let user = user_id.to_string();
        self.db
            .run(|s| async move { store_of(&s)?.memories_enabled(&user).await })
            .await
    }

    /// Tell every socket of `user_id`, on every instance, that an item changed.
    fn announce(&self, user_id: &str, change: MemoryChange, item: Option<&MemoryItem>) {
        self.realtime.publish(Event::ToUser {
            user_id: user_id.to_string(),
            frame: Box::new(ServerFrame::Memory {
                change,
                memory: item.map(view),
            }),
        });
    }
}

/// The backend's memory storage, or an error for a backend without it.
pub(crate) fn store_of(s: &SharedStore) -> Result<&dyn MemoriesStore, StoreError> {
    s.memories().ok_or_else(|| {
        StoreError::Other(anyhow::anyhow!(
            "this storage backend does not keep memories"
        ))
    })
}

/// Every item of `user_id`, newest first (their export).
pub async fn everything_of(db: &Database, user_id: &str) -> Result<Vec<MemoryView>, StoreError> {
    let mut out = Vec::new();
    let mut before = None;
    loop {
        let page = crate::db::memories::MemoryPage {
            user_id: user_id.to_string(),
            kind: None,
            before: before.clone(),
            limit: 500,
        };
        let items = db
            .run(|s| async move {
                match s.memories() {
                    Some(store) => store.memory_page(&page).await,
                    None => Ok(Vec::new()),
                }
            })
            .await?;
        out.extend(items.iter().map(view));
        if items.len() < 500 {
            return Ok(out);
        }
        before = items.last().map(|i| i.id.clone());
    }
}

/// An item as the contract shows it.
pub fn view(item: &MemoryItem) -> MemoryView {
    MemoryView {
        id: item.id.clone(),
        kind: item.kind.clone(),
        text: item.text.clone(),
        source_thread: item.source_thread_id.clone(),
        source_message: item.source_message_id.clone(),
        created_at: rfc3339(item.created_at),
        updated_at: rfc3339(item.updated_at),
    }
}
