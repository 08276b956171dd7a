//! Extraction jobs: after an upload, the uploading instance queues the document
//! ([`Documents::enqueue`]); a job takes it with a lease (`claim_extraction`: one instance
//! extracts a document, however many try), runs the bounded child, and stores the passages
//! (`indexed`) or the reason (`failed`), announcing each stage. A sweeper on every instance
//! picks up documents whose job never ran or whose lease ran out (an instance stopped
//! mid-extraction, the database was down), and forgets uploads that never completed. Once a
//! document is indexed, its chunks are embedded when an embeddings model is configured
//! (`embed::index`); the sweeper also backfills the vectors that are missing.

use std::{sync::Arc, time::Duration};

use tokio_util::sync::CancellationToken;

use super::{
    Documents,
    extract::{self, NotExtracted},
    kind::Kind,
    store_of,
};
use crate::db::now_ms;

/// How often the sweeper looks for forgotten work.
const SWEEP_EVERY: Duration = Duration::from_secs(30);
/// The pause between sweeps while the embeddings backfill has work left.
const BACKFILL_PAUSE: Duration = Duration::from_secs(1);
/// An upload not finished after this long is abandoned.
const UPLOAD_ABANDONED_MS: i64 = 3_600_000;

impl Documents {
    /// Extract document `id` when a permit is free (extractions per instance are bounded).
    pub fn enqueue(self: &Arc<Self>, id: String) {
        let me = self.clone();
        tokio::spawn(async move {
            let Ok(_permit) = me.permits.clone().acquire_owned().await else {
                return;
            };
            me.process(&id).await;
        });
    }

    /// A lease outlives the longest extraction, so that a running one is never taken twice.
    fn lease_ms(&self) -> i64 {
        (self.settings.extract_timeout_secs as i64 + 60) * 1000
    }

    async fn process(&self, id: &str) {
        let now = now_ms();
        let stale = now - self.lease_ms();
        let doc_id = id.to_string();
        let claimed = self
            .db
            .run(|s| async move { store_of(&s)?.claim_extraction(&doc_id, now, stale).await })
            .await;
        let doc = match claimed {
            Ok(Some(doc)) => doc,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(document = id, error = %e, "cannot take a document's extraction; the sweeper tries again");
                return;
            }
        };
        self.announce(&doc, false);
        let started = std::time::Instant::now();
        let outcome = match doc.kind.parse::<Kind>() {
            Ok(kind) => {
                extract::extract(&self.exe, &self.settings, &self.db, &self.files, id, kind).await
            }
            Err(_) => Err(NotExtracted::Failed {
                class: "corrupt".into(),
                reason: "the document's type is not one Emergence reads".into(),
            }),
        };
        let doc_id = id.to_string();
        let now = now_ms();
        let stored = match outcome {
            Ok(found) => {
                let chunks = found.chunks.len();
                let stored = self
                    .db
                    .run(|s| async move {
                        store_of(&s)?
                            .finish_extraction(&doc_id, &found.chunks, found.pages, now)
                            .await
                    })
                    .await;
                if matches!(stored, Ok(Some(_))) {
                    self.metrics.documents_indexed.inc();
                    tracing::info!(
                        document = id,
                        chunks,
                        elapsed_ms = started.elapsed().as_millis() as u64,
                        "document indexed"
                    );
                }
                stored
            }
            Err(NotExtracted::Failed { class, reason }) => {
                self.metrics.document_failures.with(&[class.as_str()]).inc();
                tracing::info!(document = id, class = %class, reason = %reason, "document extraction failed");
                self.db
                    .run(|s| async move {
                        store_of(&s)?.fail_extraction(&doc_id, &reason, now).await
                    })
                    .await
            }
            Err(NotExtracted::Retry(e)) => Err(e),
        };
        match stored {
            Ok(Some(doc)) => {
                self.announce(&doc, false);
                if doc.status == "indexed" {
                    self.embed_document(id).await;
                }
            }
            // Deleted meanwhile: nothing to tell.
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(document = id, error = %e, "cannot store a document's extraction; the sweeper tries again")
            }
        }
    }

    /// One sweep: forget abandoned uploads, queue documents nobody is extracting, embed
    /// chunks without vectors; whether embedding work may remain.
    async fn sweep(self: &Arc<Self>) -> bool {
        let now = now_ms();
        let stale = now - self.lease_ms();
        let found = self
            .db
            .run(|s| async move {
                let store = store_of(&s)?;
                let purged = store.purge_stale_uploads(now - UPLOAD_ABANDONED_MS).await?;
                Ok((purged, store.unclaimed(stale, 20).await?))
            })
            .await;
        if let Ok((purged, ids)) = found {
            for id in purged {
                self.files.remove(&id).await;
            }
            for id in ids {
                self.enqueue(id);
            }
        }
        self.backfill().await
    }
}

/// Sweep at start-up (once the database answers) and every [`SWEEP_EVERY`] until `stop`.
pub fn spawn_sweeper(documents: Arc<Documents>, stop: CancellationToken) {
    tokio::spawn(async move {
        loop {
            let mut more = false;
            if documents.db.is_up()
                && documents
                    .db
                    .store()
                    .is_some_and(|s| s.documents().is_some())
            {
                more = documents.sweep().await;
            }
            // A backfill that stopped at its bound goes on soon.
            let pause = if more { BACKFILL_PAUSE } else { SWEEP_EVERY };
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(pause) => {}
            }
        }
    });
}
