//! One Durable Object's SQLite database: how the file is opened and kept,
//! and the statements the host itself runs on it.
//!
//! The database runs in WAL mode with `synchronous=FULL`: a `COMMIT` that
//! returned is on disk. The batch loop wraps each batch of events in one
//! transaction and each event in a savepoint (`transaction.rs`); guest SQL
//! (`exec.rs`) cannot open or end transactions itself, nor touch Verge's
//! own tables (`authorizer.rs`), nor run past its time budget
//! (`budget.rs`). The key-value API lives in `kv.rs`, the alarms table in
//! `../alarms/table.rs`.
//!
//! Guests are strangers, so the connection is set up defensively:
//! `sqlite3_limit`s on lengths, columns, expression depth and variables;
//! `trusted_schema=OFF` and `SQLITE_DBCONFIG_DEFENSIVE` (no writable
//! schema, read-only FTS5 shadow tables); no TEMP objects. The size limit
//! is enforced per statement (`bounded`), below SQLite's own hard cap: when
//! SQLite itself runs out of room it rolls back the whole transaction, and
//! with it every other event of the batch.

mod authorizer;
mod budget;
mod error;
mod exec;
mod kv;
mod transaction;
pub(crate) mod wal;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::Context;
use rusqlite::config::DbConfig;
use rusqlite::hooks::AuthContext;
use rusqlite::{Connection, OptionalExtension};

pub(crate) use authorizer::Guard;
pub(crate) use budget::{Deadline, EventBudget};
pub(crate) use error::{SqlError, SqlErrorKind};
pub(crate) use exec::{
    Failure, MAX_RESULT_BYTES, Rows, refuse_internal_names, result_too_large, rows_bytes,
    run_script,
};
pub(crate) use kv::KvRange;

/// Room SQLite itself allows past an object's limit, so that one statement
/// going over it fails alone (see `bounded`) instead of SQLite rolling back
/// the whole batch. A single statement that writes more than this at once
/// still loses its batch.
const HARD_CAP_SLACK_BYTES: u64 = 64 << 20;

/// `sqlite3_limit`s for guest SQL: generous for real work, small enough
/// that no single statement can make the host allocate or recurse without
/// bound.
const SQL_LIMITS: &[(rusqlite::limits::Limit, i32)] = {
    use rusqlite::limits::Limit as L;
    &[
        (L::SQLITE_LIMIT_LENGTH, 16 << 20),
        (L::SQLITE_LIMIT_SQL_LENGTH, 1 << 20),
        (L::SQLITE_LIMIT_COLUMN, 1000),
        (L::SQLITE_LIMIT_EXPR_DEPTH, 100),
        (L::SQLITE_LIMIT_COMPOUND_SELECT, 100),
        (L::SQLITE_LIMIT_FUNCTION_ARG, 100),
        (L::SQLITE_LIMIT_VARIABLE_NUMBER, 1000),
        (L::SQLITE_LIMIT_TRIGGER_DEPTH, 20),
    ]
};

/// An open object database.
pub(crate) struct ObjectDb {
    conn: Connection,
    guard: Arc<Guard>,
    limit_bytes: u64,
    /// Fixed for the life of the file.
    page_size: u64,
    /// What the progress handler checks.
    deadline: Arc<Deadline>,
    /// What is left of the current event's SQL time.
    budget: EventBudget,
    /// Open `transaction-begin`s of the current event.
    transaction_depth: u32,
    /// Whether a batch transaction is open.
    in_batch: bool,
    /// Set when SQLite rolled the whole batch back on its own (it does on
    /// a full disk, some I/O errors): why. Nothing more may run in the
    /// batch, and its commit fails with this reason.
    lost: Option<String>,
    /// Whether Verge's own tables are known to exist. They are created on
    /// first write, inside the event's transaction, so a new object costs
    /// no commit of its own.
    internal_tables: bool,
    /// Whether the current batch wrote alarms (the alarm index then needs
    /// the object's new set).
    pub(super) alarms_changed: bool,
}

impl ObjectDb {
    /// Opens (creating) the database at `path`, capped at `limit_bytes`.
    pub(crate) fn open(path: &Path, limit_bytes: u64) -> anyhow::Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let mut conn =
            Connection::open(path).with_context(|| format!("opening {}", path.display()))?;
        // Only this connection ever opens the file, so the WAL index can
        // live in its memory: no `-shm` file to create, map and delete per
        // object. (A connection still closing in the background would hold
        // the lock, but actors wait for those closes before they open; see
        // `closing.rs`.)
        conn.busy_timeout(std::time::Duration::from_secs(1))?;
        conn.pragma_update(None, "locking_mode", "EXCLUSIVE")?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", crate::storage::synchronous())?;
        let page_size = page_size(&conn)?;
        conn.pragma_update(
            None,
            "max_page_count",
            (limit_bytes.saturating_add(HARD_CAP_SLACK_BYTES) / page_size) as i64,
        )?;
        let (guard, deadline) = harden(&mut conn)?;
        Ok(Self {
            conn,
            guard,
            limit_bytes,
            page_size,
            deadline,
            budget: EventBudget::unlimited(),
            transaction_depth: 0,
            in_batch: false,
            lost: None,
            internal_tables: false,
            alarms_changed: false,
        })
    }

    /// Opens the database as a cluster replica: the owner decides when the
    /// WAL is folded into the file, because every frame in it must first
    /// be read and shipped (`wal.rs`); it starts empty.
    pub(crate) fn open_replica(path: &Path, limit_bytes: u64) -> anyhow::Result<Self> {
        let mut db = Self::open(path, limit_bytes)?;
        db.internal(|c| {
            c.pragma_update(None, "wal_autocheckpoint", 0)?;
            c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        })
        .context("setting up the replica's WAL")?;
        Ok(db)
    }

    /// The whole database file, after folding the WAL into it (which
    /// empties the WAL: a replica's reader starts over).
    pub(crate) fn checkpointed_file(&mut self) -> anyhow::Result<Vec<u8>> {
        self.internal(|c| c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())))
            .context("checkpointing the WAL")?;
        let path = self.conn.path().context("the database has no file")?;
        std::fs::read(path).with_context(|| format!("reading {path}"))
    }

    /// Runs host statements with the authorizer standing aside.
    pub(super) fn internal<T>(
        &mut self,
        run: impl FnOnce(&mut Connection) -> rusqlite::Result<T>,
    ) -> Result<T, SqlError> {
        self.refuse_if_lost()?;
        self.guard.set_internal(true);
        let result = run(&mut self.conn);
        self.guard.set_internal(false);
        result.map_err(|e| self.error(e))
    }

    fn refuse_if_lost(&self) -> Result<(), SqlError> {
        match &self.lost {
            Some(why) => Err(SqlError::new(
                SqlErrorKind::Other,
                format!("this batch's transaction was rolled back by SQLite after: {why}"),
            )),
            None => Ok(()),
        }
    }

    /// Gives the next event its SQL time.
    pub(crate) fn set_budget(&mut self, budget: EventBudget) {
        self.budget = budget;
    }

    /// Translates SQLite's error into the interface's terms, and notes when
    /// SQLite rolled the batch back on its own.
    fn error(&mut self, error: rusqlite::Error) -> SqlError {
        let interrupted = matches!(&error, rusqlite::Error::SqliteFailure(e, _) if e.code == rusqlite::ErrorCode::OperationInterrupted);
        let error = if interrupted && self.budget.spent() {
            self.budget_spent()
        } else {
            SqlError::describe(error, self.guard.take_denial(), || self.full())
        };
        if self.in_batch && self.conn.is_autocommit() && self.lost.is_none() {
            self.lost = Some(error.message.clone());
        }
        error
    }

    /// The error of a statement stopped by the event's SQL budget.
    fn budget_spent(&self) -> SqlError {
        SqlError::out_of_time(self.budget.limit, "this event")
    }

    /// The error of a write past the object's size limit.
    fn full(&self) -> SqlError {
        SqlError::full("this object", self.limit_bytes, "limits.object_storage_mb")
    }

    /// Size of the database in bytes (pages in use times page size).
    pub(crate) fn size(&mut self) -> Result<u64, SqlError> {
        let page_size = self.page_size;
        self.internal(|c| page_bytes(c, page_size))
    }

    /// Runs a host write on the guest's behalf (setting an alarm) under the
    /// same size limit as guest SQL.
    pub(super) fn bounded<T>(
        &mut self,
        write: impl FnOnce(&mut Self) -> Result<T, SqlError>,
    ) -> Result<T, SqlError> {
        let before = self.begin_write().map_err(|e| self.error(e))?;
        let result = write(self);
        self.end_write(before, result)
    }

    /// [`bounded`](Self::bounded) for a write known to grow the database
    /// by at most `growth` bytes: far enough below the limit it cannot
    /// reach it, and runs without the savepoint and the second size check
    /// (a key-value put, on every reservation of the inventory counter).
    pub(super) fn bounded_by<T>(
        &mut self,
        growth: u64,
        write: impl FnOnce(&mut Self) -> Result<T, SqlError>,
    ) -> Result<T, SqlError> {
        if self.size()?.saturating_add(growth) <= self.limit_bytes {
            return write(self);
        }
        self.bounded(write)
    }

    /// Opens a savepoint around a write, so that it can be undone alone;
    /// returns the database's size before it. Takes `&self`, so that guest
    /// SQL can open it halfway through a script.
    fn begin_write(&self) -> rusqlite::Result<u64> {
        self.guard.set_internal(true);
        let before = page_bytes(&self.conn, self.page_size).and_then(|before| {
            run_cached(&self.conn, "SAVEPOINT verge_write")?;
            Ok(before)
        });
        self.guard.set_internal(false);
        before
    }

    /// Closes the savepoint of `begin_write`, undoing the write when it
    /// failed or grew the database past the object's limit: the statement
    /// fails with `full`, and the rest of the event and its batch go on.
    fn end_write<T>(&mut self, before: u64, result: Result<T, SqlError>) -> Result<T, SqlError> {
        let result = result.and_then(|written| {
            let after = self.size()?;
            if after > before && after > self.limit_bytes {
                return Err(self.full());
            }
            Ok(written)
        });
        // After SQLite rolled the whole transaction back there is no
        // savepoint left to close.
        if self.lost.is_none() {
            let keep = result.is_ok();
            self.internal(|c| {
                if !keep {
                    run_cached(c, "ROLLBACK TO verge_write")?;
                }
                run_cached(c, "RELEASE verge_write")
            })?;
        }
        result
    }

    /// Whether Verge's tables exist (reads of a new object find nothing).
    fn has_internal_tables(&mut self) -> Result<bool, SqlError> {
        if !self.internal_tables {
            self.internal_tables = self.internal(|c| {
                c.query_row(
                    "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE name = '_verge_meta')",
                    [],
                    |r| r.get(0),
                )
            })?;
        }
        Ok(self.internal_tables)
    }

    /// Creates Verge's tables if they are missing, in the open transaction.
    fn create_internal_tables(&mut self) -> Result<(), SqlError> {
        if !self.has_internal_tables()? {
            self.internal(|c| {
                c.execute_batch(
                    "CREATE TABLE IF NOT EXISTS _verge_kv (key TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID;
                     CREATE TABLE IF NOT EXISTS _verge_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;",
                )
            })?;
            self.internal_tables = true;
        }
        Ok(())
    }

    /// Host metadata about the object (its name, for one).
    pub(crate) fn meta(&mut self, key: &str) -> Result<Option<String>, SqlError> {
        if !self.has_internal_tables()? {
            return Ok(None);
        }
        self.internal(|c| {
            c.prepare_cached("SELECT value FROM _verge_meta WHERE key = ?1")?
                .query_row([key], |r| r.get(0))
                .optional()
        })
    }

    pub(crate) fn set_meta(&mut self, key: &str, value: &str) -> Result<(), SqlError> {
        self.create_internal_tables()?;
        self.internal(|c| {
            c.prepare_cached("INSERT INTO _verge_meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value")?
                .execute([key, value])
                .map(|_| ())
        })
    }

    /// A consistent copy of the whole database at `target`.
    pub(crate) fn export_to(&mut self, target: &Path) -> Result<(), SqlError> {
        let target = target.to_string_lossy().into_owned();
        self.internal(|c| c.execute("VACUUM INTO ?1", [target]).map(|_| ()))
    }
}

/// Sets up a connection that runs guest SQL: foreign keys on, untrusted
/// schema, defensive mode, the `SQL_LIMITS`, the authorizer and the
/// budget's progress handler. Returns what the host steers them with.
/// Shared with D1 databases (`storage/d1/`), which run guest SQL under the
/// same rules.
pub(crate) fn harden(conn: &mut Connection) -> rusqlite::Result<(Arc<Guard>, Arc<Deadline>)> {
    conn.pragma_update(None, "foreign_keys", true)?;
    conn.pragma_update(None, "trusted_schema", false)?;
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_DEFENSIVE, true)?;
    for (limit, value) in SQL_LIMITS {
        conn.set_limit(*limit, *value)?;
    }
    let guard = Arc::new(Guard::default());
    let hook_guard = guard.clone();
    conn.authorizer(Some(move |ctx: AuthContext<'_>| hook_guard.authorize(ctx)))?;
    let deadline = Deadline::new();
    let hook_deadline = deadline.clone();
    conn.progress_handler(
        budget::STEPS_PER_CHECK,
        Some(move || hook_deadline.passed()),
    )?;
    Ok((guard, deadline))
}

/// The database's page size, fixed for the life of the file.
pub(crate) fn page_size(conn: &Connection) -> rusqlite::Result<u64> {
    let page_size: i64 = conn.pragma_query_value(None, "page_size", |r| r.get(0))?;
    Ok(page_size.max(512) as u64)
}

/// Pages in use times page size.
pub(crate) fn page_bytes(conn: &Connection, page_size: u64) -> rusqlite::Result<u64> {
    // Cached: a write checks the size twice, and a reparse each time
    // costs more than the check.
    let pages: i64 = conn
        .prepare_cached("PRAGMA page_count")?
        .query_row([], |r| r.get(0))?;
    Ok(pages.max(0) as u64 * page_size)
}

/// Runs a statement that takes no parameters and returns no rows, from
/// the statement cache: the savepoints around every write.
fn run_cached(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(drop)
}

/// Locks an object's database. Only its actor and its instance use it, one
/// at a time, and every multi-statement change runs in a transaction, so a
/// panic while it was held leaves nothing half-done.
pub(crate) fn lock(db: &Mutex<ObjectDb>) -> MutexGuard<'_, ObjectDb> {
    db.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Removes a database and its WAL and shared-memory files.
pub(crate) fn remove_database_files(path: &Path) -> anyhow::Result<()> {
    for suffix in ["", "-wal", "-shm"] {
        let file = PathBuf::from(format!("{}{suffix}", path.display()));
        match std::fs::remove_file(&file) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(e).with_context(|| format!("removing {}", file.display()));
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub(crate) fn db() -> (tempfile::TempDir, ObjectDb) {
        let dir = tempfile::tempdir().unwrap();
        let db = ObjectDb::open(&dir.path().join("o.sqlite"), 1 << 30).unwrap();
        (dir, db)
    }

    #[test]
    fn meta_reads_nothing_until_written_and_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("o.sqlite");
        {
            let mut db = ObjectDb::open(&path, 1 << 30).unwrap();
            assert_eq!(db.meta("name").unwrap(), None);
            db.set_meta("name", "ada").unwrap();
        }
        let mut db = ObjectDb::open(&path, 1 << 30).unwrap();
        assert_eq!(db.meta("name").unwrap().as_deref(), Some("ada"));
        drop(db);
        remove_database_files(&path).unwrap();
        assert!(!path.exists());
    }
}
