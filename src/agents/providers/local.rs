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
    let mut text = if req.passages.is_empty() {
        reflect(req)
    } else {
        answer_from_passages(req)
    };
    if let Some(first) = req.memories.first() {
        text.push_str(&format!(
            " From what you asked me to remember: \"{}\".",
            crate::documents::extract::chunk::truncate(first, 200)
        ));
    }
    text
}

/// With nothing to quote: say what was received.
fn reflect(req: &CompletionRequest) -> String {
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

/// The question's last words.
fn question(req: &CompletionRequest) -> &str {
    req.messages
        .iter()
        .rev()
        .find(|m| m.role == "user")
        .map(|m| m.content.as_str())
        .unwrap_or("")
}

/// With passages of the thread's documents: quote the sentence of the best passage that holds
/// most of the question's words, cite it as [1], and point at the others.
fn answer_from_passages(req: &CompletionRequest) -> String {
    let terms = crate::documents::retrieval::terms(question(req));
    let best = &req.passages[0];
    let quote = best_sentence(&best.text, &terms);
    let mut text = format!(
        "From the thread's documents: \"{quote}\" [1] ({}).",
        best.source()
    );
    let others: Vec<String> = req.passages[1..]
        .iter()
        .map(|p| format!("[{}] ({})", p.n, p.source()))
        .collect();
    if !others.is_empty() {
        text.push_str(&format!(
            " Other passages that may help: {}.",
            others.join(", ")
        ));
    }
    text.push_str(&format!(
        " I am {}, Emergence's built-in offline agent: I quote the passage that best matches \
         your question; connect a language model for answers that reason about it.",
        persona(&req.system)
    ));
    text
}

/// The sentence of `text` holding most of `terms` (the first of equals), at most 300
/// characters.
fn best_sentence(text: &str, terms: &[String]) -> String {
    let mut best = ("", 0usize);
    for sentence in text
        .split_inclusive(['.', '!', '?', '\n'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        let lower = sentence.to_lowercase();
        let score = terms.iter().filter(|t| lower.contains(t.as_str())).count();
        if best.0.is_empty() || score > best.1 {
            best = (sentence, score);
        }
    }
    crate::documents::extract::chunk::truncate(best.0, 300).to_string()
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
            passages: Vec::new(),
            memories: Vec::new(),
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

    #[test]
    fn with_passages_it_quotes_the_best_sentence_and_cites_it() {
        use crate::documents::retrieval::Numbered;
        let passage = |n, page, text: &str| Numbered {
            n,
            document_id: "d".into(),
            name: "atlas.pdf".into(),
            page,
            ord: 0,
            text: text.into(),
        };
        let req = CompletionRequest {
            model: "offline".into(),
            system: "You are Neo.".into(),
            messages: vec![ChatMessage {
                role: "user",
                content: "BOB: What is the capital of Freedonia?".into(),
            }],
            temperature: 0.7,
            max_tokens: 100,
            passages: vec![
                passage(
                    1,
                    Some(3),
                    "Maps are old. The capital of Freedonia is Fredville. Fine.",
                ),
                passage(2, None, "other"),
            ],
            memories: Vec::new(),
        };
        let a = answer(&req);
        assert!(
            a.starts_with(
                "From the thread's documents: \"The capital of Freedonia is Fredville.\" [1] \
                 (atlas.pdf, page 3)."
            ),
            "{a}"
        );
        assert!(a.contains("[2] (atlas.pdf)"), "{a}");
    }

    #[test]
    fn mentions_the_first_remembered_item() {
        let req = CompletionRequest {
            model: "offline".into(),
            system: "You are Neo.".into(),
            messages: vec![ChatMessage {
                role: "user",
                content: "BOB: what colour should the logo be".into(),
            }],
            temperature: 0.7,
            max_tokens: 100,
            passages: Vec::new(),
            memories: vec!["My favourite colour is teal".into(), "other".into()],
        };
        let a = answer(&req);
        assert!(
            a.ends_with(" From what you asked me to remember: \"My favourite colour is teal\"."),
            "{a}"
        );
    }
}
