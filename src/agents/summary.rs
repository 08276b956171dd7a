//! Context summaries (issue #18): when a thread's history outgrows an agent's context window,
//! its older turns are not silently dropped but summarised. The summary (one per thread and
//! agent, covering the messages up to `through_seq`) is stored, reused by later turns, and
//! extended when more turns fall out; the answer that used it names it in `context_summary`,
//! which the web UI shows as a folded "earlier messages summarised" marker.
//!
//! A new summary leaves the kept turns at half of what the window allows, so the next few turns
//! reuse it instead of extending it each time. The agent's own provider writes it, within
//! `providers.summary_timeout_ms`; the local agent, a provider failure or a slow provider get the
//! extractive summary (the first sentence of each turn, by name), so nothing blocks the answer
//! for long and everything works offline.

use std::time::Duration;

use futures_util::StreamExt;

use super::{
    AgentSettings, context,
    jobs::Agents,
    providers::{ChatMessage, CompletionRequest, ProviderEvent, Route},
};
use crate::{
    contract::context::{ContextSummaryView, SummaryMethod},
    db::{Message, Page, now_ms, summaries::ContextSummary},
};

/// The summariser's instructions (the fake providers of the tests recognise them).
pub const SUMMARY_PROMPT: &str = "You summarise conversations. Write a short, factual summary \
     of the conversation below for a participant who will not see it again: who said what, what \
     was decided, what is still open. Reply with the summary only.";

/// Older messages read, at most, to write a first summary of a long thread.
const OLDER_LIMIT: i64 = 500;

/// The conversation an agent is given, and the summary that stands in for older turns.
pub(super) struct Fitted {
    pub messages: Vec<ChatMessage>,
    pub summary: Option<ContextSummaryView>,
}

/// The block added to the system prompt for a summary.
pub fn prompt_block(s: &ContextSummaryView) -> String {
    format!(
        "\n\nSummary of the earlier conversation (messages 1 to {}), which you no longer see \
         in full:\n{}",
        s.through_seq, s.body
    )
}

impl Agents {
    /// The turns of `history` that fit `budget` tokens for `agent`, the older ones summarised
    /// (stored, reused, extended). `summarise`: false for a new version of an older answer,
    /// which sees the thread as it was (the stored summary may cover later turns).
    pub(super) async fn fit_context(
        &self,
        thread: &str,
        agent: &AgentSettings,
        route: &Route,
        history: &[Message],
        budget: usize,
        summarise: bool,
    ) -> Fitted {
        let whole = || Fitted {
            messages: context::conversation(agent, history, budget),
            summary: None,
        };
        let cost = |ms: &[Message]| -> usize {
            ms.iter().map(|m| context::estimate_tokens(&m.body)).sum()
        };
        if !summarise || history.is_empty() {
            return whole();
        }
        let stored = self.stored_summary(thread, &agent.id).await;
        if stored.is_none() && cost(history) <= budget && history[0].seq <= 1 {
            return whole(); // the whole thread fits: nothing to summarise
        }
        let through = stored.as_ref().map_or(0, |s| s.through_seq);
        let mut turns = self.messages_after(thread, through, history).await;
        let reserve = stored
            .as_ref()
            .map_or(0, |s| context::estimate_tokens(&s.body));
        if turns.is_empty() || cost(&turns) + reserve <= budget {
            // Reused as it is: the turns after it fit.
            let summary = stored.map(view);
            return Fitted {
                messages: context::conversation(agent, &turns, budget.saturating_sub(reserve)),
                summary,
            };
        }
        // More turns fall out: keep the newest within half of what the summary leaves, and
        // fold the others into the summary.
        let cap = budget / 4;
        let keep_budget = budget.saturating_sub(cap) / 2;
        let mut kept = 0;
        let mut used = 0;
        for m in turns.iter().rev() {
            let c = context::estimate_tokens(&m.body);
            if kept > 0 && used + c > keep_budget {
                break;
            }
            used += c;
            kept += 1;
        }
        let dropped: Vec<Message> = turns.drain(..turns.len() - kept).collect();
        let Some(last) = dropped.last() else {
            return Fitted {
                messages: context::conversation(agent, &turns, budget.saturating_sub(reserve)),
                summary: stored.map(view),
            };
        };
        let previous = stored.as_ref().map(|s| s.body.as_str());
        let (body, method) = self.summarise(agent, route, previous, &dropped, cap).await;
        let row = ContextSummary {
            thread_id: thread.to_string(),
            agent_id: agent.id.clone(),
            through_seq: last.seq,
            body,
            method: method_str(method).to_string(),
            updated_at: now_ms(),
        };
        let put = row.clone();
        if let Err(e) = self
            .db
            .run(|s| async move { s.put_context_summary(&put).await })
            .await
        {
            tracing::warn!(thread, agent = %agent.id, error = %e, "could not store a context summary");
        }
        let reserve = context::estimate_tokens(&row.body);
        Fitted {
            messages: context::conversation(agent, &turns, budget.saturating_sub(reserve)),
            summary: Some(view(row)),
        }
    }

    async fn stored_summary(&self, thread: &str, agent: &str) -> Option<ContextSummary> {
        let (t, a) = (thread.to_string(), agent.to_string());
        self.db
            .run(|s| async move { s.context_summary(&t, &a).await })
            .await
            .unwrap_or_else(|e| {
                tracing::debug!(thread, error = %e, "could not read the context summary");
                None
            })
    }

    /// The messages after `through`: `history`, and before it the older ones it lacks (at most
    /// [`OLDER_LIMIT`]).
    async fn messages_after(
        &self,
        thread: &str,
        through: i64,
        history: &[Message],
    ) -> Vec<Message> {
        let first = history[0].seq;
        let mut out = Vec::new();
        if first > through + 1 {
            let id = thread.to_string();
            let limit = (first - through - 1).min(OLDER_LIMIT);
            let from = (first - 1 - limit).max(through);
            if let Ok(older) = self
                .db
                .run(|s| async move { s.messages(&id, Page::After(from), limit).await })
                .await
            {
                out.extend(
                    context::on_screen(older)
                        .into_iter()
                        .filter(|m| m.seq < first),
                );
            }
        }
        out.extend(history.iter().filter(|m| m.seq > through).cloned());
        out
    }

    /// A summary of `previous` and `turns` within `cap` tokens: by the agent's provider within
    /// the time allowed, else extractive.
    async fn summarise(
        &self,
        agent: &AgentSettings,
        route: &Route,
        previous: Option<&str>,
        turns: &[Message],
        cap: usize,
    ) -> (String, SummaryMethod) {
        if route.provider != "local" {
            let limit = Duration::from_millis(self.settings.summary_timeout_ms);
            match tokio::time::timeout(limit, self.provider_summary(route, previous, turns, cap))
                .await
            {
                Ok(Some(text)) => return (clip(&text, cap * 4), SummaryMethod::Provider),
                Ok(None) => {
                    tracing::info!(agent = %agent.id, provider = %route.provider, "the provider wrote no summary; using the extractive one")
                }
                Err(_) => {
                    tracing::info!(agent = %agent.id, provider = %route.provider, "the summary took too long; using the extractive one")
                }
            }
        }
        (
            extractive(previous, turns, cap * 4),
            SummaryMethod::Extractive,
        )
    }

    async fn provider_summary(
        &self,
        route: &Route,
        previous: Option<&str>,
        turns: &[Message],
        cap: usize,
    ) -> Option<String> {
        let mut content = String::new();
        if let Some(p) = previous {
            content.push_str("Summary so far:\n");
            content.push_str(p);
            content.push_str("\n\nThen:\n");
        }
        for m in turns {
            content.push_str(&format!("{}: {}\n", m.author.name, m.body));
        }
        let request = CompletionRequest {
            model: route.model.clone(),
            system: SUMMARY_PROMPT.to_string(),
            messages: vec![ChatMessage {
                role: "user",
                content,
            }],
            temperature: 0.2,
            max_tokens: cap.clamp(64, 4096) as u32,
            passages: Vec::new(),
            memories: Vec::new(),
        };
        let mut events = self.providers.open(route, &request).await.ok()?;
        let mut text = String::new();
        while let Some(item) = events.next().await {
            match item {
                Ok(ProviderEvent::Delta(d)) => text.push_str(&d),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
        let text = text.trim();
        (!text.is_empty()).then(|| text.to_string())
    }
}

fn view(s: ContextSummary) -> ContextSummaryView {
    ContextSummaryView {
        through_seq: s.through_seq,
        method: if s.method == "provider" {
            SummaryMethod::Provider
        } else {
            SummaryMethod::Extractive
        },
        body: s.body,
    }
}

fn method_str(m: SummaryMethod) -> &'static str {
    match m {
        SummaryMethod::Provider => "provider",
        SummaryMethod::Extractive => "extractive",
    }
}

/// At most `max` characters of `text`, cut at a character boundary.
fn clip(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    }
}

/// The offline summary: the previous one, then each turn's first sentence by name; the oldest
/// lines go first when it outgrows `max` characters.
pub fn extractive(previous: Option<&str>, turns: &[Message], max: usize) -> String {
    let mut lines: Vec<String> = previous
        .into_iter()
        .flat_map(str::lines)
        .filter(|l| !l.trim().is_empty() && *l != "…")
        .map(str::to_string)
        .collect();
    for m in turns {
        let text = m.body.split_whitespace().collect::<Vec<_>>().join(" ");
        let end = text
            .char_indices()
            .find(|(i, c)| matches!(c, '.' | '!' | '?') && text[i + 1..].starts_with(' '))
            .map_or(text.len(), |(i, _)| i + 1);
        lines.push(format!("{}: {}", m.author.name, clip(&text[..end], 200)));
    }
    let mut total: usize = lines.iter().map(|l| l.chars().count() + 1).sum();
    let mut cut = false;
    while total > max && lines.len() > 1 {
        total -= lines[0].chars().count() + 1;
        lines.remove(0);
        cut = true;
    }
    let body = lines.join("\n");
    let body = if cut { format!("…\n{body}") } else { body };
    clip(&body, max.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(seq: i64, name: &str, body: &str) -> Message {
        Message::said(seq, name, body)
    }

    #[test]
    fn the_extractive_summary_keeps_each_turns_first_sentence_and_drops_the_oldest_lines() {
        let turns = [
            msg(1, "bob", "We meet on Friday. Bring the slides!"),
            msg(2, "ann", "Fine by me"),
        ];
        assert_eq!(
            extractive(None, &turns, 1000),
            "bob: We meet on Friday.\nann: Fine by me"
        );
        let more = [msg(3, "cy", "Moved to Monday. Sorry.")];
        let previous = extractive(None, &turns, 1000);
        assert_eq!(
            extractive(Some(&previous), &more, 1000),
            "bob: We meet on Friday.\nann: Fine by me\ncy: Moved to Monday."
        );
        let short = extractive(Some(&previous), &more, 40);
        assert!(short.starts_with("…\n"), "{short}");
        assert!(short.ends_with("cy: Moved to Monday."), "{short}");
        assert!(!short.contains("bob"), "{short}");
    }
}
