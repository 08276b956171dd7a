//! The agent-stream markers as one watcher reads them: `[seq/total@emit_us]` at the start of
//! each chunk of the benchmark's fake provider, and per answer the distinct sequence numbers
//! seen, repeats, offset gaps and emit -> receipt latency (for `emergence load agentstream`).

use super::Histogram;

/// One answer as one socket saw it.
#[derive(Default)]
pub(crate) struct Answer {
    /// Chunk count announced by the markers (`None` until one is seen).
    pub(crate) total: Option<u64>,
    pub(crate) seen: Vec<bool>,
    pub(crate) distinct: u64,
    /// Characters received, to check each chunk's offset.
    pub(crate) len: u64,
    /// An unfinished marker at the end of the last delta.
    pub(crate) tail: String,
    pub(crate) ended: bool,
}

/// One socket's counts, summed into the report at the end.
#[derive(Default)]
pub(crate) struct Tally {
    pub(crate) chunks: u64,
    pub(crate) duplicates: u64,
    pub(crate) lost: u64,
    pub(crate) gaps: u64,
    pub(crate) streams_seen: u64,
    pub(crate) streams_ended: u64,
    pub(crate) streams_missing: u64,
}

/// A marker `[seq/total@emit_us]` at the start of `s`: its three numbers and its length.
pub(crate) fn parse_marker(s: &str) -> Option<(u64, u64, u64, usize)> {
    let b = s.as_bytes();
    if b.first() != Some(&b'[') {
        return None;
    }
    let mut at = 1;
    let mut number = |stop: u8| -> Option<u64> {
        let start = at;
        while at < b.len() && b[at].is_ascii_digit() {
            at += 1;
        }
        if at == start || at >= b.len() || b[at] != stop {
            return None;
        }
        let v = s[start..at].parse().ok()?;
        at += 1;
        Some(v)
    };
    let seq = number(b'/')?;
    let total = number(b'@')?;
    let emit = number(b']')?;
    Some((seq, total, emit, at))
}

impl Answer {
    /// Read the markers of one delta received at `now_us`.
    pub(crate) fn chunk(
        &mut self,
        offset: u64,
        delta: &str,
        now_us: u64,
        tally: &mut Tally,
        latency: &Histogram,
    ) {
        if offset != self.len {
            tally.gaps += 1;
        }
        self.len = offset + delta.chars().count() as u64;
        let joined;
        let text = if self.tail.is_empty() {
            delta
        } else {
            joined = std::mem::take(&mut self.tail) + delta;
            joined.as_str()
        };
        let mut end = 0;
        let mut from = 0;
        while let Some(i) = text[from..].find('[') {
            let at = from + i;
            match parse_marker(&text[at..]) {
                Some((seq, total, emit, len)) => {
                    self.total = Some(total);
                    let slot = seq as usize;
                    if self.seen.len() <= slot {
                        self.seen.resize(slot + 1, false);
                    }
                    if self.seen[slot] {
                        tally.duplicates += 1;
                    } else {
                        self.seen[slot] = true;
                        self.distinct += 1;
                        tally.chunks += 1;
                        latency.record(now_us.saturating_sub(emit));
                    }
                    end = at + len;
                    from = end;
                }
                None => from = at + 1,
            }
        }
        // Keep a '[' after the last marker: the rest of it may come with the next delta.
        if let Some(open) = text.rfind('[')
            && open >= end
            && text.len() - open < 48
        {
            self.tail = text[open..].to_string();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_are_read_with_their_three_numbers() {
        assert_eq!(
            parse_marker("[3/120@987654] the a of"),
            Some((3, 120, 987_654, 14))
        );
        assert_eq!(parse_marker("[3/120@98"), None);
        assert_eq!(parse_marker("[x/1@2]"), None);
        assert_eq!(parse_marker("the [1/2@3]"), None);
    }

    #[test]
    fn an_answer_counts_latency_duplicates_gaps_and_split_markers() {
        let latency = Histogram::default();
        let mut tally = Tally::default();
        let mut a = Answer::default();
        let now = 1_000_000;
        a.chunk(
            0,
            "[0/4@999000] the a of [1/4@999500] to ",
            now,
            &mut tally,
            &latency,
        );
        assert_eq!((tally.chunks, tally.gaps), (2, 0));
        // A repeat of chunk 1, then chunk 2 split across two deltas.
        let len = a.len;
        a.chunk(len, "[1/4@999500] x [2/4@99", now, &mut tally, &latency);
        a.chunk(a.len, "9900] y", now, &mut tally, &latency);
        assert_eq!((tally.chunks, tally.duplicates, tally.gaps), (3, 1, 0));
        // An offset that skips text is a gap.
        a.chunk(a.len + 5, "z", now, &mut tally, &latency);
        assert_eq!(tally.gaps, 1);
        assert_eq!((a.total, a.distinct), (Some(4), 3));
        let p = latency.percentiles();
        assert_eq!(p.count, 3);
        assert!(p.max <= 1.01 && p.max >= 0.99, "{p:?}");
    }
}
