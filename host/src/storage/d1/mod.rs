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
//!
//! A database is created on first use (a worker's first query, or
//! `verge d1 create`) and stays open for the life of the host.

mod connection;
mod database;
mod dump;
mod migrations;
mod operator;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use serde::Serialize;

pub(crate) use database::{D1Database, Meta, QueryResult, Statement};
pub(crate) use dump::DumpOptions;
pub(crate) use migrations::{AppliedMigration, migration_files, new_migration};
pub(crate) use operator::OperatorError;

use crate::config::validate_database_name;

/// Every D1 database of a host.
pub(crate) struct D1Store {
    dir: PathBuf,
    open: Mutex<HashMap<String, Arc<D1Database>>>,
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
        }
    }

    /// The database `name`, opened (and created) on first use.
    pub(crate) fn database(&self, name: &str) -> Result<Arc<D1Database>> {
        validate_database_name(name)?;
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
}
