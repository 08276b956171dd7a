//! Documents of a thread (issue #19, docs/documents.md): upload (streamed to the database part
//! by part), listing, download, deletion, the bounded extraction of their text in a child
//! process (`extract`), and retrieval of the passages that answer a question (`retrieval`),
//! which agent turns put in their context and cite: full text, fused with the cosine
//! similarity of embeddings when an embeddings model is configured (`embed`, `fuse`).
//!
//! Every change of a document's state reaches every subscriber of its thread on every instance
//! as a `document` frame ([`crate::realtime::Event::Document`]).

pub mod embed;
pub mod extract;
pub mod files;
mod fuse;
pub(crate) mod http;
mod jobs;
pub mod kind;
pub mod retrieval;
mod upload;

use std::{path::PathBuf, sync::Arc};

use tokio::sync::Semaphore;

use crate::{
    contract::documents::DocumentView,
    db::{
        Database, SharedStore, StoreError, documents::Document, documents::DocumentStore, rfc3339,
    },
    metrics::Metrics,
    realtime::{Event, Realtime},
    settings::documents::DocumentSettings,
};

pub use http::routes;
pub use jobs::spawn_sweeper;

/// The instance's document service: settings, the extraction permits, and what the jobs need.
pub struct Documents {
    pub settings: DocumentSettings,
    /// Where files are kept (the database or a bucket).
    pub files: files::Files,
    /// The executable run as `EXE extract`.
    exe: PathBuf,
    /// Extractions running at once on this instance.
    permits: Arc<Semaphore>,
    db: Database,
    realtime: Arc<Realtime>,
    metrics: Arc<Metrics>,
    /// The embeddings model of hybrid retrieval, when one is configured.
    embedder: Option<Arc<embed::Embedder>>,
}

impl Documents {
    /// Fails when `documents.storage` is not a storage this build can use.
    pub fn new(
        settings: DocumentSettings,
        db: Database,
        realtime: Arc<Realtime>,
        metrics: Arc<Metrics>,
        embedder: Option<Arc<embed::Embedder>>,
    ) -> anyhow::Result<Self> {
        let files =
            files::Files::from_setting(settings.storage.as_deref(), &settings.storage_options)?;
        let exe = settings
            .extractor
            .clone()
            .or_else(|| std::env::current_exe().ok())
            .unwrap_or_else(|| PathBuf::from("emergence"));
        Ok(Self {
            permits: Arc::new(Semaphore::new(settings.extract_concurrency.max(1))),
            settings,
            files,
            exe,
            db,
            realtime,
            metrics,
            embedder,
        })
    }

    /// The embeddings model of hybrid retrieval, when one is configured.
    pub fn embedder(&self) -> Option<&embed::Embedder> {
        self.embedder.as_deref()
    }

    /// Tell every subscriber of the document's thread, on every instance, its state.
    fn announce(&self, doc: &Document, deleted: bool) {
        self.realtime.publish(Event::Document {
            thread_id: doc.thread_id.clone(),
            document: view(doc),
            deleted,
        });
    }
}

/// The backend's document storage, or an error for a backend without it.
pub(crate) fn store_of(s: &SharedStore) -> Result<&dyn DocumentStore, StoreError> {
    s.documents().ok_or_else(|| {
        StoreError::Other(anyhow::anyhow!(
            "this storage backend does not keep documents"
        ))
    })
}

/// A document as the contract shows it.
pub fn view(d: &Document) -> DocumentView {
    DocumentView {
        id: d.id.clone(),
        thread_id: d.thread_id.clone(),
        name: d.name.clone(),
        kind: d.kind.clone(),
        size: d.size,
        status: d.status.clone(),
        stage: d.stage.clone(),
        error: d.error.clone(),
        pages: d.pages,
        chunks: d.chunks,
        uploader_id: d.uploader_id.clone(),
        created_at: rfc3339(d.created_at),
    }
}
