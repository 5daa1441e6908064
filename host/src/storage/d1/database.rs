//! One D1 database: a single writer connection, and read-only connections
//! for reads, which run beside the writer (WAL gives each its snapshot).
//!
//! Every write call is its own transaction on the writer: `query` and
//! `exec` are atomic, and a `batch` is one transaction, all or nothing.
//! The writer is a mutex, so writes are serial — SQLite allows one writer
//! at a time anyway, and serial writes need no busy retries.
//!
//! Calls block (SQLite is synchronous): the binding runs them on tokio's
//! blocking pool, never on a runtime thread.
//!
//! In a cluster, the database on its owner is a replica of its durable
//! history in Postgres (`cluster/history.rs`): the WAL is never
//! checkpointed behind the replica's back, each write call's pages are
//! shipped before it returns, and a read answers only once every commit it
//! may have seen is durable and while this host still holds its lease. A
//! failed shipment gives the copy up: it answers nothing more, and the
//! store opens the database again, rebuilt from the cluster.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use anyhow::Context;
use rusqlite::types::Value;

use super::connection::GuestConn;
use crate::cluster::{Replica, ShipError};
use crate::objects::storage::{
    EventBudget, MAX_RESULT_BYTES, Rows, SqlError, SqlErrorKind, result_too_large, rows_bytes,
};

/// Idle read connections kept open; more are opened when reads overlap,
/// and closed after.
const IDLE_READERS: usize = 4;

/// One statement and its parameters.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct Statement {
    pub(crate) sql: String,
    #[serde(with = "super::remote::values")]
    pub(crate) params: Vec<Value>,
}

/// D1's `meta`: what a statement did.
#[derive(Debug, Clone, Copy, Default, serde::Serialize, serde::Deserialize)]
pub(crate) struct Meta {
    /// Milliseconds the statement took on the host.
    pub(crate) duration: f64,
    pub(crate) rows_read: u64,
    pub(crate) rows_written: u64,
    /// The rowid of the last row inserted (0 when none was).
    pub(crate) last_row_id: i64,
    /// Rows changed by the statement.
    pub(crate) changes: u64,
    /// Whether the statement changed the database.
    pub(crate) changed_db: bool,
    /// The database's size afterwards, in bytes.
    pub(crate) size_after: u64,
}

/// The rows of a statement (the last one of a script) and its meta.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub(crate) struct QueryResult {
    pub(crate) columns: Vec<String>,
    #[serde(with = "super::remote::rows")]
    pub(crate) rows: Vec<Vec<Value>>,
    pub(crate) meta: Meta,
    /// Statements run (several for a script).
    pub(crate) statements: u32,
}

/// An open D1 database.
pub(crate) struct D1Database {
    path: PathBuf,
    name: Arc<str>,
    // Readers before the writer: fields drop in order, and the last
    // connection to close is the one that may checkpoint.
    readers: Mutex<Vec<GuestConn>>,
    writer: Mutex<GuestConn>,
    /// In a cluster: the database as a replica of its history.
    replicated: Option<Replicated>,
}

/// A database's hold on its durable history, in a cluster.
struct Replicated {
    /// Held from a write's commit until its pages are durable, so a read
    /// that may have seen the commit waits for that before it answers.
    /// `None` once the copy was given up.
    replica: Mutex<Option<Replica>>,
    /// The runtime the shipper runs on, to wait for it from the blocking
    /// pool.
    runtime: tokio::runtime::Handle,
}

impl D1Database {
    /// Opens (creating) the database file at `path`.
    pub(super) fn open(path: &Path, name: &str) -> anyhow::Result<Self> {
        let name: Arc<str> = name.into();
        let writer = GuestConn::writer(path, name.clone())
            .with_context(|| format!("opening D1 database {}", path.display()))?;
        Ok(Self {
            path: path.to_owned(),
            name,
            readers: Mutex::new(Vec::new()),
            writer: Mutex::new(writer),
            replicated: None,
        })
    }

    /// Opens the file at `path`, just rebuilt from the cluster, as the
    /// replica `replica`: the writer never checkpoints on its own (nor on
    /// close), and the WAL starts empty, where the replica reads from.
    pub(super) fn open_replica(
        path: &Path,
        name: &str,
        replica: Replica,
        runtime: tokio::runtime::Handle,
    ) -> anyhow::Result<Self> {
        let name: Arc<str> = name.into();
        let mut writer = GuestConn::writer(path, name.clone())
            .with_context(|| format!("opening D1 database {}", path.display()))?;
        writer
            .internal(|c| {
                c.pragma_update(None, "wal_autocheckpoint", 0)?;
                c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            })
            .with_context(|| format!("setting up the replica's WAL for D1 database `{name}`"))?;
        writer
            .never_checkpoint()
            .with_context(|| format!("setting up D1 database `{name}`"))?;
        Ok(Self {
            path: path.to_owned(),
            name,
            readers: Mutex::new(Vec::new()),
            writer: Mutex::new(writer),
            replicated: Some(Replicated {
                replica: Mutex::new(Some(replica)),
                runtime,
            }),
        })
    }

    /// Whether this copy may still answer: always on a single host; in a
    /// cluster, while its replica holds (no failed shipment, and this
    /// host's lease ran without lapsing since the database was claimed).
    ///
    /// Never waits (it is asked on the runtime's threads): while a
    /// shipment is in flight the copy counts as live, since that write
    /// and every read after it check again before they answer.
    pub(crate) fn is_live(&self) -> bool {
        use std::sync::TryLockError;
        self.replicated
            .as_ref()
            .is_none_or(|replicated| match replicated.replica.try_lock() {
                Ok(replica) => replica.as_ref().is_some_and(Replica::may_answer),
                Err(TryLockError::WouldBlock) => true,
                Err(TryLockError::Poisoned(p)) => {
                    p.into_inner().as_ref().is_some_and(Replica::may_answer)
                }
            })
    }

    /// Gives the copy up (in a cluster): it answers nothing more, and the
    /// next call claims the database again and rebuilds it.
    pub(crate) fn give_up(&self) {
        if let Some(replicated) = &self.replicated
            && let Some(replica) = lock(&replicated.replica).take()
        {
            replica.abandon();
        }
    }

    /// Runs one statement (or a script, whose last statement's rows come
    /// back): on a reader when it only reads, else on the writer in a
    /// transaction of its own.
    pub(crate) fn query(
        &self,
        statement: &Statement,
        budget: &mut EventBudget,
        limit_bytes: u64,
    ) -> Result<QueryResult, SqlError> {
        if let Some(result) = self.read(statement, budget)? {
            return Ok(result);
        }
        self.write(limit_bytes, |writer| written(writer, statement, budget))
    }

    /// Runs every statement in one transaction: all or nothing.
    pub(crate) fn batch(
        &self,
        statements: &[Statement],
        budget: &mut EventBudget,
        limit_bytes: u64,
    ) -> Result<Vec<QueryResult>, SqlError> {
        self.write(limit_bytes, |writer| {
            // Each result is capped on its own; the batch's together too,
            // or a batch of large reads could make the host hold gigabytes.
            let mut bytes = 0;
            statements
                .iter()
                .map(|s| {
                    let result = written(writer, s, budget)?;
                    bytes += rows_bytes(&result.rows);
                    if bytes > MAX_RESULT_BYTES {
                        return Err(result_too_large());
                    }
                    Ok(result)
                })
                .collect()
        })
    }

    /// Runs a script without parameters, atomically: `exec`, and the
    /// operator's `verge d1 execute` and `import` (whose scripts may be
    /// long).
    pub(crate) fn exec(
        &self,
        sql: &str,
        budget: &mut EventBudget,
        limit_bytes: u64,
    ) -> Result<QueryResult, SqlError> {
        let statement = Statement {
            sql: sql.to_owned(),
            params: Vec::new(),
        };
        self.write(limit_bytes, |writer| {
            writer.with_long_scripts(|writer| written(writer, &statement, budget))
        })
    }

    /// Runs `statement` on a read connection; `None` when it writes.
    fn read(
        &self,
        statement: &Statement,
        budget: &mut EventBudget,
    ) -> Result<Option<QueryResult>, SqlError> {
        let mut reader = match lock(&self.readers).pop() {
            Some(reader) => reader,
            None => self.new_reader()?,
        };
        let result = answer(&mut reader, statement, budget, true);
        {
            let mut idle = lock(&self.readers);
            if idle.len() < IDLE_READERS {
                idle.push(reader);
            }
        }
        let result = result?;
        if result.is_some() {
            self.still_held()?;
        }
        Ok(result)
    }

    /// A new read connection; in a cluster, one that never checkpoints.
    fn new_reader(&self) -> Result<GuestConn, SqlError> {
        let mut reader = GuestConn::reader(&self.path, self.name.clone()).map_err(|e| {
            SqlError::new(
                SqlErrorKind::Other,
                format!("cannot open a read connection: {e}"),
            )
        })?;
        if self.replicated.is_some() {
            reader.never_checkpoint()?;
        }
        Ok(reader)
    }

    /// In a cluster, whether the copy may still answer: after waiting for
    /// a shipment in flight (a read may have seen its commit), while its
    /// replica holds.
    fn still_held(&self) -> Result<(), SqlError> {
        let Some(replicated) = &self.replicated else {
            return Ok(());
        };
        match &*lock(&replicated.replica) {
            Some(replica) if replica.may_answer() => Ok(()),
            _ => Err(self.not_held()),
        }
    }

    /// The error of a call on a copy that was given up.
    fn not_held(&self) -> SqlError {
        SqlError::new(
            SqlErrorKind::Other,
            format!(
                "D1 database `{}`: this host no longer holds the database (its cluster lease lapsed or a write was not confirmed); retry",
                self.name
            ),
        )
    }

    /// Runs `work` on the writer inside a transaction, capped at
    /// `limit_bytes`; commits when it succeeds, rolls back when it fails.
    pub(super) fn write<T>(
        &self,
        limit_bytes: u64,
        work: impl FnOnce(&mut GuestConn) -> Result<T, SqlError>,
    ) -> Result<T, SqlError> {
        let mut writer = lock(&self.writer);
        self.still_held()?;
        writer.set_limit(limit_bytes)?;
        writer.internal(|c| c.execute_batch("BEGIN IMMEDIATE"))?;
        // Within the call, `last_insert_rowid()` carries from statement to
        // statement, as a batch that inserts a row and then its children
        // relies on.
        writer.forget_last_insert();
        let result = work(&mut writer).and_then(|value| {
            match &self.replicated {
                None => writer.internal(|c| c.execute_batch("COMMIT"))?,
                Some(replicated) => self.commit_replicated(replicated, &mut writer)?,
            }
            Ok(value)
        });
        if result.is_err() && !writer.is_autocommit() {
            // Best effort: when even the rollback fails, SQLite has
            // already abandoned the transaction.
            let _ = writer.internal(|c| c.execute_batch("ROLLBACK"));
        }
        result
    }

    /// Commits the writer's transaction and makes it durable in the
    /// cluster before the call returns; gives the copy up when the
    /// cluster does not confirm it.
    fn commit_replicated(
        &self,
        replicated: &Replicated,
        writer: &mut GuestConn,
    ) -> Result<(), SqlError> {
        // Held until the pages are durable: reads wait here for what they
        // may have seen.
        let mut held = lock(&replicated.replica);
        let Some(replica) = held.as_mut() else {
            return Err(self.not_held());
        };
        writer.internal(|c| c.execute_batch("COMMIT"))?;
        let shipped = replicated.runtime.block_on(replica.ship());
        if let Err(e) = shipped {
            if let Some(replica) = held.take() {
                replica.abandon();
            }
            tracing::warn!(database = %self.name, "a D1 write was not confirmed by the cluster: {e}");
            return Err(unconfirmed(&self.name, &e));
        }
        if replica.wants_snapshot() {
            self.compact(replica, &replicated.runtime, writer);
        }
        Ok(())
    }

    /// Writes a snapshot of the database to its history and drops the
    /// changes it covers. Skipped (for the next write to try) while a
    /// reader keeps the WAL from being emptied; a snapshot that fails
    /// leaves the history as it was, which is still whole.
    fn compact(
        &self,
        replica: &mut Replica,
        runtime: &tokio::runtime::Handle,
        writer: &mut GuestConn,
    ) {
        let checkpointed = writer.internal(|c| {
            c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))
            })
        });
        match checkpointed {
            // Not busy, and the WAL is empty: the file is the whole database.
            Ok((0, 0)) => {}
            Ok(_) => return,
            Err(e) => {
                tracing::warn!(database = %self.name, "checkpointing for a snapshot: {e}");
                return;
            }
        }
        replica.wal_reset();
        let file = match std::fs::read(&self.path) {
            Ok(file) => file,
            Err(e) => {
                tracing::warn!(database = %self.name, "reading the database for a snapshot: {e}");
                return;
            }
        };
        if let Err(e) = runtime.block_on(replica.snapshot(file)) {
            tracing::warn!(database = %self.name, "compacting the database's history: {e}");
        }
    }

    /// The database's size in bytes.
    pub(crate) fn size(&self) -> Result<u64, SqlError> {
        lock(&self.writer).size()
    }
}

/// The error of a write the cluster did not confirm.
fn unconfirmed(name: &str, error: &ShipError) -> SqlError {
    let why = match error {
        ShipError::Deposed => "another host took the database over".to_owned(),
        ShipError::Unconfirmed(why) => format!("the cluster did not confirm it ({why})"),
    };
    SqlError::new(
        SqlErrorKind::Other,
        format!("D1 database `{name}`: the write was not acknowledged: {why}; retry"),
    )
}

/// Runs `statement` on the writer, in its open transaction.
pub(super) fn written(
    writer: &mut GuestConn,
    statement: &Statement,
    budget: &mut EventBudget,
) -> Result<QueryResult, SqlError> {
    answer(writer, statement, budget, false)?
        .ok_or_else(|| SqlError::new(SqlErrorKind::Other, "the database's writer refused a write"))
}

/// Runs `statement` on `conn` and gathers its meta; `None` when a reader
/// (`read_only`) met a write.
fn answer(
    conn: &mut GuestConn,
    statement: &Statement,
    budget: &mut EventBudget,
    read_only: bool,
) -> Result<Option<QueryResult>, SqlError> {
    let started = Instant::now();
    let Some(rows) = conn.run(&statement.sql, &statement.params, budget, read_only)? else {
        return Ok(None);
    };
    let Rows {
        columns,
        rows,
        rows_read,
        rows_written,
        statements,
    } = rows;
    let meta = Meta {
        duration: started.elapsed().as_secs_f64() * 1000.0,
        rows_read,
        rows_written,
        last_row_id: conn.last_insert_rowid(),
        changes: if rows_written > 0 { conn.changes() } else { 0 },
        changed_db: rows_written > 0,
        size_after: conn.size()?,
    };
    Ok(Some(QueryResult {
        columns,
        rows,
        meta,
        statements,
    }))
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every multi-statement change runs in a transaction, so a panic while
    // the lock was held leaves nothing half-done.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
