//! Stopping streams and debates on a member's request: a typed command to whichever instance
//! runs them (this one included), after checking that the user may see the thread.

use super::StreamEvent;
use crate::{
    auth::Claims, contract::ErrorCode, realtime::protocol::ErrorFrame, state::AppState,
    threads::is_member,
};

/// Stop a stream (or the debate it belongs to), from any member, on any instance.
pub async fn cancel(state: &AppState, user: &Claims, stream_id: &str) -> Result<(), ErrorFrame> {
    let not_found = || ErrorFrame::new(ErrorCode::NotFound, "no such stream");
    let Some(stream) = state.realtime.streams.get(stream_id) else {
        return Err(not_found());
    };
    match is_member(state, &stream.thread, &user.uid).await {
        Ok(true) => {}
        Ok(false) => return Err(not_found()),
        Err(_) => {
            return Err(ErrorFrame::new(
                ErrorCode::Unavailable,
                "the database is unavailable; retry later",
            )
            .retry_after(2000));
        }
    }
    // A typed command to whichever instance runs the stream (this one included).
    state
        .realtime
        .publish(crate::realtime::Event::Stream(StreamEvent::Cancel {
            stream_id: stream_id.to_string(),
        }));
    Ok(())
}

/// `cancel` with a `debate_id`: stop the whole debate (the job that runs it stops every further
/// turn and the synthesis): through its running turn, or, between two turns, by a typed command
/// to whichever instance runs it. A debate that is over, unknown, or of a thread the user is
/// not in is `not_found`.
pub async fn cancel_debate(
    state: &AppState,
    user: &Claims,
    debate_id: &str,
) -> Result<(), ErrorFrame> {
    let not_found = || ErrorFrame::new(ErrorCode::NotFound, "no such debate");
    if let Some(stream) = state.realtime.streams.of_debate(debate_id) {
        return cancel(state, user, &stream.id).await;
    }
    let Some(thread) = state.realtime.streams.debate_thread(debate_id) else {
        return Err(not_found());
    };
    match is_member(state, &thread, &user.uid).await {
        Ok(true) => {}
        Ok(false) => return Err(not_found()),
        Err(_) => {
            return Err(ErrorFrame::new(
                ErrorCode::Unavailable,
                "the database is unavailable; retry later",
            )
            .retry_after(2000));
        }
    }
    state
        .realtime
        .publish(crate::realtime::Event::Stream(StreamEvent::CancelDebate {
            debate_id: debate_id.to_string(),
        }));
    Ok(())
}
