//! One connection to a D1 database, set up to run guest SQL under the same
//! rules as a Durable Object's: the authorizer, the SQL time budget, the
//! `sqlite3_limit`s and the error mapping of `objects/storage/`.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rusqlite::config::DbConfig;
use rusqlite::types::Value;
use rusqlite::{Connection, ErrorCode, OpenFlags};

use crate::objects::storage::{
    Deadline, EventBudget, Failure, Guard, Rows, SqlError, harden, page_bytes, page_size,
    refuse_internal_names, run_script,
};
use crate::storage::synchronous;

/// How long a connection waits for another one's lock (a reader for a
/// checkpoint, the writer for a reader's snapshot) before it fails.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// A connection with its authorizer and budget deadline.
pub(super) struct GuestConn {
    conn: Connection,
    guard: Arc<Guard>,
    deadline: Arc<Deadline>,
    page_size: u64,
    /// The database's name, for errors.
    name: Arc<str>,
    /// The size limit `max_page_count` is set to (writer only).
    limit_bytes: u64,
}

impl GuestConn {
    /// The database's one writer: creates the file, WAL, `synchronous`
    /// FULL, so an answered write is on disk.
    pub(super) fn writer(path: &Path, name: Arc<str>) -> rusqlite::Result<Self> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", synchronous())?;
        Self::hardened(conn, name)
    }

    /// A read-only connection, for reads that run beside the writer.
    pub(super) fn reader(path: &Path, name: Arc<str>) -> rusqlite::Result<Self> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        Self::hardened(conn, name)
    }

    /// Makes sure this connection never checkpoints the WAL, neither
    /// after a commit nor when it closes: in a cluster the WAL is what the
    /// replica ships from, and only it may empty it.
    pub(super) fn never_checkpoint(&mut self) -> Result<(), SqlError> {
        self.internal(|c| {
            c.pragma_update(None, "wal_autocheckpoint", 0)?;
            c.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)?;
            Ok(())
        })
    }

    fn hardened(mut conn: Connection, name: Arc<str>) -> rusqlite::Result<Self> {
        let page_size = page_size(&conn)?;
        let (guard, deadline) = harden(&mut conn)?;
        Ok(Self {
            conn,
            guard,
            deadline,
            page_size,
            name,
            limit_bytes: u64::MAX,
        })
    }

    /// Runs guest SQL (every statement of `sql`, `params` bound to the one
    /// with placeholders) within `budget`. On a reader (`read_only`), a
    /// statement that would write stops the script before it runs and
    /// the answer is `None`: run it on the writer.
    pub(super) fn run(
        &mut self,
        sql: &str,
        params: &[Value],
        budget: &mut EventBudget,
        read_only: bool,
    ) -> Result<Option<Rows>, SqlError> {
        refuse_internal_names(sql)?;
        self.guard.set_internal(false);
        self.guard.clear_denial();
        let conn = &self.conn;
        let ran = budget.run(&self.deadline, || {
            run_script(conn, sql, params, || match read_only {
                true => Err(needs_writer()),
                false => Ok(()),
            })
        });
        match ran {
            None => Err(SqlError::out_of_time(budget.limit, "this request")),
            Some(Ok(rows)) => Ok(Some(rows)),
            Some(Err(Failure::Sqlite(rusqlite::Error::SqliteFailure(e, _))))
                if read_only && e.code == ErrorCode::ReadOnly =>
            {
                Ok(None)
            }
            Some(Err(failure)) => Err(failure.into_error(|e| self.describe(e, budget))),
        }
    }

    /// SQLite's error in the interface's terms.
    fn describe(&self, error: rusqlite::Error, budget: &EventBudget) -> SqlError {
        let interrupted = matches!(&error, rusqlite::Error::SqliteFailure(e, _) if e.code == ErrorCode::OperationInterrupted);
        if interrupted && budget.spent() {
            return SqlError::out_of_time(budget.limit, "this request");
        }
        SqlError::describe(error, self.guard.take_denial(), || self.full())
    }

    /// The error of a write past the database's size limit.
    pub(super) fn full(&self) -> SqlError {
        SqlError::full(
            &format!("D1 database `{}`", self.name),
            self.limit_bytes,
            "limits.d1_database_mb",
        )
    }

    /// Runs a host statement (transaction control, settings) with the
    /// authorizer standing aside.
    pub(super) fn internal<T>(
        &mut self,
        run: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, SqlError> {
        self.guard.set_internal(true);
        let result = run(&self.conn);
        self.guard.set_internal(false);
        result.map_err(|e| SqlError::describe(e, None, || self.full()))
    }

    /// Caps the file at `limit_bytes`: SQLite itself then refuses to grow
    /// it further (`SQLITE_FULL`), which rolls back the write's
    /// transaction — the write's alone, as every D1 write call has its own.
    pub(super) fn set_limit(&mut self, limit_bytes: u64) -> Result<(), SqlError> {
        if self.limit_bytes != limit_bytes {
            let pages = (limit_bytes / self.page_size).max(1) as i64;
            self.internal(|c| c.pragma_update(None, "max_page_count", pages))?;
            self.limit_bytes = limit_bytes;
        }
        Ok(())
    }

    /// The database's size in bytes.
    pub(super) fn size(&mut self) -> Result<u64, SqlError> {
        let page_size = self.page_size;
        self.internal(|c| page_bytes(c, page_size))
    }

    /// Forgets the rowid of an earlier call's insert (another request's,
    /// maybe), so that `last_row_id` is one this call inserted, or 0.
    pub(super) fn forget_last_insert(&mut self) {
        // SAFETY: the handle is this open connection's, used on this
        // thread only (its owner holds it mutably), and the call only sets
        // an integer SQLite keeps per connection.
        unsafe { rusqlite::ffi::sqlite3_set_last_insert_rowid(self.conn.handle(), 0) };
    }

    /// The rowid of the last row this connection inserted.
    pub(super) fn last_insert_rowid(&self) -> i64 {
        self.conn.last_insert_rowid()
    }

    /// Rows changed by the last statement.
    pub(super) fn changes(&self) -> u64 {
        self.conn.changes()
    }

    /// Whether no transaction is open (SQLite rolled one back itself, or
    /// none was begun).
    pub(super) fn is_autocommit(&self) -> bool {
        self.conn.is_autocommit()
    }

    /// Raises SQLite's statement-length limit for the operator's own
    /// scripts (an imported dump is one long script) while `run` runs.
    pub(super) fn with_long_scripts<T>(&mut self, run: impl FnOnce(&mut Self) -> T) -> T {
        use rusqlite::limits::Limit;
        let before = self.conn.limit(Limit::SQLITE_LIMIT_SQL_LENGTH);
        let _ = self
            .conn
            .set_limit(Limit::SQLITE_LIMIT_SQL_LENGTH, i32::MAX);
        let result = run(self);
        let _ = before.map(|before| self.conn.set_limit(Limit::SQLITE_LIMIT_SQL_LENGTH, before));
        result
    }
}

/// What a reader's `before_write` answers: the statement needs the writer.
fn needs_writer() -> rusqlite::Error {
    rusqlite::Error::SqliteFailure(
        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_READONLY),
        Some("a write runs on the database's writer".into()),
    )
}
