//! The streams registry's view of debates: a debate stays stoppable between two turns (no
//! stream runs) until its job says it ended.

use super::*;
use crate::contract::ErrorCode;

fn start(stream_id: &str, debate_id: Option<&str>) -> StreamEvent {
    StreamEvent::Start {
        thread: "t".into(),
        stream_id: stream_id.into(),
        agent_id: "a".into(),
        agent_name: "A".into(),
        debate_id: debate_id.map(str::to_string),
        model: None,
        round: Some(1),
        role: Some(DebateRole::Turn),
        version_of: None,
    }
}

fn stopped(stream_id: &str) -> StreamEvent {
    StreamEvent::Error {
        thread: "t".into(),
        stream_id: stream_id.into(),
        code: ErrorCode::ProviderError,
        message: "failed".into(),
        error_class: None,
        resets_at: None,
    }
}

#[test]
fn a_debate_is_known_between_its_turns_until_its_job_ends() {
    let hub = Hub::new(16);
    let streams = Streams::default();
    streams.apply(&start("s1", Some("d")), &hub);
    assert_eq!(
        streams.of_debate("d").map(|s| s.id.clone()),
        Some("s1".into())
    );
    streams.apply(&stopped("s1"), &hub);
    // Between turns: no stream runs, the debate is still under way.
    assert!(streams.of_debate("d").is_none());
    assert_eq!(streams.debate_thread("d").as_deref(), Some("t"));
    streams.apply(&start("s2", Some("d")), &hub);
    streams.apply(&stopped("s2"), &hub);
    assert_eq!(streams.debate_thread("d").as_deref(), Some("t"));
    streams.apply(
        &StreamEvent::DebateEnded {
            thread: "t".into(),
            debate_id: "d".into(),
        },
        &hub,
    );
    assert_eq!(streams.debate_thread("d"), None);
    // A plain answer is no debate; forgetting a thread forgets its debates.
    streams.apply(&start("s3", None), &hub);
    assert_eq!(streams.debate_thread("s3"), None);
    streams.apply(&start("s4", Some("e")), &hub);
    streams.apply(&stopped("s4"), &hub);
    streams.forget_mirrors("t");
    assert_eq!(streams.debate_thread("e"), None);
}
