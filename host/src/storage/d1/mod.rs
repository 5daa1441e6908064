//! D1 databases: relational data shared by every worker bound to the same
//! `database_name`, one SQLite file each under `<data>/d1/<name>.sqlite`.
//!
//! - `connection.rs`: a connection that runs guest SQL under the same
//!   authorizer, budget and limits as a Durable Object's (shared from
//!   `objects/storage/`).
//! - `database.rs`: one database — a single writer, concurrent readers,
//!   a transaction per write call, the size limit.
//! - `dump.rs`: `verge d1 export`, a SQL text dump.
//! - `migrations.rs`: wrangler's migrations, recorded in the database.
//! - `operator.rs`: `verge d1`'s commands, for the admin API and `--local`.
//! - `remote.rs`: where a call runs — here, or in a cluster on the host
//!   that owns the database, forwarded.
//!
//! A database is created on first use (a worker's first query, or
//! `verge d1 create`) and stays open for the life of the host. In a
//! cluster, each database is owned by one host, like a Durable Object:
//! its file there is a replica of its durable history in Postgres, and
//! the other hosts forward their calls to it.

mod connection;
mod database;
mod dump;
mod migrations;
mod operator;
mod remote;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use serde::Serialize;

pub(crate) use database::{D1Database, Meta, QueryResult, Statement};
pub(crate) use dump::DumpOptions;
pub(crate) use migrations::{AppliedMigration, migration_files, new_migration};
pub(crate) use operator::OperatorError;
pub(crate) use remote::{D1Answer, D1Failure, D1Op, D1Request};

use crate::cluster::Cluster;
use crate::config::validate_database_name;

/// Every D1 database of a host.
pub(crate) struct D1Store {
    dir: PathBuf,
    open: Mutex<HashMap<String, Arc<D1Database>>>,
    /// The cluster this host is a member of, if any: then the databases
    /// here are the ones this host owns.
    cluster: Option<Arc<Cluster>>,
    /// In a cluster: copies given up, and the lock every opening takes.
    retired: tokio::sync::Mutex<remote::Retired>,
}

/// One database in [`D1Store::list`].
#[derive(Debug, Clone, Serialize)]
pub(crate) struct DatabaseInfo {
    pub(crate) name: String,
    pub(crate) size_bytes: u64,
}

impl D1Store {
    /// The databases under `data_dir/d1`.
    pub(crate) fn new(data_dir: &std::path::Path) -> Self {
        Self {
            dir: data_dir.join("d1"),
            open: Mutex::default(),
            cluster: None,
            retired: tokio::sync::Mutex::default(),
        }
    }

    /// The databases of a host of `cluster`: each lives on the host that
    /// owns it, and `data_dir/d1` holds the copies of those this host
    /// owns.
    pub(crate) fn clustered(data_dir: &std::path::Path, cluster: Arc<Cluster>) -> Self {
        Self {
            cluster: Some(cluster),
            ..Self::new(data_dir)
        }
    }

    /// The database `name`, opened (and created) on first use. On a
    /// single host only: in a cluster, [`Self::call`] finds its owner.
    pub(crate) fn database(&self, name: &str) -> Result<Arc<D1Database>> {
        validate_database_name(name)?;
        anyhow::ensure!(
            self.cluster.is_none(),
            "in a cluster, D1 database `{name}` is reached through the host that owns it"
        );
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(db) = open.get(name) {
            return Ok(db.clone());
        }
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("creating {}", self.dir.display()))?;
        let db = Arc::new(D1Database::open(&self.path(name), name)?);
        open.insert(name.to_owned(), db.clone());
        Ok(db)
    }

    /// Creates `name`; `false` when it already existed.
    pub(crate) fn create(&self, name: &str) -> Result<bool> {
        validate_database_name(name)?;
        let existed = self.path(name).exists();
        self.database(name)?;
        Ok(!existed)
    }

    /// Whether `name` exists (without creating it).
    pub(crate) fn exists(&self, name: &str) -> bool {
        validate_database_name(name).is_ok() && self.path(name).exists()
    }

    /// Every database, by name.
    pub(crate) fn list(&self) -> Result<Vec<DatabaseInfo>> {
        let mut databases = Vec::new();
        for name in crate::storage::sqlite_files(&self.dir)? {
            let size_bytes = match self.database(&name) {
                Ok(db) => db.size().map_err(anyhow::Error::from)?,
                // Not a database Verge made: leave it be.
                Err(_) => continue,
            };
            databases.push(DatabaseInfo { name, size_bytes });
        }
        Ok(databases)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.sqlite"))
    }

    fn opened(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<D1Database>>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// This host's open copy of `name`, if any.
    fn open_copy(&self, name: &str) -> Option<Arc<D1Database>> {
        self.opened().get(name).cloned()
    }

    fn keep_copy(&self, name: &str, db: Arc<D1Database>) {
        self.opened().insert(name.to_owned(), db);
    }

    fn forget_copy(&self, name: &str) {
        self.opened().remove(name);
    }
}
