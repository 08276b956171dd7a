//! A stream's reasoning ("thinking", issue #18): text apart from the answer, offset-addressed
//! like the answer's chunks (`stream_reasoning` frames), kept so that a socket attaching later
//! gets it in its `stream_snapshot`, and mirrored across instances like the text.

use super::{Follow, StreamState, Streams, send_watchers};
use crate::contract::ServerFrame;
use crate::realtime::protocol::frame;

impl Streams {
    /// Apply a reasoning delta: append it and tell the watchers, or ask for a snapshot when
    /// this instance missed some.
    pub(super) fn apply_reasoning(
        &self,
        thread: &str,
        stream_id: &str,
        offset: usize,
        delta: &str,
    ) -> Follow {
        let Some(stream) = self.get(stream_id) else {
            return Follow::NeedSnapshot(stream_id.to_string());
        };
        let mut st = stream.state.lock().unwrap_or_else(|e| e.into_inner());
        if offset < st.reasoning_chars || st.stale {
            return Follow::None;
        }
        if offset > st.reasoning_chars {
            st.stale = true;
            return Follow::NeedSnapshot(stream_id.to_string());
        }
        st.reasoning.push_str(delta);
        st.reasoning_chars += delta.chars().count();
        st.retry = None;
        let f = frame(&ServerFrame::StreamReasoning {
            thread: thread.to_string(),
            stream_id: stream_id.to_string(),
            offset,
            delta: delta.to_string(),
        });
        send_watchers(&mut st.watchers, &f);
        Follow::None
    }
}

/// A snapshot arrived with `reasoning`: send up-to-date watchers what they lack, and keep it.
pub(super) fn catch_up(st: &mut StreamState, thread: &str, stream_id: &str, reasoning: &str) {
    let chars = reasoning.chars().count();
    if !st.stale && chars > st.reasoning_chars {
        let f = frame(&ServerFrame::StreamReasoning {
            thread: thread.to_string(),
            stream_id: stream_id.to_string(),
            offset: st.reasoning_chars,
            delta: reasoning.chars().skip(st.reasoning_chars).collect(),
        });
        send_watchers(&mut st.watchers, &f);
    }
    if st.stale || chars > st.reasoning_chars {
        st.reasoning = reasoning.to_string();
        st.reasoning_chars = chars;
    }
}
