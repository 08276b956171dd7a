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

fn reasoning(offset: usize, delta: &str) -> StreamEvent {
    StreamEvent::Reasoning {
        thread: "t".into(),
        stream_id: "s".into(),
        offset,
        delta: delta.into(),
    }
}

#[test]
fn reasoning_is_kept_apart_from_the_text_and_a_gap_asks_for_a_snapshot() {
    let hub = Hub::new(16);
    let streams = Streams::default();
    // A mirror that never saw the stream start learns it from a snapshot.
    assert!(matches!(
        streams.apply(&reasoning(0, "Let me "), &hub),
        Follow::NeedSnapshot(_)
    ));
    streams.apply(&start("s", None), &hub);
    assert!(matches!(
        streams.apply(&reasoning(0, "Let me "), &hub),
        Follow::None
    ));
    // A repeat is dropped; a gap makes the mirror stale until a snapshot comes.
    streams.apply(&reasoning(0, "Let me "), &hub);
    let stream = streams.get("s").unwrap();
    assert_eq!(stream.reasoning(), "Let me ");
    assert_eq!(stream.text(), "", "reasoning is never answer text");
    assert!(matches!(
        streams.apply(&reasoning(20, "later"), &hub),
        Follow::NeedSnapshot(_)
    ));
    streams.apply(
        &StreamEvent::Snapshot {
            thread: "t".into(),
            stream_id: "s".into(),
            agent_id: "a".into(),
            agent_name: "A".into(),
            debate_id: None,
            text: "Hi".into(),
            reasoning: "Let me think it over. later".into(),
            model: None,
            round: None,
            role: None,
            version_of: None,
        },
        &hub,
    );
    assert_eq!(stream.reasoning(), "Let me think it over. later");
    assert_eq!(stream.text(), "Hi");
    // From there on, deltas apply at the snapshot's length.
    let at = "Let me think it over. later".chars().count();
    streams.apply(&reasoning(at, "!"), &hub);
    assert_eq!(stream.reasoning(), "Let me think it over. later!");
}
