//! KV namespaces (`[[kv_namespaces]]`): key-value stores shared by every
//! worker bound to them.
//!
//! On a single host each namespace is one SQLite database,
//! `kv/<id>.sqlite` in the data directory (`namespace.rs`), opened on first
//! use and kept open. In a cluster every namespace is rows in the
//! cluster's Postgres (`cluster.rs`), so all hosts see the same keys.
//! Callers see one [`KvNamespace`] either way.

pub(crate) mod bulk;
pub(crate) mod checks;
mod cluster;
mod namespace;
mod range;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};

pub(crate) use checks::KvLimits;
use cluster::ClusterNamespace;
pub(crate) use namespace::{BadCursor, Entry, KeyInfo, Listing, LocalNamespace, OwnedPut, Put};

use crate::cluster::Cluster;

/// One KV namespace, wherever its keys are.
#[derive(Clone)]
pub(crate) enum KvNamespace {
    /// A SQLite file of this host; its work runs on the blocking pool.
    Local(Arc<LocalNamespace>),
    /// Rows in the cluster's database.
    Cluster(Arc<ClusterNamespace>),
}

impl KvNamespace {
    /// The value of `key` unless it has expired by `now` (Unix seconds).
    pub(crate) async fn get(&self, key: String, now: i64) -> Result<Option<Entry>> {
        match self {
            Self::Local(local) => {
                let local = local.clone();
                blocking(move || local.get(&key, now)).await
            }
            Self::Cluster(cluster) => cluster.get(&key, now).await,
        }
    }

    /// Stores `puts`, all or none, durably, and drops a few rows that
    /// expired by `now`.
    pub(crate) async fn put(&self, puts: Vec<OwnedPut>, now: i64) -> Result<()> {
        match self {
            Self::Local(local) => {
                let local = local.clone();
                blocking(move || {
                    let puts: Vec<Put<'_>> = puts.iter().map(OwnedPut::as_put).collect();
                    local.put(&puts, now)
                })
                .await
            }
            Self::Cluster(cluster) => cluster.put(&puts, now).await,
        }
    }

    /// Removes `keys`, all or none.
    pub(crate) async fn delete(&self, keys: Vec<String>) -> Result<()> {
        match self {
            Self::Local(local) => {
                let local = local.clone();
                blocking(move || {
                    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
                    local.delete(&keys)
                })
                .await
            }
            Self::Cluster(cluster) => cluster.delete(&keys).await,
        }
    }

    /// Up to `limit` keys after `cursor` that start with `prefix` and have
    /// not expired by `now`.
    pub(crate) async fn list(
        &self,
        prefix: String,
        cursor: Option<String>,
        limit: u32,
        now: i64,
    ) -> Result<Result<Listing, BadCursor>> {
        match self {
            Self::Local(local) => {
                let local = local.clone();
                blocking(move || local.list(&prefix, cursor.as_deref(), limit, now)).await
            }
            Self::Cluster(cluster) => cluster.list(&prefix, cursor.as_deref(), limit, now).await,
        }
    }
}

/// Every KV namespace of the host (or of its cluster), by id.
pub(crate) struct KvNamespaces {
    dir: PathBuf,
    /// In a cluster, namespaces are the cluster's, in its database.
    cluster: Option<Arc<Cluster>>,
    open: Mutex<HashMap<String, KvNamespace>>,
}

impl KvNamespaces {
    /// The namespaces under `data_dir/kv`, on this host only (what
    /// `verge kv --local` opens).
    pub(crate) fn new(data_dir: &Path) -> Self {
        Self::with_cluster(data_dir, None)
    }

    /// The namespaces of `cluster` when there is one, else those under
    /// `data_dir/kv`.
    pub(crate) fn with_cluster(data_dir: &Path, cluster: Option<Arc<Cluster>>) -> Self {
        Self {
            dir: data_dir.join("kv"),
            cluster,
            open: Mutex::default(),
        }
    }

    fn lock_open(&self) -> std::sync::MutexGuard<'_, HashMap<String, KvNamespace>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Namespace `id` (checked by the config), created on first use.
    pub(crate) async fn namespace(self: &Arc<Self>, id: &str) -> Result<KvNamespace> {
        // Once open it is a map lookup, not worth a trip anywhere.
        if let Some(namespace) = self.lock_open().get(id) {
            return Ok(namespace.clone());
        }
        let namespace = match &self.cluster {
            Some(cluster) => KvNamespace::Cluster(Arc::new(
                ClusterNamespace::open(cluster.pool().clone(), id).await?,
            )),
            None => {
                let (this, id) = (self.clone(), id.to_owned());
                KvNamespace::Local(blocking(move || this.local(&id)).await?)
            }
        };
        Ok(self
            .lock_open()
            .entry(id.to_owned())
            .or_insert(namespace)
            .clone())
    }

    /// Namespace `id`'s SQLite file on this host, created on first use,
    /// cluster or not: for `verge kv --local`. Blocks on file I/O the first
    /// time.
    pub(crate) fn local(&self, id: &str) -> Result<Arc<LocalNamespace>> {
        if self.cluster.is_none()
            && let Some(KvNamespace::Local(local)) = self.lock_open().get(id)
        {
            return Ok(local.clone());
        }
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("creating {}", self.dir.display()))?;
        let namespace = Arc::new(LocalNamespace::open(
            &self.dir.join(format!("{id}.sqlite")),
        )?);
        if self.cluster.is_none() {
            let mut open = self.lock_open();
            if let Some(KvNamespace::Local(local)) = open.get(id) {
                return Ok(local.clone());
            }
            open.insert(id.to_owned(), KvNamespace::Local(namespace.clone()));
        }
        Ok(namespace)
    }

    /// The ids of the namespaces that hold data: the cluster's, or this
    /// host's files.
    pub(crate) async fn ids(&self) -> Result<Vec<String>> {
        match &self.cluster {
            Some(cluster) => ClusterNamespace::ids(cluster.pool()).await,
            None => {
                let dir = self.dir.clone();
                blocking(move || super::sqlite_files(&dir)).await
            }
        }
    }

    /// The ids of the namespaces with a file on this host.
    pub(crate) fn local_ids(&self) -> Result<Vec<String>> {
        super::sqlite_files(&self.dir)
    }
}

/// Runs blocking SQLite work off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .context("KV work did not finish")?
}
