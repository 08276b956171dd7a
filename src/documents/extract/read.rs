//! The format readers of the extraction child: each turns the file's bytes into [`Block`]s
//! with their page and heading, or a [`Failure`] that says why not in words a user can act on.
//! They run only in the child process (`emergence extract`), under its memory and CPU limits,
//! so a reader that loops or balloons on a malicious file costs a killed child, never the server.

use std::io::{Cursor, Read};

use quick_xml::events::Event;

use super::chunk::{Block, Chunker, TooManyChunks};
use crate::documents::kind::Kind;

/// Most bytes a DOCX's `word/document.xml` may take once unzipped (zip bombs stop here).
pub const DOCX_XML_MAX: u64 = 64 * 1024 * 1024;

/// Why a file could not be read: a stable class (metrics label, docs) and a sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub class: &'static str,
    pub reason: String,
}

impl Failure {
    fn new(class: &'static str, reason: impl Into<String>) -> Self {
        Self {
            class,
            reason: reason.into(),
        }
    }

    fn corrupt(what: &str) -> Self {
        Self::new("corrupt", format!("the file could not be read: {what}"))
    }
}

impl From<TooManyChunks> for Failure {
    fn from(_: TooManyChunks) -> Self {
        Failure::new(
            "too_large",
            "the document holds more text than one document may (split it into smaller files)",
        )
    }
}

/// Read `bytes` as `kind` into `out`; the number of pages for formats that have them.
pub fn read(kind: Kind, bytes: &[u8], out: &mut Chunker) -> Result<Option<i64>, Failure> {
    match kind {
        Kind::Pdf => pdf(bytes, out),
        Kind::Docx => docx(bytes, out).map(|()| None),
        Kind::Markdown => text(bytes, out, true).map(|()| None),
        Kind::Text => text(bytes, out, false).map(|()| None),
        Kind::Csv => csv(bytes, out).map(|()| None),
        Kind::Html => html(bytes, out).map(|()| None),
    }
}

fn utf8(bytes: &[u8]) -> Result<&str, Failure> {
    std::str::from_utf8(bytes).map_err(|_| Failure::corrupt("the text is not valid UTF-8"))
}

/// Plain text and Markdown: paragraphs are separated by blank lines; in Markdown, `#` lines
/// are headings that name the passages below them.
fn text(bytes: &[u8], out: &mut Chunker, markdown: bool) -> Result<(), Failure> {
    read_paragraphs(utf8(bytes)?, out, markdown)
}

fn read_paragraphs(text: &str, out: &mut Chunker, markdown: bool) -> Result<(), Failure> {
    let mut heading: Option<String> = None;
    let mut paragraph = String::new();
    let mut flush = |paragraph: &mut String, heading: &Option<String>| {
        let text = std::mem::take(paragraph);
        out.push(Block {
            page: None,
            heading: heading.clone(),
            text,
        })
    };
    for line in text.lines() {
        let trimmed = line.trim();
        let atx = markdown
            .then(|| trimmed.strip_prefix('#'))
            .flatten()
            .map(|h| h.trim_start_matches('#'))
            .filter(|h| h.is_empty() || h.starts_with(' '));
        if let Some(h) = atx {
            flush(&mut paragraph, &heading)?;
            heading = Some(h.trim().to_string()).filter(|h| !h.is_empty());
        } else if trimmed.is_empty() {
            flush(&mut paragraph, &heading)?;
        } else {
            paragraph.push_str(line);
            paragraph.push('\n');
        }
    }
    flush(&mut paragraph, &heading)?;
    Ok(())
}

/// CSV: rows in order, the header row as every passage's heading (a file with a header only
/// has that header as its text).
fn csv(bytes: &[u8], out: &mut Chunker) -> Result<(), Failure> {
    let text = utf8(bytes)?;
    let mut lines = text.lines().filter(|l| !l.trim().is_empty()).peekable();
    let header = lines.next().map(str::to_string);
    if lines.peek().is_none() {
        if let Some(h) = header {
            out.push(Block {
                page: None,
                heading: None,
                text: h,
            })?;
        }
        return Ok(());
    }
    for row in lines {
        out.push(Block {
            page: None,
            heading: header.clone(),
            text: row.to_string(),
        })?;
    }
    Ok(())
}

/// HTML: rendered to text with its headings marked as Markdown's, then read as Markdown.
fn html(bytes: &[u8], out: &mut Chunker) -> Result<(), Failure> {
    let text = html2text::from_read(bytes, 10_000)
        .map_err(|_| Failure::corrupt("the HTML could not be rendered to text"))?;
    read_paragraphs(&text, out, true)
}

/// DOCX: a zip whose `word/document.xml` holds the paragraphs (`w:p`) with their text runs
/// (`w:t`); a paragraph styled `Heading…` or `Title` names the passages below it. The XML is
/// read through a bound on its unzipped size, so a zip bomb stops at [`DOCX_XML_MAX`].
fn docx(bytes: &[u8], out: &mut Chunker) -> Result<(), Failure> {
    let mut zip = zip::ZipArchive::new(Cursor::new(bytes))
        .map_err(|_| Failure::corrupt("not a valid DOCX (zip) archive"))?;
    let entry = zip
        .by_name("word/document.xml")
        .map_err(|_| Failure::corrupt("not a Word document (no word/document.xml)"))?;
    let mut xml = Vec::new();
    entry
        .take(DOCX_XML_MAX + 1)
        .read_to_end(&mut xml)
        .map_err(|_| Failure::corrupt("the archive's document part is damaged"))?;
    if xml.len() as u64 > DOCX_XML_MAX {
        return Err(Failure::new(
            "too_large",
            format!(
                "the document expands to more than {} MiB when unzipped (a zip bomb?)",
                DOCX_XML_MAX / (1024 * 1024)
            ),
        ));
    }
    let mut reader = quick_xml::Reader::from_reader(xml.as_slice());
    let mut buf = Vec::new();
    let (mut paragraph, mut in_text, mut is_heading) = (String::new(), false, false);
    let mut heading: Option<String> = None;
    loop {
        let event = reader
            .read_event_into(&mut buf)
            .map_err(|_| Failure::corrupt("the document's XML is malformed"))?;
        match event {
            Event::Start(e) if e.name().as_ref() == b"w:t" => in_text = true,
            Event::End(e) if e.name().as_ref() == b"w:t" => in_text = false,
            Event::Text(t) if in_text => {
                let s = t
                    .unescape()
                    .map_err(|_| Failure::corrupt("the document's XML is malformed"))?;
                paragraph.push_str(&s);
            }
            Event::Empty(e) | Event::Start(e) if e.name().as_ref() == b"w:pStyle" => {
                is_heading = e.attributes().flatten().any(|a| {
                    a.key.as_ref() == b"w:val"
                        && (a.value.starts_with(b"Heading") || a.value.as_ref() == b"Title")
                });
            }
            Event::Empty(e) if matches!(e.name().as_ref(), b"w:tab") => paragraph.push('\t'),
            Event::Empty(e) if matches!(e.name().as_ref(), b"w:br" | b"w:cr") => {
                paragraph.push('\n')
            }
            Event::End(e) if e.name().as_ref() == b"w:p" => {
                let text = std::mem::take(&mut paragraph);
                if std::mem::take(&mut is_heading) {
                    heading = Some(text.trim().to_string()).filter(|h| !h.is_empty());
                } else {
                    out.push(Block {
                        page: None,
                        heading: heading.clone(),
                        text,
                    })?;
                }
            }
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    Ok(())
}

/// PDF: refused when encrypted with a password; the text of each page (its paragraphs kept apart), and a
/// clear failure when no page has any text (a scan: Emergence does not read images).
fn pdf(bytes: &[u8], out: &mut Chunker) -> Result<Option<i64>, Failure> {
    let doc = match lopdf::Document::load_mem(bytes) {
        Ok(doc) => doc,
        // A PDF whose objects cannot be read because they are encrypted.
        Err(_) if bytes.windows(8).any(|w| w == b"/Encrypt") => return Err(encrypted()),
        Err(_) => return Err(Failure::corrupt("not a readable PDF")),
    };
    // Encrypted with an empty user password (an owner password only) reads like any PDF.
    if doc.is_encrypted() && doc.authenticate_raw_user_password("").is_err() {
        return Err(encrypted());
    }
    let pages = doc.get_pages().len() as i64;
    drop(doc);
    let texts = pdf_extract::extract_text_from_mem_by_pages(bytes)
        .map_err(|_| Failure::corrupt("the PDF's text could not be extracted"))?;
    if texts.iter().all(|t| t.trim().is_empty()) {
        return Err(Failure::new(
            "no_text",
            "the PDF has no text layer (a scanned document?): Emergence does not read images",
        ));
    }
    for (i, page) in texts.iter().enumerate() {
        for paragraph in page.split("\n\n") {
            out.push(Block {
                page: Some(i as i64 + 1),
                heading: None,
                text: paragraph.to_string(),
            })?;
        }
    }
    Ok(Some(pages.max(texts.len() as i64)))
}

fn encrypted() -> Failure {
    Failure::new(
        "encrypted",
        "the PDF is encrypted (password-protected): save an unprotected copy and upload that",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(kind: Kind, bytes: &[u8]) -> Vec<crate::db::documents::Chunk> {
        let mut c = Chunker::new(10_000);
        read(kind, bytes, &mut c).unwrap();
        c.finish().unwrap()
    }

    #[test]
    fn markdown_headings_name_the_passages_below_them() {
        let got = chunks(
            Kind::Markdown,
            b"intro\n\n# Setup\n\nInstall it.\n\n## Run\n\nStart it.\n",
        );
        let pairs: Vec<_> = got
            .iter()
            .map(|c| (c.heading.as_deref(), c.text.as_str()))
            .collect();
        assert_eq!(
            pairs,
            [
                (None, "intro"),
                (Some("Setup"), "Install it."),
                (Some("Run"), "Start it.")
            ]
        );
    }

    #[test]
    fn csv_rows_carry_the_header_and_html_is_rendered_to_text() {
        let got = chunks(Kind::Csv, b"city,country\nParis,France\nLyon,France\n");
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].heading.as_deref(), Some("city,country"));
        assert_eq!(got[0].text, "Paris,France\n\nLyon,France");
        let got = chunks(
            Kind::Html,
            b"<html><body><h1>Title</h1><p>Hello <b>world</b></p><script>x()</script></body></html>",
        );
        let all: String = got.iter().map(|c| c.text.clone()).collect();
        assert!(all.contains("Hello"), "{got:?}");
    }

    #[test]
    fn garbage_is_refused_with_a_reason() {
        let mut c = Chunker::new(10);
        let err = read(Kind::Pdf, b"%PDF-1.4 garbage garbage", &mut c).unwrap_err();
        assert_eq!(err.class, "corrupt");
        let err = read(Kind::Docx, b"PK\x03\x04 not a zip", &mut c).unwrap_err();
        assert_eq!(err.class, "corrupt");
    }
}
