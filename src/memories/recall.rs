//! What an agent turn receives of its requester's memory: the items that share words with the
//! question (most shared words first, a crude stem: the first five letters), then the newest
//! facts, within a count and a token budget, as a system note ([`prompt_block`]). Only the
//! requester's own items, and only while they have memory on.

use crate::{
    db::{
        Database, StoreError,
        memories::{MemoryItem, MemoryPage},
    },
    settings::memories::MemorySettings,
};

use super::store_of;

/// Words too common to say what a question or an item is about (English and French).
const STOPWORDS: &[&str] = &[
    "a", "about", "all", "also", "an", "and", "any", "are", "as", "at", "be", "but", "by", "can",
    "could", "did", "do", "does", "for", "from", "had", "has", "have", "how", "i", "if", "in",
    "into", "is", "it", "its", "me", "my", "no", "not", "of", "on", "or", "our", "so", "than",
    "that", "the", "their", "them", "then", "there", "these", "they", "this", "to", "us", "was",
    "we", "were", "what", "when", "where", "which", "who", "why", "will", "with", "would", "you",
    "your", "tell", "please", "know", "remember", "au", "aux", "avec", "ce", "ces", "dans", "de",
    "des", "du", "elle", "en", "est", "et", "il", "je", "la", "le", "les", "leur", "lui", "ma",
    "mais", "me", "mes", "moi", "mon", "ne", "nous", "on", "ou", "par", "pas", "pour", "qu", "que",
    "qui", "sa", "se", "ses", "son", "sur", "ta", "te", "tes", "toi", "ton", "tu", "un", "une",
    "vous", "quel", "quelle", "souviens",
];

/// The words of `text` that say what it is about: lowercased letters and digits, two
/// characters or more, without common words.
pub fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .map(str::to_lowercase)
        .filter(|w| w.chars().count() >= 2 && !STOPWORDS.contains(&w.as_str()))
        .collect()
}

/// A crude stem: the first five characters (`colours` and `colour` meet).
fn stem(word: &str) -> String {
    word.chars().take(5).collect()
}

/// Estimated tokens of a text (the agents' rule: 1 per 4 bytes, plus a little).
fn tokens(text: &str) -> usize {
    text.len() / 4 + 8
}

/// Choose what a turn receives from `items` (newest first) for `question`: items sharing words
/// with it, most shared first (newest first among equals), then the newest facts; at most
/// `max_items`, within `max_tokens` (the first one always).
pub fn rank(
    items: Vec<MemoryItem>,
    question: &str,
    max_items: usize,
    max_tokens: usize,
) -> Vec<MemoryItem> {
    let mut asked: Vec<String> = words(question).iter().map(|w| stem(w)).collect();
    asked.sort();
    asked.dedup();
    let mut scored: Vec<(usize, usize)> = items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let mut own: Vec<String> = words(&item.text).iter().map(|w| stem(w)).collect();
            own.sort();
            own.dedup();
            (i, asked.iter().filter(|a| own.contains(a)).count())
        })
        .collect();
    // Most shared words first; the input order (newest first) among equals.
    scored.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let relevant = scored.iter().filter(|(_, s)| *s > 0).map(|(i, _)| *i);
    let newest_facts = (0..items.len()).filter(|i| items[*i].kind == "fact");
    let mut order: Vec<usize> = Vec::new();
    for i in relevant.chain(newest_facts) {
        if !order.contains(&i) {
            order.push(i);
        }
    }
    let mut out = Vec::new();
    let mut used = 0;
    for i in order {
        let cost = tokens(&items[i].text);
        if out.len() == max_items || (!out.is_empty() && used + cost > max_tokens) {
            break;
        }
        used += cost;
        out.push(items[i].clone());
    }
    out
}

/// The system note of the chosen items.
pub fn prompt_block(items: &[MemoryItem]) -> String {
    let mut block = String::from(
        "\n\nMemory: the person you are answering asked Emergence to remember these notes about \
         them (most relevant first). Use them when they help; they concern this person only.",
    );
    for item in items {
        block.push_str("\n- ");
        if item.kind == "summary" {
            block.push_str("Summary of an earlier thread: ");
        }
        block.push_str(&item.text);
    }
    block
}

/// The items of `user_id` an agent answering `question` receives: none unless the user has
/// memory on.
pub async fn recall(
    db: &Database,
    settings: &MemorySettings,
    user_id: &str,
    question: &str,
) -> Result<Vec<MemoryItem>, StoreError> {
    if settings.context_items == 0 {
        return Ok(Vec::new());
    }
    let page = MemoryPage {
        user_id: user_id.to_string(),
        kind: None,
        before: None,
        limit: i64::from(settings.max_items.max(1)),
    };
    let items = db
        .run(|s| async move {
            let Some(store) = s.memories() else {
                return Ok(Vec::new());
            };
            if store.memories_enabled(&page.user_id).await?.is_none() {
                return Ok(Vec::new());
            }
            store_of(&s)?.memory_page(&page).await
        })
        .await?;
    Ok(rank(
        items,
        question,
        settings.context_items as usize,
        settings.context_tokens as usize,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(id: &str, kind: &str, text: &str) -> MemoryItem {
        MemoryItem {
            id: id.into(),
            user_id: "u".into(),
            kind: kind.into(),
            text: text.into(),
            dedupe_key: id.into(),
            source_thread_id: None,
            source_message_id: None,
            created_at: 0,
            updated_at: 0,
        }
    }

    #[test]
    fn relevant_items_first_then_the_newest_facts_within_the_bounds() {
        // Newest first, as the store lists them.
        let items = vec![
            item("5", "fact", "I prefer answers in French"),
            item(
                "4",
                "summary",
                "Thread \"Paint\": ana: the colour of the shed",
            ),
            item("3", "fact", "My favourite colour is teal"),
            item("2", "fact", "I work on a compiler"),
            item("1", "fact", "I live in Lyon"),
        ];
        let ids = |v: Vec<MemoryItem>| v.into_iter().map(|i| i.id).collect::<Vec<_>>();
        assert_eq!(
            ids(rank(items.clone(), "What is my favourite colour?", 3, 1000)),
            ["3", "4", "5"]
        );
        assert_eq!(
            ids(rank(items.clone(), "hello", 10, 1000)),
            ["5", "3", "2", "1"]
        );
        // The token budget keeps the first item, then stops.
        assert_eq!(ids(rank(items, "compiler", 10, 1)), ["2"]);
    }

    #[test]
    fn the_note_names_summaries() {
        let block = prompt_block(&[
            item("1", "fact", "I live in Lyon"),
            item("2", "summary", "S"),
        ]);
        assert!(block.contains("\n- I live in Lyon\n- Summary of an earlier thread: S"));
    }
}
