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

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use anyhow::Context;
use rusqlite::types::Value;

use super::connection::GuestConn;
use crate::objects::storage::{
    EventBudget, MAX_RESULT_BYTES, Rows, SqlError, SqlErrorKind, result_too_large, rows_bytes,
};

/// Idle read connections kept open; more are opened when reads overlap,
/// and closed after.
const IDLE_READERS: usize = 4;

/// One statement and its parameters.
#[derive(Debug, Clone)]
pub(crate) struct Statement {
    pub(crate) sql: String,
    pub(crate) params: Vec<Value>,
}

/// D1's `meta`: what a statement did.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
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
#[derive(Debug, Default)]
pub(crate) struct QueryResult {
    pub(crate) columns: Vec<String>,
    pub(crate) rows: Vec<Vec<Value>>,
    pub(crate) meta: Meta,
    /// Statements run (several for a script).
    pub(crate) statements: u32,
}

/// An open D1 database.
pub(crate) struct D1Database {
    path: PathBuf,
    name: Arc<str>,
    writer: Mutex<GuestConn>,
    readers: Mutex<Vec<GuestConn>>,
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
            writer: Mutex::new(writer),
            readers: Mutex::new(Vec::new()),
        })
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
            None => GuestConn::reader(&self.path, self.name.clone()).map_err(|e| {
                SqlError::new(
                    SqlErrorKind::Other,
                    format!("cannot open a read connection: {e}"),
                )
            })?,
        };
        let result = answer(&mut reader, statement, budget, true);
        let mut idle = lock(&self.readers);
        if idle.len() < IDLE_READERS {
            idle.push(reader);
        }
        result
    }

    /// Runs `work` on the writer inside a transaction, capped at
    /// `limit_bytes`; commits when it succeeds, rolls back when it fails.
    pub(super) fn write<T>(
        &self,
        limit_bytes: u64,
        work: impl FnOnce(&mut GuestConn) -> Result<T, SqlError>,
    ) -> Result<T, SqlError> {
        let mut writer = lock(&self.writer);
        writer.set_limit(limit_bytes)?;
        writer.internal(|c| c.execute_batch("BEGIN IMMEDIATE"))?;
        // Within the call, `last_insert_rowid()` carries from statement to
        // statement, as a batch that inserts a row and then its children
        // relies on.
        writer.forget_last_insert();
        let result = work(&mut writer).and_then(|value| {
            writer.internal(|c| c.execute_batch("COMMIT"))?;
            Ok(value)
        });
        if result.is_err() && !writer.is_autocommit() {
            // Best effort: when even the rollback fails, SQLite has
            // already abandoned the transaction.
            let _ = writer.internal(|c| c.execute_batch("ROLLBACK"));
        }
        result
    }

    /// The database's size in bytes.
    pub(crate) fn size(&self) -> Result<u64, SqlError> {
        lock(&self.writer).size()
    }
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
