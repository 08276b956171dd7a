//! The fact detector: which sentences of a user's message state something about themselves
//! worth remembering. Deterministic, offline, English and French, on purpose small: a fixed
//! list of phrasings (docs/memories.md lists them), matched case-insensitively at a word
//! boundary of a sentence that is not a question and not a condition ("if I prefer...").
//!
//! Two kinds of phrasing:
//! * a request to remember ("remember that X", "souviens-toi que X"): the fact is X;
//! * a statement ("I prefer X", "my name is X", "je travaille sur X"): the fact is the
//!   statement itself, from the phrase to the end of the sentence.

/// Requests to remember: the fact is what follows.
const REMEMBER: &[&str] = &[
    "remember that ",
    "remember: ",
    "don't forget that ",
    "do not forget that ",
    "keep in mind that ",
    "souviens-toi que ",
    "souviens-toi qu'",
    "souviens toi que ",
    "rappelle-toi que ",
    "rappelle-toi qu'",
    "retiens que ",
    "retiens qu'",
    "n'oublie pas que ",
    "n'oublie pas qu'",
];

/// Statements about oneself: the fact is the statement.
const STATEMENTS: &[&str] = &[
    "i prefer ",
    "i'd prefer ",
    "i would prefer ",
    "my name is ",
    "call me ",
    "i work on ",
    "i work at ",
    "i work for ",
    "i work as ",
    "i live in ",
    "i am allergic to ",
    "i'm allergic to ",
    "my favourite ",
    "my favorite ",
    "je préfère ",
    "je m'appelle ",
    "mon nom est ",
    "appelle-moi ",
    "je travaille sur ",
    "je travaille chez ",
    "je travaille à ",
    "je travaille comme ",
    "j'habite à ",
    "j'habite en ",
    "j'habite au ",
    "je vis à ",
    "je suis allergique ",
];

/// Openings of "mon plat préféré est ..." (with " préféré" further on).
const FAVOURITE: &[&str] = &["mon ", "ma ", "mes "];

/// Every phrase above, for the quick rejection of a message that states nothing.
static OPENINGS: std::sync::LazyLock<aho_corasick::AhoCorasick> = std::sync::LazyLock::new(|| {
    aho_corasick::AhoCorasick::new(REMEMBER.iter().chain(STATEMENTS).chain(FAVOURITE))
        .expect("the phrases build an automaton")
});

/// Words that make what follows a condition, not a statement.
const CONDITIONS: &[&str] = &["if", "when", "whether", "unless", "si", "quand", "lorsque"];

/// Longest fact kept from one sentence, in characters (the configured limit may be lower).
const MAX_FACT_CHARS: usize = 300;

/// The facts `body` states, in order, each once (compared by [`dedupe_key`]).
pub fn facts(body: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    if body.contains("```") {
        // Code is not a statement about the user.
        return out;
    }
    // Every stored message passes here: most state nothing, so one pass of an Aho-Corasick
    // automaton over the folded text (the same folding as `prefix_len`) rules them out before
    // the per-word matching below runs.
    let folded: String = body
        .chars()
        .map(|c| if c == '’' { '\'' } else { c })
        .map(|c| c.to_lowercase().next().unwrap_or(c))
        .collect();
    if !OPENINGS.is_match(&folded) {
        return out;
    }
    for (sentence, question) in sentences(body) {
        if question {
            continue;
        }
        if let Some(fact) = fact_in(sentence) {
            let key = dedupe_key(&fact);
            if !key.is_empty() && !out.iter().any(|f| dedupe_key(f) == key) {
                out.push(fact);
            }
        }
    }
    out
}

/// What makes two facts the same: lowercased letters and digits, words separated by one space.
pub fn dedupe_key(text: &str) -> String {
    text.to_lowercase()
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The sentences of `text`, each with whether it is a question (ends with `?`).
fn sentences(text: &str) -> Vec<(&str, bool)> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, c) in text.char_indices() {
        if matches!(c, '.' | '!' | '?' | '\n' | ';') {
            let s = text[start..i].trim();
            if !s.is_empty() {
                out.push((s, c == '?'));
            }
            start = i + c.len_utf8();
        }
    }
    let s = text[start..].trim();
    if !s.is_empty() {
        out.push((s, false));
    }
    out
}

/// The first fact of one sentence, if it states one.
fn fact_in(sentence: &str) -> Option<String> {
    let boundaries = sentence
        .char_indices()
        .filter(|&(i, _)| {
            i == 0
                || sentence[..i]
                    .chars()
                    .next_back()
                    .is_some_and(|p| !p.is_alphanumeric() && p != '\'' && p != '’')
        })
        .map(|(i, _)| i);
    for at in boundaries {
        let rest = &sentence[at..];
        if conditional(&sentence[..at]) {
            continue;
        }
        if let Some(len) = REMEMBER.iter().find_map(|p| prefix_len(rest, p)) {
            return clean(&rest[len..], true);
        }
        if STATEMENTS.iter().any(|p| prefix_len(rest, p).is_some()) {
            return clean(rest, false);
        }
        // "mon plat préféré est ...", "ma couleur préférée est ..."
        if FAVOURITE.iter().any(|p| prefix_len(rest, p).is_some())
            && rest.to_lowercase().contains(" préféré")
        {
            return clean(rest, false);
        }
    }
    None
}

/// Whether the words before a phrase make it a condition ("if I prefer ...").
fn conditional(before: &str) -> bool {
    before
        .split(|c: char| !c.is_alphanumeric())
        .rfind(|w| !w.is_empty())
        .is_some_and(|w| CONDITIONS.contains(&w.to_lowercase().as_str()))
}

/// Bytes of `text` that spell `phrase` (lowercase), compared case-insensitively, with `’`
/// read as `'`; `None` when `text` does not start with it.
fn prefix_len(text: &str, phrase: &str) -> Option<usize> {
    let mut chars = text.char_indices();
    for want in phrase.chars() {
        let (_, got) = chars.next()?;
        let got = if got == '’' { '\'' } else { got };
        if got.to_lowercase().next() != Some(want) {
            return None;
        }
    }
    Some(chars.next().map_or(text.len(), |(i, _)| i))
}

/// The fact as kept: trimmed, without closing punctuation or quotes, at most
/// [`MAX_FACT_CHARS`], with a capital first letter when `capitalise`; `None` when too short.
fn clean(text: &str, capitalise: bool) -> Option<String> {
    let t = text
        .trim()
        .trim_end_matches(|c: char| c.is_whitespace() || ",:\"'”»)".contains(c))
        .trim_start_matches(|c: char| c.is_whitespace() || "\"'“«:".contains(c));
    if t.chars().filter(|c| c.is_alphanumeric()).count() < 2 {
        return None;
    }
    let t: String = t.chars().take(MAX_FACT_CHARS).collect();
    if !capitalise {
        return Some(t);
    }
    let mut chars = t.chars();
    Some(match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => t,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_english_and_french_statements_and_requests_to_remember() {
        assert_eq!(
            facts("Hello! I prefer answers in French. Thanks"),
            ["I prefer answers in French"]
        );
        assert_eq!(
            facts("Please remember that my favourite colour is teal."),
            ["My favourite colour is teal"]
        );
        assert_eq!(facts("my name is Ada"), ["my name is Ada"]);
        assert_eq!(
            facts("Je préfère les réponses courtes. Souviens-toi que j’ai un chat nommé Pixel"),
            [
                "Je préfère les réponses courtes",
                "J’ai un chat nommé Pixel"
            ]
        );
        assert_eq!(
            facts("Ma couleur préférée est le vert"),
            ["Ma couleur préférée est le vert"]
        );
        assert_eq!(
            facts("Also, I work on a compiler for Rust; it is fun"),
            ["I work on a compiler for Rust"]
        );
    }

    #[test]
    fn the_quick_rejection_folds_case_and_curly_apostrophes_like_the_matcher() {
        assert_eq!(facts("I’M ALLERGIC TO nuts."), ["I’M ALLERGIC TO nuts"]);
        assert_eq!(facts("N’oublie pas qu’il pleut"), ["Il pleut"]);
        assert!(facts("Nothing about me in this sentence, my friend.").is_empty());
    }

    #[test]
    fn ignores_questions_conditions_code_and_other_people() {
        assert!(facts("Do you remember that I prefer tea?").is_empty());
        assert!(facts("If I prefer tea, what then").is_empty());
        assert!(facts("```\n// I prefer tabs\n```").is_empty());
        assert!(facts("She said they prefer tea").is_empty());
        assert!(facts("Remember that").is_empty());
        assert!(facts("Hello there, how are you").is_empty());
    }

    #[test]
    fn the_same_fact_twice_is_kept_once_and_the_key_ignores_case_and_punctuation() {
        assert_eq!(facts("I prefer tea. I PREFER TEA!"), ["I prefer tea"]);
        assert_eq!(dedupe_key("I prefer  Tea!"), dedupe_key("i prefer tea"));
    }
}
