//! Thread summaries, extractive and offline: the thread's title and its few most
//! representative sentences, in the order they were written, each with its author. A sentence
//! is representative when its words are frequent in the whole thread (the classic frequency
//! method of extractive summarisation), normalised by its length so that long sentences do not
//! win by size alone. Deterministic: the same messages always give the same summary.

use std::collections::HashMap;

use super::recall::words;
use crate::db::Message;

/// Sentences a summary keeps at most.
const SENTENCES: usize = 3;
/// Sentences shorter or longer than this many words are not picked.
const MIN_WORDS: usize = 3;
const MAX_WORDS: usize = 60;

/// The summary of a thread titled `title` from its `messages` (in `seq` order), at most
/// `max_chars` characters; `None` when there is nothing to summarise.
pub fn summarise(title: &str, messages: &[Message], max_chars: usize) -> Option<String> {
    let mut freq: HashMap<String, usize> = HashMap::new();
    for m in messages {
        for w in words(&m.body) {
            *freq.entry(w).or_default() += 1;
        }
    }
    // (position, author, sentence, score)
    let mut candidates: Vec<(usize, &str, &str, f64)> = Vec::new();
    for m in messages {
        for sentence in m
            .body
            .split_inclusive(['.', '!', '?', '\n'])
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            let count = sentence.split_whitespace().count();
            if !(MIN_WORDS..=MAX_WORDS).contains(&count) {
                continue;
            }
            let mut seen = words(sentence);
            seen.sort();
            seen.dedup();
            let weight: usize = seen.iter().map(|w| freq.get(w).copied().unwrap_or(0)).sum();
            let score = weight as f64 / (count as f64).sqrt();
            candidates.push((candidates.len(), &m.author.name, sentence, score));
        }
    }
    if candidates.is_empty() {
        return None;
    }
    let mut best = candidates.clone();
    best.sort_by(|a, b| b.3.total_cmp(&a.3).then(a.0.cmp(&b.0)));
    best.truncate(SENTENCES);
    best.sort_by_key(|c| c.0);
    let body: Vec<String> = best
        .iter()
        .map(|(_, author, sentence, _)| format!("{author}: {sentence}"))
        .collect();
    let text = format!(
        "Thread \"{title}\" ({} messages): {}",
        messages.len(),
        body.join(" / ")
    );
    Some(cut(&text, max_chars))
}

/// `text` cut to `max` characters, with an ellipsis when cut.
pub fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(seq: i64, name: &str, body: &str) -> Message {
        Message::said(seq, name, body)
    }

    #[test]
    fn keeps_the_sentences_about_what_the_thread_is_about_in_order() {
        let messages = vec![
            msg(1, "ana", "Hi all."),
            msg(2, "ana", "We must pick a database for the billing service."),
            msg(3, "ben", "I had lunch at noon today with my cousin."),
            msg(
                4,
                "ben",
                "The billing service needs a database with strong transactions.",
            ),
            msg(5, "ana", "Then the billing database is PostgreSQL."),
        ];
        let s = summarise("Billing", &messages, 500).unwrap();
        assert!(
            s.starts_with("Thread \"Billing\" (5 messages): ana: We must pick"),
            "{s}"
        );
        assert!(s.contains("ben: The billing service needs"), "{s}");
        assert!(s.contains("PostgreSQL"), "{s}");
        assert!(!s.contains("lunch"), "{s}");
        assert_eq!(summarise("Billing", &messages, 500).unwrap(), s);
        assert_eq!(
            summarise("Billing", &messages, 40).unwrap().chars().count(),
            40
        );
        assert!(summarise("Empty", &[msg(1, "ana", "ok")], 500).is_none());
    }
}
