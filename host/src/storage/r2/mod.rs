//! R2 buckets: named blob stores shared by every worker bound to them.
//!
//! A bucket is `<data>/r2/<name>/` (its bodies, through object_store's
//! `LocalFileSystem`) plus `<data>/r2/<name>.index` (its metadata, see
//! `index.rs`), created on first use. `verge serve --r2-bucket
//! NAME=s3://...` puts a bucket's bodies in S3, GCS or Azure instead
//! ([`R2Store::locate`]); its index stays on the host. Why an index of our
//! own and not the blob store's metadata: docs/architecture.md, "R2
//! buckets".
//!
//! In a cluster, the index is rows in the cluster's Postgres
//! (`cluster_index.rs`) and the bodies must be in a store every host
//! reaches: each bucket needs `--r2-bucket NAME=URL`, or `--r2-root URL`
//! puts every bucket at `URL/<name>`. A bucket without one is refused
//! rather than kept in a per-host directory that would silently diverge.

mod body;
mod bucket;
mod cluster_index;
mod error;
mod index;
mod meta;
mod multipart;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::{Context, bail};
use bucket::BucketIndex;
use cluster_index::ClusterIndex;
use object_store::ObjectStore;
use object_store::local::LocalFileSystem;
use object_store::prefix::PrefixStore;

pub use body::ObjectBody;
pub(crate) use bucket::{Bucket, ListOptions, PutOptions};
pub(crate) use error::{R2Error, R2Result};
pub(crate) use meta::{ByteRange, Conditional, HttpMetadata, ObjectMeta, WriteMetadata};
pub(crate) use multipart::UploadedPart;

use crate::cluster::Cluster;

/// The longest key, in bytes, as R2 allows.
pub(crate) const MAX_KEY_BYTES: usize = 1024;

/// Every bucket of a host.
pub struct R2Store {
    root: PathBuf,
    /// Buckets whose bodies live elsewhere than `root`, by name.
    locations: Mutex<HashMap<String, url::Url>>,
    /// Where the bodies of every bucket without a location of its own
    /// live, at `<url>/<name>` (`--r2-root`).
    root_url: Mutex<Option<url::Url>>,
    /// In a cluster, indexes are the cluster's, in its database.
    cluster: Option<Arc<Cluster>>,
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
    /// The buckets of `cluster` when there is one (indexes in its
    /// database, bodies where `locate` and `locate_all` say), else those
    /// under `<data_dir>/r2/`.
    pub(crate) fn with_cluster(data_dir: &std::path::Path, cluster: Option<Arc<Cluster>>) -> Self {
        Self {
            root: data_dir.join("r2"),
            locations: Mutex::default(),
            root_url: Mutex::default(),
            cluster,
            open: Mutex::default(),
        }
    }

    /// Puts the bodies of every bucket without a location of its own
    /// under `url`, bucket `name` at `<url>/<name>` (`--r2-root`). Must
    /// come before any bucket's first use.
    pub fn locate_all(&self, url: &str) -> anyhow::Result<()> {
        let mut url =
            url::Url::parse(url).with_context(|| format!("--r2-root {url:?} is not a URL"))?;
        if !url.path().ends_with('/') {
            url.set_path(&format!("{}/", url.path()));
        }
        // Fail now, at start, rather than on the first request.
        open_url(&url).context("--r2-root")?;
        if !self.lock_open().is_empty() {
            bail!("--r2-root must be set before any bucket is used");
        }
        *self.root_url.lock().unwrap_or_else(|p| p.into_inner()) = Some(url);
        Ok(())
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
        if let Some(cluster) = &self.cluster {
            return self.open_cluster_bucket(cluster, name).await;
        }
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
            index: BucketIndex::Local(Arc::new(index)),
        });
        open.insert(name.to_owned(), bucket.clone());
        Ok(bucket)
    }

    /// Bucket `name` of the cluster: its index in the cluster's database,
    /// its bodies at the shared location this host was given for it.
    async fn open_cluster_bucket(&self, cluster: &Cluster, name: &str) -> R2Result<Arc<Bucket>> {
        let Some(url) = self.location(name) else {
            return Err(R2Error::Storage(anyhow::anyhow!(
                "R2 bucket {name} has no shared location: in a cluster every host must reach \
                 the same bodies, so start each `verge serve --cluster` with \
                 --r2-bucket {name}=URL (file:///a/shared/dir, or s3://... with the r2-cloud \
                 feature) or --r2-root URL for every bucket"
            )));
        };
        let blobs = open_url(&url).with_context(|| format!("R2 bucket {name}"))?;
        let index = ClusterIndex::open(cluster.pool().clone(), name).await?;
        let bucket = Arc::new(Bucket {
            blobs,
            index: BucketIndex::Cluster(index),
        });
        Ok(self
            .lock_open()
            .entry(name.to_owned())
            .or_insert(bucket)
            .clone())
    }

    /// Where bucket `name`'s bodies are when not under `root`: its own
    /// location, or its place under `--r2-root`.
    fn location(&self, name: &str) -> Option<url::Url> {
        if let Some(url) = self.own_location(name) {
            return Some(url);
        }
        let root = self.root_url.lock().unwrap_or_else(|p| p.into_inner());
        root.as_ref().and_then(|root| root.join(name).ok())
    }

    fn own_location(&self, name: &str) -> Option<url::Url> {
        self.locations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    /// Bucket `name` if it exists: it has an index (here, or in the
    /// cluster), or a location of its own.
    pub(crate) async fn existing(self: &Arc<Self>, name: &str) -> R2Result<Option<Arc<Bucket>>> {
        let valid = crate::config::validate_bucket_name(name).is_ok();
        let exists = self.lock_open().contains_key(name)
            || self.own_location(name).is_some()
            || match &self.cluster {
                Some(cluster) => valid && ClusterIndex::exists(cluster.pool(), name).await?,
                None => valid && self.root.join(format!("{name}.index")).exists(),
            };
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

    /// Every bucket: those with an index on disk (or, in a cluster, in
    /// the cluster's database) and those given a location.
    pub(crate) async fn list(self: &Arc<Self>) -> R2Result<Vec<BucketInfo>> {
        let mut names: Vec<String> = match &self.cluster {
            Some(cluster) => ClusterIndex::names(cluster.pool())
                .await?
                .into_iter()
                .collect(),
            None => self.local_names()?,
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
            let (location, (objects, bytes)) = match (self.location(&name), &self.cluster) {
                // Another host uses it, this one was not told where it is:
                // listed all the same, from the shared index.
                (None, Some(cluster)) => (
                    "(no shared location on this host: --r2-bucket or --r2-root)".to_owned(),
                    ClusterIndex::of(cluster.pool().clone(), &name)
                        .usage()
                        .await?,
                ),
                (Some(url), _) => (url.to_string(), self.bucket(&name).await?.usage().await?),
                (None, None) => (
                    self.root.join(&name).display().to_string(),
                    self.bucket(&name).await?.usage().await?,
                ),
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

    /// The buckets with an index file on this host.
    fn local_names(&self) -> R2Result<Vec<String>> {
        match std::fs::read_dir(&self.root) {
            Ok(entries) => Ok(entries
                .filter_map(|entry| entry.ok())
                .filter_map(|entry| {
                    let name = entry.file_name().into_string().ok()?;
                    name.strip_suffix(".index").map(str::to_owned)
                })
                .collect()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(R2Error::Storage(
                anyhow::Error::from(e).context(format!("reading {}", self.root.display())),
            )),
        }
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
