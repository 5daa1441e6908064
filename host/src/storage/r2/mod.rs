//! R2 buckets: named blob stores shared by every worker bound to them.
//!
//! A bucket is `<data>/r2/<name>/` (its bodies, through object_store's
//! `LocalFileSystem`) plus `<data>/r2/<name>.index` (its metadata, see
//! `index.rs`), created on first use. `verge serve --r2-bucket
//! NAME=s3://...` puts a bucket's bodies in S3, GCS or Azure instead
//! ([`R2Store::locate`]); its index stays on the host. Why an index of our
//! own and not the blob store's metadata: docs/architecture.md, "R2
//! buckets".

mod body;
mod bucket;
mod error;
mod index;
mod meta;
mod multipart;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::{Context, bail};
use object_store::ObjectStore;
use object_store::local::LocalFileSystem;
use object_store::prefix::PrefixStore;

pub use body::ObjectBody;
pub(crate) use bucket::{Bucket, ListOptions, PutOptions};
pub(crate) use error::{R2Error, R2Result};
pub(crate) use meta::{ByteRange, Conditional, HttpMetadata, ObjectMeta, WriteMetadata};
pub(crate) use multipart::UploadedPart;

/// The longest key, in bytes, as R2 allows.
pub(crate) const MAX_KEY_BYTES: usize = 1024;

/// Every bucket of a host.
pub struct R2Store {
    root: PathBuf,
    /// Buckets whose bodies live elsewhere than `root`, by name.
    locations: Mutex<HashMap<String, url::Url>>,
    open: Mutex<HashMap<String, Arc<Bucket>>>,
}

/// A bucket in a listing.
#[derive(Debug, serde::Serialize)]
pub(crate) struct BucketInfo {
    pub(crate) name: String,
    /// Where its bodies are: a directory or a URL.
    pub(crate) location: String,
    pub(crate) objects: u64,
    pub(crate) bytes: u64,
}

impl R2Store {
    /// The buckets under `<data_dir>/r2/`.
    pub(crate) fn new(data_dir: &std::path::Path) -> Self {
        Self {
            root: data_dir.join("r2"),
            locations: Mutex::default(),
            open: Mutex::default(),
        }
    }

    /// Puts the bodies of bucket `name` at `url` (`s3://bucket/prefix`,
    /// `gs://...`, `az://...`, `file:///...`, `memory:///`), with
    /// credentials from object_store's usual environment variables
    /// (`AWS_ACCESS_KEY_ID`, `GOOGLE_SERVICE_ACCOUNT`, ...). Must come
    /// before the bucket's first use.
    pub fn locate(&self, name: &str, url: &str) -> anyhow::Result<()> {
        crate::config::validate_bucket_name(name).map_err(anyhow::Error::msg)?;
        let url = url::Url::parse(url)
            .with_context(|| format!("R2 bucket {name}: {url:?} is not a URL"))?;
        // Fail now, at start, rather than on the first request.
        open_url(&url).with_context(|| format!("R2 bucket {name}"))?;
        if self.lock_open().contains_key(name) {
            bail!("R2 bucket {name} is already in use here");
        }
        self.locations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_owned(), url);
        Ok(())
    }

    fn lock_open(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Bucket>>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Bucket `name`, created if it does not exist yet.
    pub(crate) async fn bucket(self: &Arc<Self>, name: &str) -> R2Result<Arc<Bucket>> {
        if let Some(bucket) = self.lock_open().get(name) {
            return Ok(bucket.clone());
        }
        crate::config::validate_bucket_name(name).map_err(R2Error::InvalidArgument)?;
        let (this, name) = (self.clone(), name.to_owned());
        tokio::task::spawn_blocking(move || this.open_bucket(&name))
            .await
            .map_err(|e| R2Error::Storage(anyhow::anyhow!("opening a bucket failed: {e}")))?
            .map_err(R2Error::Storage)
    }

    fn open_bucket(&self, name: &str) -> anyhow::Result<Arc<Bucket>> {
        let mut open = self.lock_open();
        if let Some(bucket) = open.get(name) {
            return Ok(bucket.clone());
        }
        std::fs::create_dir_all(&self.root)
            .with_context(|| format!("creating {}", self.root.display()))?;
        let blobs = match self.location(name) {
            Some(url) => open_url(&url)?,
            None => {
                let dir = self.root.join(name);
                std::fs::create_dir_all(&dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
                Arc::new(
                    LocalFileSystem::new_with_prefix(&dir)
                        .with_context(|| format!("opening {}", dir.display()))?
                        .with_automatic_cleanup(true)
                        // A put that returned is on disk, as the index row that
                        // points at it is (SQLite, synchronous=FULL).
                        .with_fsync(true),
                ) as Arc<dyn ObjectStore>
            }
        };
        let index = index::Index::open(&self.root.join(format!("{name}.index")))?;
        let bucket = Arc::new(Bucket {
            blobs,
            index: Arc::new(index),
        });
        open.insert(name.to_owned(), bucket.clone());
        Ok(bucket)
    }

    fn location(&self, name: &str) -> Option<url::Url> {
        self.locations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    /// Bucket `name` if it exists: it has an index, or a location.
    pub(crate) async fn existing(self: &Arc<Self>, name: &str) -> R2Result<Option<Arc<Bucket>>> {
        let exists = self.lock_open().contains_key(name)
            || self.location(name).is_some()
            || (crate::config::validate_bucket_name(name).is_ok()
                && self.root.join(format!("{name}.index")).exists());
        if exists {
            self.bucket(name).await.map(Some)
        } else {
            Ok(None)
        }
    }

    /// Creates bucket `name`; an existing one is no error.
    pub(crate) async fn create(self: &Arc<Self>, name: &str) -> R2Result<()> {
        self.bucket(name).await.map(drop)
    }

    /// Every bucket: those with an index on disk and those given a
    /// location.
    pub(crate) async fn list(self: &Arc<Self>) -> R2Result<Vec<BucketInfo>> {
        let mut names: Vec<String> = match std::fs::read_dir(&self.root) {
            Ok(entries) => entries
                .filter_map(|entry| entry.ok())
                .filter_map(|entry| {
                    let name = entry.file_name().into_string().ok()?;
                    name.strip_suffix(".index").map(str::to_owned)
                })
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => {
                return Err(R2Error::Storage(
                    anyhow::Error::from(e).context(format!("reading {}", self.root.display())),
                ));
            }
        };
        names.extend(
            self.locations
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .keys()
                .cloned(),
        );
        names.sort();
        names.dedup();
        let mut buckets = Vec::with_capacity(names.len());
        for name in names {
            let (objects, bytes) = self.bucket(&name).await?.usage().await?;
            let location = match self.location(&name) {
                Some(url) => url.to_string(),
                None => self.root.join(&name).display().to_string(),
            };
            buckets.push(BucketInfo {
                name,
                location,
                objects,
                bytes,
            });
        }
        Ok(buckets)
    }
}

/// The blob store a bucket URL names, under the URL's path.
fn open_url(url: &url::Url) -> anyhow::Result<Arc<dyn ObjectStore>> {
    let (store, prefix) =
        object_store::parse_url_opts(url, std::env::vars()).with_context(|| {
            format!(
                "cannot use {url} (S3, GCS and Azure need a host built with the `r2-cloud` feature)"
            )
        })?;
    Ok(Arc::new(PrefixStore::new(store, prefix)))
}
