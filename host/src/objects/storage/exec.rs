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

impl ObjectDb {
    /// Runs guest SQL: every statement of `query`, `params` bound to the
    /// last one, whose rows are returned.
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
