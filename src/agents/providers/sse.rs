//! A minimal Server-Sent Events parser over a byte stream, as the providers' streaming APIs use.

use bytes::{Buf, BytesMut};

/// One SSE event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseEvent {
    pub event: Option<String>,
    pub data: String,
}

/// Incremental parser: feed bytes, take complete events.
#[derive(Default)]
pub struct SseParser {
    buf: BytesMut,
}

impl SseParser {
    pub fn feed(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete event, if one is buffered.
    pub fn next_event(&mut self) -> Option<SseEvent> {
        loop {
            let (end, sep) = find_boundary(&self.buf)?;
            let block = self.buf.split_to(end);
            self.buf.advance(sep);
            let text = String::from_utf8_lossy(&block);
            let mut ev = SseEvent::default();
            let mut data_lines = Vec::new();
            for line in text.lines() {
                if line.starts_with(':') {
                    continue; // comment / keep-alive
                }
                let (field, value) = match line.split_once(':') {
                    Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
                    None => (line, ""),
                };
                match field {
                    "event" => ev.event = Some(value.to_string()),
                    "data" => data_lines.push(value.to_string()),
                    _ => {}
                }
            }
            if data_lines.is_empty() && ev.event.is_none() {
                continue;
            }
            ev.data = data_lines.join("\n");
            return Some(ev);
        }
    }
}

/// Position of the first blank line (`\n\n` or `\r\n\r\n`) and its length.
fn find_boundary(buf: &[u8]) -> Option<(usize, usize)> {
    let mut i = 0;
    while i + 1 < buf.len() {
        if buf[i] == b'\n' && buf[i + 1] == b'\n' {
            return Some((i, 2));
        }
        if i + 3 < buf.len() && &buf[i..i + 4] == b"\r\n\r\n" {
            return Some((i, 4));
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_events_split_across_reads() {
        let mut p = SseParser::default();
        p.feed(b"event: message_start\ndata: {\"a\":");
        assert!(p.next_event().is_none());
        p.feed(b"1}\n\n: keep-alive\n\ndata: x\r\n\r\ndata: [DONE]\n\n");
        assert_eq!(
            p.next_event().unwrap(),
            SseEvent {
                event: Some("message_start".into()),
                data: "{\"a\":1}".into()
            }
        );
        assert_eq!(p.next_event().unwrap().data, "x");
        assert_eq!(p.next_event().unwrap().data, "[DONE]");
        assert!(p.next_event().is_none());
    }
}
