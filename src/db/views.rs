//! The stored records as the wire contract shows them: a [`Message`] becomes a [`MessageView`]
//! and a [`Thread`] a [`ThreadView`] here, and nowhere else, so a message is serialised once.
//! (The contract's types know nothing of storage; storage knows the contract.)

use super::{Message, Thread, rfc3339};
use crate::contract::{AuthorView, MessageView, http::ThreadView};

impl From<&Message> for MessageView {
    fn from(m: &Message) -> Self {
        let meta = m.meta.as_deref();
        MessageView {
            id: m.id.clone(),
            thread_id: m.thread_id.clone(),
            seq: m.seq,
            client_id: m.client_id.clone(),
            author: AuthorView {
                kind: m.author.kind,
                id: m.author.id.clone(),
                name: m.author.name.clone(),
            },
            body: m.body.clone(),
            created_at: rfc3339(m.created_at),
            status: m.status.clone(),
            debate: meta.and_then(|x| x.debate.clone()),
            version_of: meta.and_then(|x| x.version_of.clone()),
            model: meta.and_then(|x| x.model.clone()),
            duration_ms: meta.and_then(|x| x.duration_ms),
            prompt_tokens: m.prompt_tokens,
            completion_tokens: m.completion_tokens,
            error_class: meta.and_then(|x| x.error_class.as_deref()).and_then(|c| {
                serde_json::from_value(serde_json::Value::String(c.to_string())).ok()
            }),
            citations: meta.and_then(|x| x.citations.clone()),
            reasoning: meta.and_then(|x| x.reasoning.clone()),
            reasoning_tokens: meta.and_then(|x| x.reasoning_tokens).map(|n| n as i64),
            context_summary: meta.and_then(|x| x.context_summary.clone()),
        }
    }
}

impl From<&Thread> for ThreadView {
    fn from(t: &Thread) -> Self {
        ThreadView {
            id: t.id.clone(),
            title: t.title.clone(),
            owner_id: t.owner_id.clone(),
            agents: t.agents.clone(),
            created_at: rfc3339(t.created_at),
            last_seq: t.last_seq,
            archived: false,
            pinned: false,
        }
    }
}

/// A thread as one member sees it: with their own archive and pin flags.
pub fn thread_view(t: &Thread, archived: bool, pinned: bool) -> ThreadView {
    ThreadView {
        archived,
        pinned,
        ..ThreadView::from(t)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_thread_serialises_as_the_contract_writes_it() {
        let thread = Thread {
            id: "t".into(),
            title: "T".into(),
            owner_id: "u".into(),
            agents: vec!["a".into()],
            created_at: 0,
            last_seq: 2,
        };
        assert_eq!(
            serde_json::to_value(ThreadView::from(&thread)).unwrap(),
            json!({"id": "t", "title": "T", "owner_id": "u", "agents": ["a"],
                "created_at": rfc3339(0), "last_seq": 2,
                "archived": false, "pinned": false})
        );
    }
}
