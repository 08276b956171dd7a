//! What an agent sees: its persona prompt and the thread's recent messages within a token
//! budget, each attributed by name so agents can tell each other (and people) apart.
//!
//! Token estimate: 1 token per 4 bytes of text plus 8 per message (a simple, deliberately
//! conservative rule of thumb for English and code).

use std::collections::{HashMap, HashSet};

use crate::db::{AuthorKind, Message};

use super::{AgentSettings, providers::ChatMessage};

/// Estimated tokens of one message.
pub fn estimate_tokens(text: &str) -> usize {
    text.len() / 4 + 8
}

/// Build the conversation for `agent` from messages in ascending `seq` order.
pub fn conversation(agent: &AgentSettings, history: &[Message], budget: usize) -> Vec<ChatMessage> {
    let mut picked = Vec::new();
    let mut used = 0;
    for m in history.iter().rev() {
        let cost = estimate_tokens(&m.body);
        if used + cost > budget && !picked.is_empty() {
            break;
        }
        used += cost;
        picked.push(m);
    }
    picked.reverse();
    let mut out: Vec<ChatMessage> = Vec::new();
    for m in picked {
        let mine = m.author.kind == AuthorKind::Agent && m.author.id == agent.id;
        let (role, content) = if mine {
            ("assistant", m.body.clone())
        } else {
            ("user", format!("{}: {}", m.author.name, m.body))
        };
        // Providers want alternating roles: merge neighbours of the same role.
        match out.last_mut() {
            Some(last) if last.role == role => {
                last.content.push_str("\n\n");
                last.content.push_str(&content);
            }
            _ => out.push(ChatMessage { role, content }),
        }
    }
    if out.first().is_some_and(|m| m.role == "assistant") {
        out.insert(
            0,
            ChatMessage {
                role: "user",
                content: "(earlier conversation)".into(),
            },
        );
    }
    if out.is_empty() {
        out.push(ChatMessage {
            role: "user",
            content: "(the thread is empty)".into(),
        });
    }
    out
}

/// The thread as readers see it: each answer once, as its latest version (regenerated
/// versions name their first one in `version_of`), in the place of its first version (or of
/// its earliest version still in `history`). `history` is in ascending `seq`.
pub fn on_screen(history: Vec<Message>) -> Vec<Message> {
    let group = |m: &Message| {
        m.meta
            .as_ref()
            .and_then(|x| x.version_of.clone())
            .unwrap_or_else(|| m.id.clone())
    };
    if history
        .iter()
        .all(|m| m.meta.as_ref().is_none_or(|x| x.version_of.is_none()))
    {
        return history;
    }
    let latest: HashMap<String, usize> = history
        .iter()
        .enumerate()
        .map(|(i, m)| (group(m), i))
        .collect();
    let mut placed = HashSet::new();
    history
        .iter()
        .filter_map(|m| {
            let g = group(m);
            placed
                .insert(g.clone())
                .then(|| history[latest[&g]].clone())
        })
        .collect()
}

/// Added to the mediator's prompt for a debate's closing turn.
pub const SYNTHESIS_PROMPT: &str = "\n\nThe debate above is over and you are its mediator. Write a \
     closing synthesis: where the debaters agree, where they differ, and a balanced conclusion.";

/// The persona prompt, with a reminder of the setting.
pub fn system_prompt(agent: &AgentSettings) -> String {
    let base = if agent.system_prompt.is_empty() {
        format!("You are {}.", agent.name)
    } else {
        agent.system_prompt.clone()
    };
    format!(
        "{base}\n\nYou are {} in a group chat with people and other AI agents. Messages from others \
         are prefixed with their name.",
        agent.name
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::Author;

    /// `Message::said` by an author of `kind` whose name is their id upper-cased.
    fn msg(seq: i64, kind: AuthorKind, id: &str, body: &str) -> Message {
        Message {
            author: Author {
                kind,
                id: id.into(),
                name: id.to_uppercase(),
            },
            ..Message::said(seq, id, body)
        }
    }

    #[test]
    fn the_thread_on_screen_shows_each_answer_once_as_its_latest_version_in_its_first_place() {
        let version = |seq, of: &str, body| {
            let mut m = msg(seq, AuthorKind::Agent, "neo", body);
            m.meta = Some(Box::new(crate::db::MessageMeta {
                version_of: Some(of.into()),
                ..Default::default()
            }));
            m
        };
        let history = vec![
            msg(1, AuthorKind::User, "bob", "q"),
            msg(2, AuthorKind::Agent, "neo", "first"),
            msg(3, AuthorKind::User, "bob", "next"),
            version(4, "2", "second"),
            version(5, "2", "third"),
        ];
        let bodies: Vec<String> = on_screen(history).into_iter().map(|m| m.body).collect();
        assert_eq!(bodies, ["q", "third", "next"]);
        // The first version out of the window: the latest takes the earliest version's place.
        let bodies: Vec<String> = on_screen(vec![
            version(4, "2", "second"),
            msg(5, AuthorKind::User, "bob", "more"),
            version(6, "2", "third"),
        ])
        .into_iter()
        .map(|m| m.body)
        .collect();
        assert_eq!(bodies, ["third", "more"]);
    }

    #[test]
    fn attributes_by_name_merges_roles_and_respects_the_budget() {
        let agent = crate::agents::default_agents().remove(0);
        let history = vec![
            msg(1, AuthorKind::User, "old", &"x".repeat(4000)),
            msg(2, AuthorKind::User, "bob", "hi"),
            msg(3, AuthorKind::Agent, "neo", "doubt it"),
            msg(4, AuthorKind::Agent, "anima", "I think so"),
            msg(5, AuthorKind::User, "bob", "why?"),
        ];
        let conv = conversation(&agent, &history, 100);
        assert_eq!(conv.len(), 3);
        assert_eq!(
            conv[0],
            ChatMessage {
                role: "user",
                content: "BOB: hi\n\nNEO: doubt it".into()
            }
        );
        assert_eq!(
            conv[1],
            ChatMessage {
                role: "assistant",
                content: "I think so".into()
            }
        );
        assert_eq!(conv[2].content, "BOB: why?");
    }
}
