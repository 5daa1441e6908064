//! One Durable Object's SQLite database: the file, the guard around what
//! guest SQL may do, and the statements the host itself runs (transactions,
//! key-value storage, metadata).
//!
//! The database runs in WAL mode with `synchronous=FULL`: a `COMMIT` that
//! returned is on disk. The actor wraps each batch of events in one
//! transaction and each event in a savepoint; guest SQL cannot open or end
//! transactions itself.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use rusqlite::fallible_iterator::FallibleIterator;
use rusqlite::hooks::{AuthAction, AuthContext, Authorization};
use rusqlite::types::Value;
use rusqlite::{Connection, ErrorCode, OptionalExtension, params_from_iter};

/// Tables guests can neither read nor write: the host's own state.
const INTERNAL_PREFIX: &str = "_verge_";

/// PRAGMAs guests may run: they read schema or state, or check integrity.
/// Everything else (journal mode, sync, page limits...) is the host's.
const ALLOWED_PRAGMAS: &[&str] = &[
    "table_info",
    "table_xinfo",
    "table_list",
    "index_list",
    "index_info",
    "index_xinfo",
    "foreign_key_list",
    "foreign_key_check",
    "page_count",
    "page_size",
    "freelist_count",
    "quick_check",
    "integrity_check",
    "optimize",
    "defer_foreign_keys",
];

/// Why a guest's SQL failed, in the terms of the `sql` interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlErrorKind {
    Syntax,
    Constraint,
    Denied,
    Full,
    Mismatch,
    Other,
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct SqlError {
    pub kind: SqlErrorKind,
    pub message: String,
}

impl SqlError {
    fn new(kind: SqlErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}

/// Every row of a statement's result.
#[derive(Debug, Default)]
pub struct Rows {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Value>>,
    pub rows_read: u64,
    pub rows_written: u64,
}

/// Ordering and bounds for [`ObjectDb::kv_list`].
#[derive(Debug, Default)]
pub struct KvRange {
    pub start: Option<String>,
    pub end: Option<String>,
    pub prefix: Option<String>,
    pub reverse: bool,
    pub limit: Option<u32>,
}

/// The authorizer's view: whether the host itself is running a statement,
/// and why the last guest statement was refused.
#[derive(Default)]
struct Guard {
    internal: AtomicBool,
    denial: Mutex<Option<String>>,
}

/// An open object database.
pub struct ObjectDb {
    conn: Connection,
    guard: Arc<Guard>,
    path: PathBuf,
    limit_bytes: u64,
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
    pub fn open(path: &Path, limit_bytes: u64) -> anyhow::Result<Self> {
        use anyhow::Context;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let mut conn =
            Connection::open(path).with_context(|| format!("opening {}", path.display()))?;
        // Only this connection ever opens the file, so the WAL index can
        // live in its memory: no `-shm` file to create, map and delete per
        // object. A connection still closing in the background (an evicted
        // actor) holds the lock for a moment: wait for it.
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.pragma_update(None, "locking_mode", "EXCLUSIVE")?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", true)?;
        let page_size: i64 = conn.pragma_query_value(None, "page_size", |r| r.get(0))?;
        let page_size = page_size.max(512) as u64;
        conn.pragma_update(
            None,
            "max_page_count",
            (limit_bytes / page_size).max(16) as i64,
        )?;
        let guard = Arc::new(Guard::default());
        let hook_guard = guard.clone();
        conn.authorizer(Some(move |ctx: AuthContext<'_>| {
            authorize(&hook_guard, ctx)
        }))?;
        Ok(Self {
            conn,
            guard,
            path: path.to_owned(),
            limit_bytes,
            transaction_depth: 0,
            in_batch: false,
            lost: None,
            internal_tables: false,
            alarms_changed: false,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs host statements with the authorizer standing aside.
    pub(super) fn internal<T>(
        &mut self,
        run: impl FnOnce(&mut Connection) -> rusqlite::Result<T>,
    ) -> Result<T, SqlError> {
        self.refuse_if_lost()?;
        self.guard.internal.store(true, Ordering::Relaxed);
        let result = run(&mut self.conn);
        self.guard.internal.store(false, Ordering::Relaxed);
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

    /// Starts the transaction of a batch of events.
    pub fn begin_batch(&mut self) -> Result<(), SqlError> {
        self.lost = None;
        self.internal(|c| c.execute_batch("BEGIN IMMEDIATE"))?;
        self.in_batch = true;
        Ok(())
    }

    /// Makes the batch durable: when this returns `Ok`, the writes survive a
    /// crash.
    pub fn commit_batch(&mut self) -> Result<(), SqlError> {
        let result = self.internal(|c| c.execute_batch("COMMIT"));
        self.in_batch = false;
        result
    }

    /// Abandons the batch, after a failed commit.
    pub fn rollback_batch(&mut self) {
        self.lost = None;
        self.internal_tables = false;
        let _ = self.internal(|c| c.execute_batch("ROLLBACK"));
        self.in_batch = false;
    }

    /// Opens the savepoint around one event.
    pub fn begin_event(&mut self) -> Result<(), SqlError> {
        self.transaction_depth = 0;
        self.internal(|c| c.execute_batch("SAVEPOINT verge_event"))
    }

    /// Keeps (`true`) or discards the event's writes, closing any
    /// transaction the guest left open.
    pub fn end_event(&mut self, keep: bool) -> Result<(), SqlError> {
        self.transaction_depth = 0;
        if !keep {
            // The tables may have been created by the writes undone here.
            self.internal_tables = false;
        }
        if self.lost.is_some() {
            // SQLite already undid everything: nothing to keep or discard.
            return Ok(());
        }
        self.internal(|c| {
            if !keep {
                c.execute_batch("ROLLBACK TO verge_event")?;
            }
            c.execute_batch("RELEASE verge_event")
        })
    }

    /// `transaction-begin`: a nested savepoint.
    pub fn transaction_begin(&mut self) -> Result<(), SqlError> {
        self.transaction_depth += 1;
        let name = format!("verge_tx_{}", self.transaction_depth);
        self.internal(|c| c.execute_batch(&format!("SAVEPOINT {name}")))
    }

    /// `transaction-commit` (`keep`) or `transaction-rollback`.
    pub fn transaction_end(&mut self, keep: bool) -> Result<(), SqlError> {
        if !keep {
            self.internal_tables = false;
        }
        if self.transaction_depth == 0 {
            return Err(SqlError::new(SqlErrorKind::Other, "no transaction is open"));
        }
        let name = format!("verge_tx_{}", self.transaction_depth);
        self.transaction_depth -= 1;
        self.internal(|c| {
            if !keep {
                c.execute_batch(&format!("ROLLBACK TO {name}"))?;
            }
            c.execute_batch(&format!("RELEASE {name}"))
        })
    }

    /// Runs guest SQL: every statement of `query`, `params` bound to the
    /// last one, whose rows are returned.
    pub fn exec(&mut self, query: &str, params: &[Value]) -> Result<Rows, SqlError> {
        self.refuse_if_lost()?;
        // Verge's tables may not exist yet, and SQLite reports a missing
        // table before the authorizer sees it: refuse the names outright.
        if query.to_ascii_lowercase().contains(INTERNAL_PREFIX) {
            return Err(SqlError::new(
                SqlErrorKind::Denied,
                format!("names starting with `{INTERNAL_PREFIX}` are internal to Verge"),
            ));
        }
        self.guard.internal.store(false, Ordering::Relaxed);
        *self.guard.denial.lock().expect("denial lock") = None;
        let result = self.exec_unguarded(query, params);
        result.map_err(|e| self.error(e))
    }

    fn exec_unguarded(&self, query: &str, params: &[Value]) -> rusqlite::Result<Rows> {
        let mut batch = rusqlite::Batch::new(&self.conn, query);
        let mut result = Rows::default();
        let mut params_used = false;
        let changes_before = self.conn.total_changes();
        // Each statement is prepared only after the one before it ran, so a
        // script may create a table and then use it.
        while let Some(mut statement) = batch.next()? {
            let bound: &[Value] = if statement.parameter_count() > 0 && !params_used {
                params_used = true;
                params
            } else {
                &[]
            };
            if statement.parameter_count() != bound.len() {
                return Err(rusqlite::Error::InvalidParameterCount(
                    bound.len(),
                    statement.parameter_count(),
                ));
            }
            let columns: Vec<String> = statement.column_names().map(str::to_owned).collect();
            let mut rows = statement.query(params_from_iter(bound.iter()))?;
            let mut values = Vec::new();
            while let Some(row) = rows.next()? {
                let mut record = Vec::with_capacity(columns.len());
                for c in 0..columns.len() {
                    record.push(row.get::<_, Value>(c)?);
                }
                values.push(record);
            }
            drop(rows);
            let scanned = statement.get_status(rusqlite::StatementStatus::FullscanStep) as u64;
            result.rows_read += scanned.max(values.len() as u64);
            result.columns = columns;
            result.rows = values;
        }
        if !params.is_empty() && !params_used {
            return Err(rusqlite::Error::InvalidParameterCount(params.len(), 0));
        }
        result.rows_written = self.conn.total_changes().saturating_sub(changes_before);
        Ok(result)
    }

    /// Size of the database in bytes (pages in use times page size).
    pub fn size(&mut self) -> Result<u64, SqlError> {
        self.internal(|c| {
            let pages: i64 = c.pragma_query_value(None, "page_count", |r| r.get(0))?;
            let page_size: i64 = c.pragma_query_value(None, "page_size", |r| r.get(0))?;
            Ok((pages * page_size) as u64)
        })
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

    pub fn kv_get(&mut self, key: &str) -> Result<Option<Vec<u8>>, SqlError> {
        if !self.has_internal_tables()? {
            return Ok(None);
        }
        self.internal(|c| {
            c.prepare_cached("SELECT value FROM _verge_kv WHERE key = ?1")?
                .query_row([key], |r| r.get(0))
                .optional()
        })
    }

    pub fn kv_put(&mut self, key: &str, value: &[u8]) -> Result<(), SqlError> {
        self.create_internal_tables()?;
        self.internal(|c| {
            c.prepare_cached("INSERT INTO _verge_kv (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value")?
                .execute(rusqlite::params![key, value])
                .map(|_| ())
        })
    }

    pub fn kv_delete(&mut self, key: &str) -> Result<bool, SqlError> {
        if !self.has_internal_tables()? {
            return Ok(false);
        }
        self.internal(|c| {
            c.prepare_cached("DELETE FROM _verge_kv WHERE key = ?1")?
                .execute([key])
                .map(|n| n > 0)
        })
    }

    pub fn kv_delete_all(&mut self) -> Result<(), SqlError> {
        if !self.has_internal_tables()? {
            return Ok(());
        }
        self.internal(|c| c.execute("DELETE FROM _verge_kv", []).map(|_| ()))
    }

    pub fn kv_list(&mut self, range: &KvRange) -> Result<Vec<(String, Vec<u8>)>, SqlError> {
        let order = if range.reverse { "DESC" } else { "ASC" };
        let sql = format!(
            "SELECT key, value FROM _verge_kv
             WHERE (?1 IS NULL OR key >= ?1) AND (?2 IS NULL OR key < ?2)
               AND (?3 IS NULL OR substr(key, 1, length(?3)) = ?3)
             ORDER BY key {order} LIMIT ?4"
        );
        let limit = range.limit.map_or(-1, i64::from);
        if !self.has_internal_tables()? {
            return Ok(Vec::new());
        }
        self.internal(|c| {
            let mut statement = c.prepare_cached(&sql)?;
            let rows = statement.query_map(
                rusqlite::params![range.start, range.end, range.prefix, limit],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            rows.collect()
        })
    }

    /// Host metadata about the object (its name, for one).
    pub fn meta(&mut self, key: &str) -> Result<Option<String>, SqlError> {
        if !self.has_internal_tables()? {
            return Ok(None);
        }
        self.internal(|c| {
            c.prepare_cached("SELECT value FROM _verge_meta WHERE key = ?1")?
                .query_row([key], |r| r.get(0))
                .optional()
        })
    }

    pub fn set_meta(&mut self, key: &str, value: &str) -> Result<(), SqlError> {
        self.create_internal_tables()?;
        self.internal(|c| {
            c.prepare_cached("INSERT INTO _verge_meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value")?
                .execute([key, value])
                .map(|_| ())
        })
    }

    /// A consistent copy of the whole database at `target`.
    pub fn export_to(&mut self, target: &Path) -> Result<(), SqlError> {
        let target = target.to_string_lossy().into_owned();
        self.internal(|c| c.execute("VACUUM INTO ?1", [target]).map(|_| ()))
    }

    /// Translates SQLite's error into the interface's terms, and notes when
    /// SQLite rolled the batch back on its own.
    fn error(&mut self, error: rusqlite::Error) -> SqlError {
        let error = self.describe(error);
        if self.in_batch && self.conn.is_autocommit() && self.lost.is_none() {
            self.lost = Some(error.message.clone());
        }
        error
    }

    /// The error in the interface's terms, with the authorizer's reason
    /// when it refused the statement.
    fn describe(&self, error: rusqlite::Error) -> SqlError {
        use rusqlite::Error as E;
        if let Some(reason) = self.guard.denial.lock().expect("denial lock").take() {
            return SqlError::new(SqlErrorKind::Denied, reason);
        }
        match &error {
            E::SqliteFailure(failure, message) => {
                let message = message.clone().unwrap_or_else(|| failure.to_string());
                match failure.code {
                    ErrorCode::AuthorizationForStatementDenied => {
                        SqlError::new(SqlErrorKind::Denied, format!("not allowed: {message}"))
                    }
                    ErrorCode::ConstraintViolation => {
                        SqlError::new(SqlErrorKind::Constraint, message)
                    }
                    ErrorCode::DiskFull => SqlError::new(
                        SqlErrorKind::Full,
                        format!(
                            "database full: this object reached its limit of {} MiB (limits.object_storage_mb)",
                            self.limit_bytes >> 20
                        ),
                    ),
                    ErrorCode::TypeMismatch | ErrorCode::ParameterOutOfRange => {
                        SqlError::new(SqlErrorKind::Mismatch, message)
                    }
                    ErrorCode::Unknown => SqlError::new(SqlErrorKind::Syntax, message),
                    _ => SqlError::new(SqlErrorKind::Other, message),
                }
            }
            E::InvalidParameterCount(given, expected) => SqlError::new(
                SqlErrorKind::Mismatch,
                format!("the statement takes {expected} parameters, {given} were given"),
            ),
            E::InvalidParameterName(_)
            | E::InvalidColumnType(..)
            | E::ToSqlConversionFailure(_) => {
                SqlError::new(SqlErrorKind::Mismatch, error.to_string())
            }
            _ => SqlError::new(SqlErrorKind::Other, error.to_string()),
        }
    }
}

/// Decides, at prepare time, what a guest statement may do.
fn authorize(guard: &Guard, ctx: AuthContext<'_>) -> Authorization {
    if guard.internal.load(Ordering::Relaxed) {
        return Authorization::Allow;
    }
    match refusal(&ctx.action) {
        None => Authorization::Allow,
        Some(reason) => {
            *guard.denial.lock().expect("denial lock") = Some(reason);
            Authorization::Deny
        }
    }
}

/// Why a guest may not take `action`, or `None` when it may.
fn refusal(action: &AuthAction<'_>) -> Option<String> {
    use AuthAction as A;
    let internal_table = |table: &str| {
        table
            .starts_with(INTERNAL_PREFIX)
            .then(|| format!("`{table}` is internal to Verge"))
    };
    match action {
        A::Attach { .. } | A::Detach { .. } => {
            Some("ATTACH and DETACH are not allowed: an object has exactly one database".into())
        }
        A::Transaction { .. } | A::Savepoint { .. } => Some(
            "BEGIN, COMMIT and SAVEPOINT are managed by Verge: each event is already atomic; \
             use storage.transaction_sync(|| ...) for a nested transaction"
                .into(),
        ),
        A::Pragma {
            pragma_name,
            pragma_value,
        } => {
            let name = pragma_name.to_ascii_lowercase();
            let read_only_user_version = name == "user_version" && pragma_value.is_none();
            (!ALLOWED_PRAGMAS.contains(&name.as_str()) && !read_only_user_version)
                .then(|| format!("PRAGMA {pragma_name} is managed by Verge"))
        }
        A::Function { function_name } if function_name.eq_ignore_ascii_case("load_extension") => {
            Some("loading extensions is not allowed".into())
        }
        A::CreateVtable { module_name, .. } | A::DropVtable { module_name, .. }
            if !module_name.eq_ignore_ascii_case("fts5") =>
        {
            Some(format!(
                "virtual table module `{module_name}` is not available (fts5 is)"
            ))
        }
        A::Read { table_name, .. }
        | A::Insert { table_name }
        | A::Update { table_name, .. }
        | A::Delete { table_name }
        | A::CreateTable { table_name }
        | A::DropTable { table_name }
        | A::CreateIndex { table_name, .. }
        | A::DropIndex { table_name, .. }
        | A::CreateTrigger { table_name, .. }
        | A::DropTrigger { table_name, .. }
        | A::AlterTable { table_name, .. }
        | A::Analyze { table_name } => internal_table(table_name),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> (tempfile::TempDir, ObjectDb) {
        let dir = tempfile::tempdir().unwrap();
        let db = ObjectDb::open(&dir.path().join("o.sqlite"), 1 << 30).unwrap();
        (dir, db)
    }

    #[test]
    fn guest_sql_runs_and_reports_rows() {
        let (_dir, mut db) = db();
        db.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT); INSERT INTO t (name) VALUES ('a'), ('b')", &[]).unwrap();
        let rows = db
            .exec("SELECT id, name FROM t WHERE id > ?", &[Value::Integer(1)])
            .unwrap();
        assert_eq!(rows.columns, ["id", "name"]);
        assert_eq!(
            rows.rows,
            vec![vec![Value::Integer(2), Value::Text("b".into())]]
        );
        let written = db.exec("UPDATE t SET name = 'z'", &[]).unwrap();
        assert_eq!(written.rows_written, 2);
    }

    #[test]
    fn the_authorizer_refuses_what_it_should() {
        let (_dir, mut db) = db();
        for (sql, needle) in [
            ("ATTACH 'x.db' AS x", "ATTACH"),
            ("BEGIN", "transaction_sync"),
            ("SAVEPOINT s", "transaction_sync"),
            ("PRAGMA journal_mode = DELETE", "journal_mode"),
            ("PRAGMA synchronous = OFF", "synchronous"),
            ("SELECT * FROM _verge_kv", "internal"),
            ("DROP TABLE _verge_meta", "internal"),
            ("SELECT load_extension('x')", "extensions"),
        ] {
            let error = db.exec(sql, &[]).unwrap_err();
            assert_eq!(error.kind, SqlErrorKind::Denied, "{sql}: {error}");
            assert!(error.message.contains(needle), "{sql}: {error}");
        }
        db.exec("PRAGMA table_list", &[]).unwrap();
    }

    #[test]
    fn savepoints_roll_back_an_event_and_keep_the_batch() {
        let (_dir, mut db) = db();
        db.exec("CREATE TABLE t (v INTEGER)", &[]).unwrap();
        db.begin_batch().unwrap();
        db.begin_event().unwrap();
        db.exec("INSERT INTO t VALUES (1)", &[]).unwrap();
        db.end_event(true).unwrap();
        db.begin_event().unwrap();
        db.exec("INSERT INTO t VALUES (2)", &[]).unwrap();
        db.end_event(false).unwrap();
        db.commit_batch().unwrap();
        let rows = db.exec("SELECT v FROM t", &[]).unwrap();
        assert_eq!(rows.rows, vec![vec![Value::Integer(1)]]);
    }

    #[test]
    fn kv_lists_by_prefix_range_and_order() {
        let (_dir, mut db) = db();
        for key in ["a1", "a2", "a3", "b1"] {
            db.kv_put(key, key.as_bytes()).unwrap();
        }
        let keys = |range: KvRange, db: &mut ObjectDb| -> Vec<String> {
            db.kv_list(&range)
                .unwrap()
                .into_iter()
                .map(|(k, _)| k)
                .collect()
        };
        assert_eq!(
            keys(
                KvRange {
                    prefix: Some("a".into()),
                    ..Default::default()
                },
                &mut db
            ),
            ["a1", "a2", "a3"]
        );
        assert_eq!(
            keys(
                KvRange {
                    start: Some("a2".into()),
                    end: Some("b1".into()),
                    ..Default::default()
                },
                &mut db
            ),
            ["a2", "a3"]
        );
        assert_eq!(
            keys(
                KvRange {
                    reverse: true,
                    limit: Some(2),
                    ..Default::default()
                },
                &mut db
            ),
            ["b1", "a3"]
        );
        assert!(db.kv_delete("a1").unwrap());
        assert_eq!(db.kv_get("a2").unwrap().as_deref(), Some(b"a2".as_slice()));
    }

    #[test]
    fn a_full_database_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = ObjectDb::open(&dir.path().join("o.sqlite"), 64 << 10).unwrap();
        db.exec("CREATE TABLE t (b BLOB)", &[]).unwrap();
        let error = db
            .exec("INSERT INTO t VALUES (zeroblob(1000000))", &[])
            .unwrap_err();
        assert_eq!(error.kind, SqlErrorKind::Full, "{error}");
        assert!(error.message.contains("database full"));
    }
}
