//! Chunking by structure: the readers give [`Block`]s (a paragraph, a table row, a page's
//! paragraph) with their page and heading; consecutive blocks of the same page and heading are
//! joined into passages of about [`TARGET`] characters, never over [`MAX`], and a block longer
//! than that (a 20 MB single line) is cut at a space near the target, or hard at [`MAX`]. Linear
//! in the text's size.

use crate::db::documents::Chunk;

/// Characters a passage aims at.
pub const TARGET: usize = 1000;
/// Characters a passage never exceeds.
pub const MAX: usize = 1200;
/// Characters a heading keeps at most.
const HEADING_MAX: usize = 200;

/// A piece of text as a reader found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    pub page: Option<i64>,
    pub heading: Option<String>,
    pub text: String,
}

/// Join and cut blocks into passages, numbered from 0.
pub struct Chunker {
    chunks: Vec<Chunk>,
    current: Option<Block>,
    limit: usize,
}

/// The text gave more passages than a document may have.
#[derive(Debug, PartialEq, Eq)]
pub struct TooManyChunks;

impl Chunker {
    /// At most `limit` passages.
    pub fn new(limit: usize) -> Self {
        Self {
            chunks: Vec::new(),
            current: None,
            limit,
        }
    }

    /// Add one block, in document order.
    pub fn push(&mut self, block: Block) -> Result<(), TooManyChunks> {
        let text = normalize(&block.text);
        if text.is_empty() {
            return Ok(());
        }
        let heading = block
            .heading
            .map(|h| truncate(h.trim(), HEADING_MAX).to_string())
            .filter(|h| !h.is_empty());
        let same_place = self
            .current
            .as_ref()
            .is_some_and(|c| c.page == block.page && c.heading == heading);
        let fits = self
            .current
            .as_ref()
            .is_some_and(|c| chars(&c.text) + 2 + text.char_indices().take(MAX + 1).count() <= MAX);
        if same_place && fits {
            let current = self.current.as_mut().expect("checked above");
            current.text.push_str("\n\n");
            current.text.push_str(&text);
            return Ok(());
        }
        self.flush()?;
        let mut rest = text.as_str();
        while rest.char_indices().nth(MAX).is_some() {
            let cut = cut_point(rest);
            self.emit(block.page, heading.clone(), rest[..cut].trim().to_string())?;
            rest = rest[cut..].trim_start();
        }
        self.current = Some(Block {
            page: block.page,
            heading,
            text: rest.to_string(),
        });
        Ok(())
    }

    /// The passages, once every block is in.
    pub fn finish(mut self) -> Result<Vec<Chunk>, TooManyChunks> {
        self.flush()?;
        Ok(self.chunks)
    }

    fn flush(&mut self) -> Result<(), TooManyChunks> {
        if let Some(b) = self.current.take() {
            self.emit(b.page, b.heading, b.text)?;
        }
        Ok(())
    }

    fn emit(
        &mut self,
        page: Option<i64>,
        heading: Option<String>,
        text: String,
    ) -> Result<(), TooManyChunks> {
        if text.is_empty() {
            return Ok(());
        }
        if self.chunks.len() >= self.limit {
            return Err(TooManyChunks);
        }
        self.chunks.push(Chunk {
            ord: self.chunks.len() as i64,
            page,
            heading,
            text,
        });
        Ok(())
    }
}

fn chars(s: &str) -> usize {
    s.chars().count()
}

/// Where to cut a text longer than [`MAX`]: the last whitespace between [`TARGET`] / 2 and
/// [`MAX`] characters, else at [`MAX`] characters (a byte index on a character boundary).
fn cut_point(s: &str) -> usize {
    let mut hard = s.len();
    let mut soft = None;
    for (n, (i, c)) in s.char_indices().enumerate() {
        if n == MAX {
            hard = i;
            break;
        }
        if n >= TARGET / 2 && c.is_whitespace() {
            soft = Some(i);
        }
    }
    soft.unwrap_or(hard)
}

/// Spaces and tabs collapsed within lines, blank lines collapsed, ends trimmed.
fn normalize(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(1 << 20));
    let mut blank_run = 0;
    for line in text.lines() {
        let line = line.split_whitespace().collect::<Vec<_>>().join(" ");
        if line.is_empty() {
            blank_run += 1;
            continue;
        }
        if !out.is_empty() {
            out.push_str(if blank_run > 0 { "\n\n" } else { "\n" });
        }
        blank_run = 0;
        out.push_str(&line);
    }
    out
}

/// The first `max` characters of `s`.
pub fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(page: Option<i64>, heading: Option<&str>, text: &str) -> Block {
        Block {
            page,
            heading: heading.map(str::to_string),
            text: text.to_string(),
        }
    }

    #[test]
    fn paragraphs_of_one_page_and_heading_are_joined_and_pages_are_kept_apart() {
        let mut c = Chunker::new(100);
        c.push(block(Some(1), None, "one")).unwrap();
        c.push(block(Some(1), None, "two")).unwrap();
        c.push(block(Some(2), None, "three")).unwrap();
        c.push(block(Some(2), Some("H"), "four")).unwrap();
        let chunks = c.finish().unwrap();
        let texts: Vec<_> = chunks.iter().map(|c| c.text.as_str()).collect();
        assert_eq!(texts, ["one\n\ntwo", "three", "four"]);
        assert_eq!(chunks[1].page, Some(2));
        assert_eq!(chunks[2].heading.as_deref(), Some("H"));
        assert_eq!(chunks.iter().map(|c| c.ord).collect::<Vec<_>>(), [0, 1, 2]);
    }

    #[test]
    fn a_huge_single_line_is_cut_into_bounded_passages() {
        let line = "word ".repeat(50_000) + &"x".repeat(5_000);
        let mut c = Chunker::new(1_000);
        c.push(block(None, None, &line)).unwrap();
        let chunks = c.finish().unwrap();
        assert!(chunks.iter().all(|c| chars(&c.text) <= MAX));
        assert!(chunks.len() > 200);
        let total: usize = chunks.iter().map(|c| c.text.len()).sum();
        assert!(total >= line.len() - 50_001, "nothing but spaces is lost");
        // A limit on the number of passages is an error, not a silent cut.
        let mut c = Chunker::new(3);
        assert_eq!(c.push(block(None, None, &line)), Err(TooManyChunks));
    }
}
