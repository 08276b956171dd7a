//! What an agent sees: its persona prompt and the thread's recent messages within a token
//! budget, each attributed by name so agents can tell each other (and people) apart.
//!
//! Token estimate: 1 token per 4 bytes of text plus 8 per message (a simple, deliberately
//! conservative rule of thumb for English and code).

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

    fn msg(seq: i64, kind: AuthorKind, id: &str, body: &str) -> Message {
        Message {
            id: seq.to_string(),
            thread_id: "t".into(),
            seq,
            client_id: seq.to_string(),
            author: Author {
                kind,
                id: id.into(),
                name: id.to_uppercase(),
            },
            body: body.into(),
            created_at: 0,
            status: None,
        }
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
