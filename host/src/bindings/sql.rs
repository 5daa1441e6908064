//! `verge:platform/sql` for Durable Objects: guest SQL against the object's
//! own database (see `objects/storage/authorizer.rs` for what is allowed).

use std::sync::MutexGuard;

use rusqlite::types::Value as SqlValue;

use super::verge::platform::sql::{Cursor, Error, ErrorKind, Host, Value};
use crate::objects::{ObjectDb, SqlError, SqlErrorKind, lock};
use crate::runtime::{HostState, HostWork};

impl HostState {
    /// The current object's database, or the error a stateless worker gets.
    /// The time the guard is held is the host's, not the guest's.
    pub(crate) fn object_db(&self) -> Result<HostWork<'_, MutexGuard<'_, ObjectDb>>, Error> {
        let object = self.object.as_ref().ok_or_else(|| Error {
            kind: ErrorKind::Unavailable,
            message: "storage is only available inside a Durable Object".into(),
        })?;
        Ok(self.cpu.host_work(|| lock(&object.db)))
    }
}

impl From<SqlError> for Error {
    fn from(error: SqlError) -> Self {
        let kind = match error.kind {
            SqlErrorKind::Syntax => ErrorKind::Syntax,
            SqlErrorKind::Constraint => ErrorKind::Constraint,
            SqlErrorKind::Denied => ErrorKind::Denied,
            SqlErrorKind::Full => ErrorKind::Full,
            SqlErrorKind::Mismatch => ErrorKind::Mismatch,
            // The `sql` interface predates these kinds; the message says which.
            SqlErrorKind::TooLarge | SqlErrorKind::Timeout | SqlErrorKind::Other => {
                ErrorKind::Other
            }
        };
        Error {
            kind,
            message: error.message,
        }
    }
}

pub(super) fn to_sqlite(value: Value) -> SqlValue {
    match value {
        Value::Null => SqlValue::Null,
        Value::Integer(i) => SqlValue::Integer(i),
        Value::Real(r) => SqlValue::Real(r),
        Value::Text(t) => SqlValue::Text(t),
        Value::Blob(b) => SqlValue::Blob(b),
    }
}

pub(super) fn from_sqlite(value: SqlValue) -> Value {
    match value {
        SqlValue::Null => Value::Null,
        SqlValue::Integer(i) => Value::Integer(i),
        SqlValue::Real(r) => Value::Real(r),
        SqlValue::Text(t) => Value::Text(t),
        SqlValue::Blob(b) => Value::Blob(b),
    }
}

impl Host for HostState {
    fn exec(&mut self, query: String, params: Vec<Value>) -> Result<Cursor, Error> {
        let params: Vec<SqlValue> = params.into_iter().map(to_sqlite).collect();
        let rows = self.object_db()?.exec(&query, &params)?;
        Ok(Cursor {
            columns: rows.columns,
            rows: rows
                .rows
                .into_iter()
                .map(|row| row.into_iter().map(from_sqlite).collect())
                .collect(),
            rows_read: rows.rows_read,
            rows_written: rows.rows_written,
        })
    }

    fn database_size(&mut self) -> Result<u64, Error> {
        Ok(self.object_db()?.size()?)
    }

    fn transaction_begin(&mut self) -> Result<(), Error> {
        Ok(self.object_db()?.transaction_begin()?)
    }

    fn transaction_commit(&mut self) -> Result<(), Error> {
        Ok(self.object_db()?.transaction_end(true)?)
    }

    fn transaction_rollback(&mut self) -> Result<(), Error> {
        Ok(self.object_db()?.transaction_end(false)?)
    }
}
