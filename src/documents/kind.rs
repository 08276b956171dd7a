//! The document types Emergence reads, told by the file name's extension and confirmed by the
//! file's first bytes (its "magic"): a `.pdf` must start like a PDF, a `.docx` like a zip, and
//! the text formats must be UTF-8 without NUL bytes. Anything else is 415 `unsupported_type`.

use std::str::FromStr;

/// What a document is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Pdf,
    Docx,
    Markdown,
    Text,
    Html,
    Csv,
}

impl Kind {
    /// The kind the file name's extension says, if Emergence reads it.
    pub fn from_name(name: &str) -> Option<Kind> {
        let ext = name.rsplit_once('.')?.1.to_ascii_lowercase();
        Some(match ext.as_str() {
            "pdf" => Kind::Pdf,
            "docx" => Kind::Docx,
            "md" | "markdown" => Kind::Markdown,
            "txt" | "text" => Kind::Text,
            "html" | "htm" => Kind::Html,
            "csv" => Kind::Csv,
            _ => return None,
        })
    }

    /// The name stored and shown (`pdf`, `docx`, `md`, `txt`, `html`, `csv`).
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Pdf => "pdf",
            Kind::Docx => "docx",
            Kind::Markdown => "md",
            Kind::Text => "txt",
            Kind::Html => "html",
            Kind::Csv => "csv",
        }
    }

    /// The media type the file is served with.
    pub fn mime(self) -> &'static str {
        match self {
            Kind::Pdf => "application/pdf",
            Kind::Docx => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
            Kind::Markdown => "text/markdown; charset=utf-8",
            Kind::Text => "text/plain; charset=utf-8",
            Kind::Html => "text/html; charset=utf-8",
            Kind::Csv => "text/csv; charset=utf-8",
        }
    }

    /// Whether the file's first bytes (`head`, at most the first part; `complete` when it is
    /// the whole file) fit this kind.
    pub fn matches(self, head: &[u8], complete: bool) -> bool {
        match self {
            // The header may follow some bytes of junk (readers look in the first 1 KiB).
            Kind::Pdf => head[..head.len().min(1024)]
                .windows(5)
                .any(|w| w == b"%PDF-"),
            Kind::Docx => head.starts_with(b"PK\x03\x04"),
            Kind::Markdown | Kind::Text | Kind::Html | Kind::Csv => {
                !head.contains(&0) && utf8_so_far(head, complete)
            }
        }
    }
}

/// Valid UTF-8, allowing a character cut at the end of a part that is not the whole file.
fn utf8_so_far(bytes: &[u8], complete: bool) -> bool {
    match std::str::from_utf8(bytes) {
        Ok(_) => true,
        Err(e) => !complete && e.error_len().is_none(),
    }
}

impl FromStr for Kind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Kind::from_name(&format!("x.{s}")).ok_or_else(|| format!("unknown document kind {s:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_extension_names_the_kind_and_the_first_bytes_confirm_it() {
        assert_eq!(Kind::from_name("Report.PDF"), Some(Kind::Pdf));
        assert_eq!(Kind::from_name("notes.markdown"), Some(Kind::Markdown));
        assert_eq!(Kind::from_name("archive.zip"), None);
        assert_eq!(Kind::from_name("no-extension"), None);
        assert!(Kind::Pdf.matches(b"%PDF-1.7\n", true));
        assert!(!Kind::Pdf.matches(b"GIF89a", true));
        assert!(Kind::Docx.matches(b"PK\x03\x04rest", true));
        assert!(!Kind::Docx.matches(b"%PDF-1.7", true));
        assert!(Kind::Text.matches("héllo".as_bytes(), true));
        assert!(!Kind::Text.matches(b"\x00\x01binary", true));
        // A character cut by the end of a part is fine, not at the end of the file.
        let cut = &"é".as_bytes()[..1];
        assert!(Kind::Text.matches(cut, false));
        assert!(!Kind::Text.matches(cut, true));
        assert_eq!("docx".parse::<Kind>(), Ok(Kind::Docx));
    }
}
