//! KV namespaces (`[[kv_namespaces]]`): key-value stores on the host,
//! shared by every worker bound to them. Each namespace is one SQLite
//! database, `kv/<id>.sqlite` in the data directory, opened on first use
//! and kept open.

pub(crate) mod bulk;
pub(crate) mod checks;
mod namespace;
mod range;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};

pub(crate) use checks::KvLimits;
pub(crate) use namespace::{KeyInfo, KvNamespace, Put};

/// Every KV namespace of the host, by id.
pub(crate) struct KvNamespaces {
    dir: PathBuf,
    open: Mutex<HashMap<String, Arc<KvNamespace>>>,
}

impl KvNamespaces {
    /// The namespaces under `data_dir/kv`.
    pub(crate) fn new(data_dir: &Path) -> Self {
        Self {
            dir: data_dir.join("kv"),
            open: Mutex::default(),
        }
    }

    /// Namespace `id` if it is open: a lookup that never blocks on I/O.
    pub(crate) fn open_namespace(&self, id: &str) -> Option<Arc<KvNamespace>> {
        let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.get(id).cloned()
    }

    /// Namespace `id` (checked by the config), created on first use.
    /// Blocks on file I/O the first time.
    pub(crate) fn namespace(&self, id: &str) -> Result<Arc<KvNamespace>> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(namespace) = open.get(id) {
            return Ok(namespace.clone());
        }
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("creating {}", self.dir.display()))?;
        let namespace = Arc::new(KvNamespace::open(&self.dir.join(format!("{id}.sqlite")))?);
        open.insert(id.to_owned(), namespace.clone());
        Ok(namespace)
    }

    /// The ids of the namespaces that hold data on this host.
    pub(crate) fn ids(&self) -> Result<Vec<String>> {
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
