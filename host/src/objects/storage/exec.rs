//! Guest SQL: every statement of a script, under the authorizer, with the
//! rows of the last one.

use rusqlite::fallible_iterator::FallibleIterator;
use rusqlite::params_from_iter;
use rusqlite::types::Value;

use super::authorizer::INTERNAL_PREFIX;
use super::{ObjectDb, SqlError, SqlErrorKind};

/// Every row of a statement's result.
#[derive(Debug, Default)]
pub(crate) struct Rows {
    pub(crate) columns: Vec<String>,
    pub(crate) rows: Vec<Vec<Value>>,
    pub(crate) rows_read: u64,
    pub(crate) rows_written: u64,
}

/// The most one `exec` may return, summed over every value of every row:
/// the host holds the whole result, and copies it into the guest, so a
/// query must not be able to make it hold gigabytes.
const MAX_RESULT_BYTES: usize = 32 << 20;

/// Why guest SQL stopped short of SQLite's own errors.
enum Failure {
    Sqlite(rusqlite::Error),
    TooLarge,
}

impl From<rusqlite::Error> for Failure {
    fn from(error: rusqlite::Error) -> Self {
        Self::Sqlite(error)
    }
}

impl ObjectDb {
    /// Runs guest SQL: every statement of `query`, `params` bound to the
    /// last one, whose rows are returned. The statements run within the
    /// event's SQL budget; writes within the object's size limit.
    pub(crate) fn exec(&mut self, query: &str, params: &[Value]) -> Result<Rows, SqlError> {
        self.refuse_if_lost()?;
        // Verge's tables may not exist yet, and SQLite reports a missing
        // table before the authorizer sees it: refuse the names outright.
        if query.to_ascii_lowercase().contains(INTERNAL_PREFIX) {
            return Err(SqlError::new(
                SqlErrorKind::Denied,
                format!("names starting with `{INTERNAL_PREFIX}` are internal to Verge"),
            ));
        }
        self.guard.set_internal(false);
        self.guard.clear_denial();
        let mut budget = self.budget;
        let mut write_began = None;
        let ran = budget.run(&self.deadline, || {
            self.exec_unguarded(query, params, &mut write_began)
        });
        self.budget = budget;
        let result = match ran {
            None => Err(self.budget_spent()),
            Some(Ok(rows)) => Ok(rows),
            Some(Err(Failure::Sqlite(e))) => Err(self.error(e)),
            Some(Err(Failure::TooLarge)) => Err(SqlError::new(
                SqlErrorKind::Other,
                format!(
                    "the result is larger than {} MiB: select fewer rows or columns (LIMIT)",
                    MAX_RESULT_BYTES >> 20
                ),
            )),
        };
        match write_began {
            Some(before) => self.end_write(before, result),
            None => result,
        }
    }

    /// Runs the statements; opens the write savepoint (noting the size
    /// before it in `write_began`) at the first statement that may write.
    fn exec_unguarded(
        &self,
        query: &str,
        params: &[Value],
        write_began: &mut Option<u64>,
    ) -> Result<Rows, Failure> {
        let mut batch = rusqlite::Batch::new(&self.conn, query);
        let mut result = Rows::default();
        let mut params_used = false;
        let mut result_bytes = 0;
        let changes_before = self.conn.total_changes();
        // Each statement is prepared only after the one before it ran, so a
        // script may create a table and then use it.
        while let Some(mut statement) = batch.next()? {
            if !statement.readonly() && write_began.is_none() {
                *write_began = Some(self.begin_write()?);
            }
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
        result.rows_written = self.conn.total_changes().saturating_sub(changes_before);
        Ok(result)
    }
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
