//! What the broker brings from the other instances, applied here in order: their events, their
//! requests to re-read threads whose events they could not publish, and after a gap in the
//! broker (notifications sent meanwhile are lost) a re-read of every subscribed thread from the
//! database, which is the truth, plus snapshot requests for streams run elsewhere.

use std::sync::Arc;

use tokio::sync::mpsc;

use super::{BrokerState, Event, Inbound, Realtime, protocol, streams::StreamEvent};
use crate::db::{Database, Page};

/// Apply what arrives on `inbound` until the broker stops.
pub fn apply_inbound(
    realtime: Arc<Realtime>,
    db: Database,
    mut inbound: mpsc::UnboundedReceiver<Inbound>,
) {
    tokio::spawn(async move {
        while let Some(i) = inbound.recv().await {
            match i {
                Inbound::Event(e) => realtime.apply(&e),
                Inbound::Resync(threads) => {
                    for thread in threads {
                        resync_thread(&realtime, &db, &thread).await;
                    }
                }
                Inbound::Reconnected => resync_all(&realtime, &db).await,
                Inbound::Unfollowed(thread) => realtime.forget(&thread),
                Inbound::State(state) => {
                    let broker = match state {
                        BrokerState::Down => "down",
                        _ => "up",
                    };
                    realtime.broadcast_all(&protocol::status(db.state().as_str(), broker));
                }
            }
        }
    });
}

/// Re-read every thread with subscribers here, and ask for snapshots of streams run elsewhere.
async fn resync_all(realtime: &Arc<Realtime>, db: &Database) {
    for thread in realtime.hub.active_threads() {
        resync_thread(realtime, db, &thread).await;
    }
    for stream_id in realtime.streams.ids() {
        realtime
            .broker()
            .publish(&Event::Stream(StreamEvent::SnapshotRequest { stream_id }));
    }
}

async fn resync_thread(realtime: &Arc<Realtime>, db: &Database, thread: &str) {
    let Some(floor) = realtime.hub.delivery_floor(thread) else {
        return;
    };
    realtime.metrics.broker_resync.inc();
    let id = thread.to_string();
    match db
        .run(|s| async move { s.messages(&id, Page::After(floor), 1000).await })
        .await
    {
        Ok(messages) => {
            for m in &messages {
                realtime.hub.publish(m);
            }
        }
        Err(e) => tracing::warn!(error = %e, thread, "resync after a broker gap failed"),
    }
}
