//! Where a document's file lives: in the database (the default: `document_parts`, so every
//! instance has it and backups hold it), or in a bucket when `documents.storage` names one
//! (`s3://bucket/prefix` for S3, MinIO or any S3-compatible store, `gs://bucket/prefix` for Google
//! Cloud Storage, `file:///dir` for a local directory), through the `object_store` crate.
//!
//! Either way a file is written as it arrives, one [`PART_BYTES`] part at a time (in a bucket:
//! one object per part, `{prefix}/documents/{id}/{part:06}`), and read back part by part, so no
//! file is ever held whole in memory. Each document records where its parts went (its `storage`
//! column: `database` or the bucket's URL), so a document uploaded before a bucket was configured
//! stays readable, and one stored in a bucket this instance is not configured for is refused
//! with a clear error instead of being read as missing.

use std::{collections::BTreeMap, sync::Arc};

use futures_util::{StreamExt, TryStreamExt};
use object_store::{ObjectStore, PutPayload, path::Path};

use crate::db::{Database, StoreError, documents::DocumentStore};

#[cfg(doc)]
use crate::db::documents::PART_BYTES;

/// What a document's `storage` column holds when its parts are in the database.
pub const IN_DATABASE: &str = "database";

/// The file storage of this instance.
#[derive(Clone)]
pub enum Files {
    Database,
    Bucket(Bucket),
}

/// A bucket (or directory) through `object_store`.
#[derive(Clone)]
pub struct Bucket {
    store: Arc<dyn ObjectStore>,
    /// The path inside the bucket under which `documents/` lives.
    prefix: Path,
    /// The configured URL, as recorded in each document's `storage` column.
    url: String,
}

impl std::fmt::Debug for Files {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Files::Database => f.write_str("Files::Database"),
            Files::Bucket(b) => write!(f, "Files::Bucket({})", b.url),
        }
    }
}

impl Files {
    /// The storage named by `documents.storage` (`None` or `"database"`: the database).
    /// Credentials and endpoints come from the standard environment of each store
    /// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ENDPOINT`,
    /// `AWS_ALLOW_HTTP`, ...; `GOOGLE_SERVICE_ACCOUNT`, ...).
    pub fn from_setting(
        url: Option<&str>,
        options: &BTreeMap<String, String>,
    ) -> anyhow::Result<Self> {
        let Some(url) = url
            .map(str::trim)
            .filter(|u| !u.is_empty() && *u != IN_DATABASE)
        else {
            return Ok(Files::Database);
        };
        let parsed = url::Url::parse(url)
            .map_err(|e| anyhow::anyhow!("documents.storage: {url:?} is not a URL: {e}"))?;
        let (store, prefix): (Arc<dyn ObjectStore>, &str) = match parsed.scheme() {
            "s3" | "s3a" => {
                let mut b = object_store::aws::AmazonS3Builder::from_env().with_url(url);
                for (k, v) in options {
                    b = b.with_config(k.parse().map_err(|e| option_error(k, e))?, v);
                }
                (Arc::new(b.build()?), parsed.path())
            }
            "gs" => {
                let mut b = object_store::gcp::GoogleCloudStorageBuilder::from_env().with_url(url);
                for (k, v) in options {
                    b = b.with_config(k.parse().map_err(|e| option_error(k, e))?, v);
                }
                (Arc::new(b.build()?), parsed.path())
            }
            "file" => {
                let dir = parsed.to_file_path().map_err(|()| {
                    anyhow::anyhow!("documents.storage: {url:?} is not a local directory")
                })?;
                std::fs::create_dir_all(&dir).map_err(|e| {
                    anyhow::anyhow!("documents.storage: cannot create {}: {e}", dir.display())
                })?;
                (
                    Arc::new(object_store::local::LocalFileSystem::new_with_prefix(dir)?),
                    "",
                )
            }
            other => anyhow::bail!(
                "documents.storage: {other}:// is not supported (use s3://, gs:// or file://, or leave it unset for the database)"
            ),
        };
        Ok(Files::Bucket(Bucket {
            store,
            prefix: Path::from(prefix.trim_matches('/')),
            url: url.to_string(),
        }))
    }

    /// What a new document's `storage` column records.
    pub fn label(&self) -> &str {
        match self {
            Files::Database => IN_DATABASE,
            Files::Bucket(b) => &b.url,
        }
    }

    /// Make sure the bucket can be written, read and cleaned (at start-up: a wrong endpoint or
    /// credentials stop the server with the store's reason instead of failing each upload).
    pub async fn check(&self) -> anyhow::Result<()> {
        let Files::Bucket(b) = self else {
            return Ok(());
        };
        let probe = b.prefix.child(".emergence-probe");
        let fail = |what: &str, e: object_store::Error| {
            anyhow::anyhow!("documents.storage {}: cannot {what}: {e}", b.url)
        };
        b.store
            .put(&probe, PutPayload::from_static(b"ok"))
            .await
            .map_err(|e| fail("write", e))?;
        b.store
            .get(&probe)
            .await
            .map_err(|e| fail("read", e))?
            .bytes()
            .await
            .map_err(|e| fail("read", e))?;
        b.store
            .delete(&probe)
            .await
            .map_err(|e| fail("delete", e))?;
        Ok(())
    }

    /// Store part `part_no` of document `id`.
    pub async fn put_part(
        &self,
        docs: &dyn DocumentStore,
        id: &str,
        part_no: i64,
        bytes: &[u8],
    ) -> Result<(), StoreError> {
        match self {
            Files::Database => docs.put_part(id, part_no, bytes).await,
            Files::Bucket(b) => b
                .store
                .put(&b.part_path(id, part_no), PutPayload::from(bytes.to_vec()))
                .await
                .map(|_| ())
                .map_err(bucket_error),
        }
    }

    /// Part `part_no` of document `id` (`None` past the last part, or when the document is
    /// gone), from wherever the document recorded its parts.
    pub async fn part(
        &self,
        db: &Database,
        id: &str,
        part_no: i64,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let doc = id.to_string();
        let storage = db
            .run(|s| async move {
                match s.documents() {
                    Some(d) => d.file_storage(&doc).await,
                    None => Ok(None),
                }
            })
            .await?;
        let Some(storage) = storage else {
            return Ok(None);
        };
        if storage == IN_DATABASE {
            let doc = id.to_string();
            return db
                .run(|s| async move {
                    match s.documents() {
                        Some(d) => d.part(&doc, part_no).await,
                        None => Ok(None),
                    }
                })
                .await;
        }
        match self {
            Files::Bucket(b) if b.url == storage => b.part(id, part_no).await,
            _ => Err(StoreError::Other(anyhow::anyhow!(
                "this document's file is stored in {storage}, which this instance's documents.storage does not name"
            ))),
        }
    }

    /// Remove every stored part of document `id` from the bucket (the database's parts go with
    /// the document's row). A failure is logged: the objects stay, unreachable.
    pub async fn remove(&self, id: &str) {
        let Files::Bucket(b) = self else {
            return;
        };
        if let Err(e) = b.remove(id).await {
            tracing::warn!(document = id, storage = %b.url, error = %e, "cannot remove a document's file from the bucket");
        }
    }
}

impl Bucket {
    fn part_path(&self, id: &str, part_no: i64) -> Path {
        self.prefix
            .child("documents")
            .child(id)
            .child(format!("{part_no:06}"))
    }

    async fn part(&self, id: &str, part_no: i64) -> Result<Option<Vec<u8>>, StoreError> {
        match self.store.get(&self.part_path(id, part_no)).await {
            Ok(got) => Ok(Some(got.bytes().await.map_err(bucket_error)?.to_vec())),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(bucket_error(e)),
        }
    }

    async fn remove(&self, id: &str) -> Result<(), object_store::Error> {
        let dir = self.prefix.child("documents").child(id);
        let listed = self
            .store
            .list(Some(&dir))
            .map_ok(|meta| meta.location)
            .boxed();
        self.store
            .delete_stream(listed)
            .try_collect::<Vec<_>>()
            .await
            .map(|_| ())
    }
}

fn option_error(key: &str, e: object_store::Error) -> anyhow::Error {
    anyhow::anyhow!("documents.storage_options: unknown option {key:?}: {e}")
}

/// A bucket that cannot be reached is unavailable like a database that cannot (the caller
/// retries or answers 503); anything else is an error.
fn bucket_error(e: object_store::Error) -> StoreError {
    match e {
        object_store::Error::Generic { .. } => StoreError::Unavailable(e.to_string()),
        other => StoreError::Other(anyhow::Error::new(other)),
    }
}
