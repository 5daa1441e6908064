//! Guest SQL: every statement of a script, under the authorizer, with the
//! rows of the last one. [`run_script`] is shared with D1 databases.

use rusqlite::Connection;
use rusqlite::fallible_iterator::FallibleIterator;
use rusqlite::params_from_iter;
use rusqlite::types::Value;

use super::authorizer::VERGE_PREFIX;
use super::{ObjectDb, SqlError, SqlErrorKind};

/// Every row of a statement's result.
#[derive(Debug, Default)]
pub(crate) struct Rows {
    pub(crate) columns: Vec<String>,
    pub(crate) rows: Vec<Vec<Value>>,
    pub(crate) rows_read: u64,
    pub(crate) rows_written: u64,
    /// Statements the script ran.
    pub(crate) statements: u32,
}

/// The most one `exec` may return, summed over every value of every row:
/// the host holds the whole result, and copies it into the guest, so a
/// query must not be able to make it hold gigabytes.
pub(crate) const MAX_RESULT_BYTES: usize = 32 << 20;

/// Why guest SQL stopped short of SQLite's own errors.
pub(crate) enum Failure {
    Sqlite(rusqlite::Error),
    TooLarge,
}

impl From<rusqlite::Error> for Failure {
    fn from(error: rusqlite::Error) -> Self {
        Self::Sqlite(error)
    }
}

impl Failure {
    /// The failure in the interface's terms; `sqlite` translates SQLite's
    /// own errors (it knows the connection's authorizer and limits).
    pub(crate) fn into_error(self, sqlite: impl FnOnce(rusqlite::Error) -> SqlError) -> SqlError {
        match self {
            Failure::Sqlite(e) => sqlite(e),
            Failure::TooLarge => result_too_large(),
        }
    }
}

/// The error of a result past [`MAX_RESULT_BYTES`].
pub(crate) fn result_too_large() -> SqlError {
    SqlError::new(
        SqlErrorKind::TooLarge,
        format!(
            "the result is larger than {} MiB: select fewer rows or columns (LIMIT)",
            MAX_RESULT_BYTES >> 20
        ),
    )
}

/// Refuses SQL that names Verge's internal tables. They may not exist yet,
/// and SQLite reports a missing table before the authorizer sees it, so
/// the names are refused outright. (`_cf_` tables never exist: the
/// authorizer refuses to create them, so it alone guards them.)
pub(crate) fn refuse_internal_names(query: &str) -> Result<(), SqlError> {
    if query.to_ascii_lowercase().contains(VERGE_PREFIX) {
        return Err(SqlError::new(
            SqlErrorKind::Denied,
            format!("names starting with `{VERGE_PREFIX}` are internal to Verge"),
        ));
    }
    Ok(())
}

impl ObjectDb {
    /// Runs guest SQL: every statement of `query`, `params` bound to the
    /// last one, whose rows are returned. The statements run within the
    /// event's SQL budget; writes within the object's size limit.
    pub(crate) fn exec(&mut self, query: &str, params: &[Value]) -> Result<Rows, SqlError> {
        self.refuse_if_lost()?;
        refuse_internal_names(query)?;
        self.guard.set_internal(false);
        self.guard.clear_denial();
        let mut budget = self.budget;
        let mut write_began = None;
        let ran = budget.run(&self.deadline, || {
            // The write savepoint opens at the first statement that may
            // write, noting the size before it.
            run_script(&self.conn, query, params, || {
                if write_began.is_none() {
                    write_began = Some(self.begin_write()?);
                }
                Ok(())
            })
        });
        self.budget = budget;
        let result = match ran {
            None => Err(self.budget_spent()),
            Some(Ok(rows)) => Ok(rows),
            Some(Err(failure)) => Err(failure.into_error(|e| self.error(e))),
        };
        match write_began {
            Some(before) => self.end_write(before, result),
            None => result,
        }
    }
}

/// Runs every statement of `query`, each prepared only after the one
/// before it ran (so a script may create a table and then use it), binding
/// `params` to the first statement that has placeholders; returns the rows
/// of the last. `before_write` runs before each statement that may write:
/// an object opens its write savepoint there, a D1 read connection refuses.
/// The caller has armed the budget and the authorizer.
pub(crate) fn run_script(
    conn: &Connection,
    query: &str,
    params: &[Value],
    mut before_write: impl FnMut() -> rusqlite::Result<()>,
) -> Result<Rows, Failure> {
    let mut batch = rusqlite::Batch::new(conn, query);
    let mut result = Rows::default();
    let mut params_used = false;
    let mut result_bytes = 0;
    let changes_before = conn.total_changes();
    while let Some(mut statement) = batch.next()? {
        if !statement.readonly() {
            before_write()?;
        }
        result.statements += 1;
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
            )
            .into());
        }
        let columns: Vec<String> = statement.column_names().map(str::to_owned).collect();
        let mut rows = statement.query(params_from_iter(bound.iter()))?;
        let mut values = Vec::new();
        while let Some(row) = rows.next()? {
            let mut record = Vec::with_capacity(columns.len());
            for c in 0..columns.len() {
                let value = row.get::<_, Value>(c)?;
                result_bytes += value_bytes(&value);
                record.push(value);
            }
            if result_bytes > MAX_RESULT_BYTES {
                return Err(Failure::TooLarge);
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
        return Err(rusqlite::Error::InvalidParameterCount(params.len(), 0).into());
    }
    result.rows_written = conn.total_changes().saturating_sub(changes_before);
    Ok(result)
}

/// What rows weigh in a result.
pub(crate) fn rows_bytes(rows: &[Vec<Value>]) -> usize {
    rows.iter().flatten().map(value_bytes).sum()
}

/// What a value weighs in a result.
fn value_bytes(value: &Value) -> usize {
    match value {
        Value::Text(text) => text.len(),
        Value::Blob(blob) => blob.len(),
        Value::Null | Value::Integer(_) | Value::Real(_) => 8,
    }
}

#[cfg(test)]
mod tests {
    use rusqlite::types::Value;

    use super::super::tests::db;
    use super::super::{ObjectDb, SqlErrorKind};

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
