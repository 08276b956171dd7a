//! Retrieval: the passages of a thread's indexed documents that best match a question, by the
//! database's full-text ranking (SQLite FTS5 `bm25`, PostgreSQL `ts_rank`) fused, when an
//! embeddings model is configured, with an exact cosine scan of the thread's chunk vectors
//! (reciprocal rank fusion, `fuse`), for the asker only if they may read the thread (checked
//! inside every query). An agent turn puts them, numbered
//! `[1]`, `[2]`..., in its context within a token budget ([`numbered`], [`prompt_block`]) and
//! stores what it was given as the answer's `citations`.

use std::{collections::HashMap, time::Instant};

use crate::{
    contract::documents::Citation,
    db::{
        Database, StoreError,
        documents::{Passage, PassageQuery},
    },
    metrics::Metrics,
};

use super::{
    embed::{Embedder, vector},
    extract::chunk::truncate,
    fuse, store_of,
};

/// Most words of a question looked for.
const MAX_TERMS: usize = 24;
/// Characters of a passage a citation quotes.
const QUOTE_MAX: usize = 300;

/// Words too common to say what a question is about.
const STOPWORDS: &[&str] = &[
    "a", "about", "all", "also", "an", "and", "any", "are", "as", "at", "be", "been", "but", "by",
    "can", "could", "did", "do", "does", "for", "from", "had", "has", "have", "he", "her", "his",
    "how", "i", "if", "in", "into", "is", "it", "its", "me", "my", "no", "not", "of", "on", "or",
    "our", "she", "so", "than", "that", "the", "their", "them", "then", "there", "these", "they",
    "this", "to", "us", "was", "we", "were", "what", "when", "where", "which", "who", "why",
    "will", "with", "would", "you", "your", "tell", "please", "say", "says", "said",
];

/// The words of `text` worth looking for: letters and digits only, lowercased, without common
/// words, each once, at most [`MAX_TERMS`].
pub fn terms(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for word in text.split(|c: char| !c.is_alphanumeric()) {
        let w = word.to_lowercase();
        if w.chars().count() < 2 && !w.chars().all(|c| c.is_ascii_digit()) {
            continue;
        }
        if w.is_empty() || STOPWORDS.contains(&w.as_str()) || out.contains(&w) {
            continue;
        }
        out.push(w);
        if out.len() == MAX_TERMS {
            break;
        }
    }
    out
}

/// Candidates each ranking contributes to the fusion, per passage asked for.
const CANDIDATES_PER_PASSAGE: i64 = 4;
/// Fewest candidates each ranking contributes.
const MIN_CANDIDATES: i64 = 20;

/// The best `limit` passages of thread `thread_id`'s indexed documents for `question`, if
/// `user_id` may read the thread; timed in `document_retrieval_seconds`. With an embeddings
/// model, the full-text ranking and the cosine ranking of the thread's vectors are fused
/// ([`super::fuse`]); when the question cannot be embedded, full text alone answers.
pub async fn passages(
    db: &Database,
    metrics: &Metrics,
    embedder: Option<&Embedder>,
    thread_id: &str,
    user_id: &str,
    question: &str,
    limit: i64,
) -> Result<Vec<Passage>, StoreError> {
    let query = PassageQuery {
        thread_id: thread_id.to_string(),
        user_id: user_id.to_string(),
        terms: terms(question),
        limit,
    };
    if query.terms.is_empty() && embedder.is_none() {
        return Ok(Vec::new());
    }
    let started = Instant::now();
    let found = match embedder {
        None => full_text(db, query).await,
        Some(e) => hybrid(db, e, query, question).await,
    };
    metrics.document_retrieval.observe(started.elapsed());
    found
}

/// The full-text ranking alone.
async fn full_text(db: &Database, query: PassageQuery) -> Result<Vec<Passage>, StoreError> {
    if query.terms.is_empty() {
        return Ok(Vec::new());
    }
    db.run(|s| async move {
        match s.documents() {
            Some(_) => store_of(&s)?.passages(&query).await,
            // A backend without documents has none to find.
            None => Ok(Vec::new()),
        }
    })
    .await
}

/// Full text and cosine similarity, fused by reciprocal rank.
async fn hybrid(
    db: &Database,
    embedder: &Embedder,
    query: PassageQuery,
    question: &str,
) -> Result<Vec<Passage>, StoreError> {
    let limit = query.limit.max(1) as usize;
    let candidates = (query.limit * CANDIDATES_PER_PASSAGE).max(MIN_CANDIDATES);
    let (thread, user) = (query.thread_id.clone(), query.user_id.clone());
    let wide = PassageQuery {
        limit: candidates,
        ..query
    };
    let (text, asked) = tokio::join!(full_text(db, wide), embedder.question(question));
    let mut text = text?;
    let asked = match asked {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(thread, error = %e, "cannot embed the question; retrieving by full text alone");
            text.truncate(limit);
            return Ok(text);
        }
    };
    let model = embedder.identity().to_string();
    let (t, u) = (thread.clone(), user.clone());
    let stored = db
        .run(|s| async move {
            match s.embeddings() {
                Some(v) => v.thread_vectors(&t, &u, &model).await,
                None => Ok(Vec::new()),
            }
        })
        .await?;
    let mut similar: Vec<(i64, f32)> = stored
        .iter()
        .filter_map(|c| {
            let v = vector::from_bytes(&c.vector)?;
            Some((c.id, vector::cosine(&asked, &v)?))
        })
        .collect();
    similar.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    similar.truncate(candidates as usize);
    let text_ids: Vec<i64> = text.iter().map(|p| p.chunk_id).collect();
    let vector_ids: Vec<i64> = similar.iter().map(|s| s.0).collect();
    let mut fused = fuse::fuse(&[&text_ids, &vector_ids]);
    fused.truncate(limit);
    // Passages only the vectors found are read now (with the same membership check).
    let missing: Vec<i64> = fused
        .iter()
        .map(|f| f.0)
        .filter(|id| !text_ids.contains(id))
        .collect();
    let read = if missing.is_empty() {
        Vec::new()
    } else {
        db.run(|s| async move {
            match s.embeddings() {
                Some(v) => v.passages_by_id(&thread, &user, &missing).await,
                None => Ok(Vec::new()),
            }
        })
        .await?
    };
    let mut by_id: HashMap<i64, Passage> = text
        .into_iter()
        .chain(read)
        .map(|p| (p.chunk_id, p))
        .collect();
    Ok(fused
        .into_iter()
        .filter_map(|(id, score)| by_id.remove(&id).map(|p| Passage { score, ..p }))
        .collect())
}

/// A passage as an agent is given it: its number in the answer, where it is from, its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Numbered {
    pub n: u32,
    pub document_id: String,
    pub name: String,
    pub page: Option<i64>,
    pub ord: i64,
    pub text: String,
}

impl Numbered {
    /// `name, page N` (or the name alone).
    pub fn source(&self) -> String {
        match self.page {
            Some(p) => format!("{}, page {p}", self.name),
            None => self.name.clone(),
        }
    }

    /// The citation stored with an answer that was given this passage.
    pub fn citation(&self) -> Citation {
        Citation {
            n: self.n,
            document_id: self.document_id.clone(),
            name: self.name.clone(),
            page: self.page,
            ord: self.ord,
            quote: truncate(&self.text, QUOTE_MAX).to_string(),
        }
    }
}

/// Estimated tokens of a text (the agents' rule: 1 per 4 bytes, plus a little).
fn tokens(text: &str) -> usize {
    text.len() / 4 + 8
}

/// Number the passages, best first, keeping those that fit in `budget` tokens (the best one
/// always, cut to fit when it alone is too long).
pub fn numbered(passages: Vec<Passage>, budget: usize) -> Vec<Numbered> {
    let mut out = Vec::new();
    let mut used = 0;
    for p in passages {
        let mut text = p.chunk.text;
        let cost = tokens(&text) + tokens(&p.name);
        if used + cost > budget {
            if !out.is_empty() {
                break;
            }
            text = truncate(&text, budget.saturating_mul(4).max(200)).to_string();
        }
        used += cost;
        out.push(Numbered {
            n: out.len() as u32 + 1,
            document_id: p.document_id,
            name: p.name,
            page: p.chunk.page,
            ord: p.chunk.ord,
            text,
        });
    }
    out
}

/// What the system prompt gets: the passages with their numbers and sources, and how to cite
/// them.
pub fn prompt_block(passages: &[Numbered]) -> String {
    let mut block = String::from(
        "\n\nPassages from this thread's documents that may help answer the last question. Answer \
         from them when they are relevant, and cite each passage you use by its number, like [1].",
    );
    for p in passages {
        block.push_str(&format!("\n\n[{}] {}:\n{}", p.n, p.source(), p.text));
    }
    block
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::documents::Chunk;

    #[test]
    fn a_question_keeps_its_meaningful_words_once() {
        assert_eq!(
            terms("What is the capital of Freedonia? The CAPITAL, please — 1969!"),
            ["capital", "freedonia", "1969"]
        );
        assert!(terms("what is it?").is_empty());
        assert_eq!(terms(&"word ".repeat(100)).len(), 1);
    }

    #[test]
    fn passages_are_numbered_best_first_within_the_budget() {
        let passage = |name: &str, page, text: &str| Passage {
            document_id: format!("d-{name}"),
            name: name.into(),
            chunk: Chunk {
                ord: 0,
                page,
                heading: None,
                text: text.into(),
            },
            score: 1.0,
            chunk_id: 1,
        };
        let got = numbered(
            vec![
                passage("a.pdf", Some(3), "first"),
                passage("b.md", None, "second"),
                passage("c.md", None, &"x".repeat(10_000)),
            ],
            100,
        );
        assert_eq!(got.len(), 2);
        assert_eq!(
            (got[0].n, got[0].source()),
            (1, "a.pdf, page 3".to_string())
        );
        assert_eq!(got[1].source(), "b.md");
        let block = prompt_block(&got);
        assert!(block.contains("[1] a.pdf, page 3:\nfirst") && block.contains("[2] b.md:\nsecond"));
        assert_eq!(got[0].citation().quote, "first");
    }
}
