//! The built-in offline provider: no network, no key. It answers deterministically (the same
//! conversation always gets the same answer), streams word by word like the real providers, and
//! says plainly that it is the offline agent.

use std::time::Duration;

use super::{CompletionRequest, EventStream, ProviderEvent};

/// Pause between words, so the answer visibly streams.
const WORD_DELAY: Duration = Duration::from_millis(15);

pub fn stream(req: &CompletionRequest) -> EventStream {
    let text = answer(req);
    let prompt_tokens =
        (req.system.len() + req.messages.iter().map(|m| m.content.len()).sum::<usize>()) as u64 / 4;
    let words: Vec<String> = text.split_inclusive(' ').map(str::to_string).collect();
    let completion = words.len() as u64;
    let s = futures_util::stream::unfold(
        (words.into_iter(), false),
        move |(mut words, done)| async move {
            if done {
                return None;
            }
            match words.next() {
                Some(w) => {
                    tokio::time::sleep(WORD_DELAY).await;
                    Some((Ok(ProviderEvent::Delta(w)), (words, false)))
                }
                None => Some((
                    Ok(ProviderEvent::Usage {
                        prompt: Some(prompt_tokens),
                        completion: Some(completion),
                    }),
                    (words, true),
                )),
            }
        },
    );
    Box::pin(s)
}

/// The persona's name, from the system prompt's "You are NAME".
fn persona(system: &str) -> &str {
    system
        .strip_prefix("You are ")
        .and_then(|rest| rest.split([',', '.', ';', ' ']).next())
        .filter(|n| !n.is_empty())
        .unwrap_or("the agent")
}

fn answer(req: &CompletionRequest) -> String {
    let last = req
        .messages
        .iter()
        .rev()
        .find(|m| m.role == "user")
        .map(|m| m.content.as_str())
        .unwrap_or("");
    let quoted: String = last.chars().take(160).collect();
    let words = last.split_whitespace().count();
    let earlier = req.messages.len().saturating_sub(1);
    format!(
        "I am {}, running as Emergence's built-in offline agent: no language model is connected, so I \
         can only reflect. You wrote {words} words: \"{quoted}\". I can see {earlier} earlier messages in this \
         thread. Run Ollama on this machine, or configure an OpenAI, Anthropic or Gemini key, to talk \
         with a real model.",
        persona(&req.system)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agents::providers::ChatMessage;
    use futures_util::StreamExt;

    #[tokio::test]
    async fn answers_deterministically_and_says_it_is_offline() {
        let req = CompletionRequest {
            model: "offline".into(),
            system: "You are Anima, warm.".into(),
            messages: vec![ChatMessage {
                role: "user",
                content: "hello there".into(),
            }],
            temperature: 0.7,
            max_tokens: 100,
        };
        let collect = |req: CompletionRequest| async move {
            let mut s = stream(&req);
            let mut text = String::new();
            while let Some(Ok(ev)) = s.next().await {
                if let ProviderEvent::Delta(d) = ev {
                    text.push_str(&d);
                }
            }
            text
        };
        let a = collect(req.clone()).await;
        assert_eq!(a, collect(req).await);
        assert!(a.contains("offline agent") && a.contains("Anima") && a.contains("hello there"));
    }
}
