//! A Durable Object's storage: SQL and key-value, both in the object's own
//! SQLite database, both synchronous (the database is in the same process
//! as your code; a query is microseconds, not a network hop).
//!
//! Every write an event makes commits with the event, atomically: if the
//! handler returns an error or panics, its writes are rolled back. The
//! response leaves only after the writes are on disk.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::__private::bindings::verge::platform::{kv as host_kv, sql as host};
use crate::{Error, Result};

/// Why a storage call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind:?}: {message}")]
pub struct SqlError {
    /// What went wrong, broadly.
    pub kind: SqlErrorKind,
    /// SQLite's message, or Verge's explanation.
    pub message: String,
}

/// The kind of a [`SqlError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlErrorKind {
    /// The SQL did not parse, or names something that does not exist.
    Syntax,
    /// A UNIQUE, NOT NULL, CHECK or FOREIGN KEY constraint failed.
    Constraint,
    /// Not allowed: ATTACH, PRAGMAs that change settings, internal tables,
    /// BEGIN/COMMIT (use [`Storage::transaction_sync`]).
    Denied,
    /// The object's database reached its size limit.
    Full,
    /// A parameter or type did not fit the statement.
    Mismatch,
    /// Storage is only available inside a Durable Object.
    Unavailable,
    /// Anything else.
    Other,
}

impl From<host::Error> for Error {
    fn from(error: host::Error) -> Self {
        let kind = match error.kind {
            host::ErrorKind::Syntax => SqlErrorKind::Syntax,
            host::ErrorKind::Constraint => SqlErrorKind::Constraint,
            host::ErrorKind::Denied => SqlErrorKind::Denied,
            host::ErrorKind::Full => SqlErrorKind::Full,
            host::ErrorKind::Mismatch => SqlErrorKind::Mismatch,
            host::ErrorKind::Unavailable => SqlErrorKind::Unavailable,
            host::ErrorKind::Other => SqlErrorKind::Other,
        };
        Error::Sql(SqlError {
            kind,
            message: error.message,
        })
    }
}

/// A SQLite value.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlValue {
    /// SQL `NULL`.
    Null,
    /// Every integer, with full `i64` precision; booleans are 0 and 1.
    Integer(i64),
    /// A 64-bit float.
    Real(f64),
    /// UTF-8 text.
    Text(String),
    /// Bytes.
    Blob(Vec<u8>),
}

macro_rules! integer_values {
    ($($t:ty),*) => {$(
        impl From<$t> for SqlValue {
            fn from(value: $t) -> Self {
                SqlValue::Integer(value.into())
            }
        }
    )*};
}
integer_values!(i8, i16, i32, i64, u8, u16, u32, bool);

impl From<f64> for SqlValue {
    fn from(value: f64) -> Self {
        SqlValue::Real(value)
    }
}

impl From<f32> for SqlValue {
    fn from(value: f32) -> Self {
        SqlValue::Real(value.into())
    }
}

impl From<&str> for SqlValue {
    fn from(value: &str) -> Self {
        SqlValue::Text(value.to_owned())
    }
}

impl From<String> for SqlValue {
    fn from(value: String) -> Self {
        SqlValue::Text(value)
    }
}

impl From<&String> for SqlValue {
    fn from(value: &String) -> Self {
        SqlValue::Text(value.clone())
    }
}

impl From<Vec<u8>> for SqlValue {
    fn from(value: Vec<u8>) -> Self {
        SqlValue::Blob(value)
    }
}

impl From<&[u8]> for SqlValue {
    fn from(value: &[u8]) -> Self {
        SqlValue::Blob(value.to_vec())
    }
}

impl<T: Into<SqlValue>> From<Option<T>> for SqlValue {
    fn from(value: Option<T>) -> Self {
        value.map_or(SqlValue::Null, Into::into)
    }
}

impl SqlValue {
    pub(crate) fn into_wire(self) -> host::Value {
        match self {
            SqlValue::Null => host::Value::Null,
            SqlValue::Integer(i) => host::Value::Integer(i),
            SqlValue::Real(r) => host::Value::Real(r),
            SqlValue::Text(t) => host::Value::Text(t),
            SqlValue::Blob(b) => host::Value::Blob(b),
        }
    }

    pub(crate) fn from_wire(value: host::Value) -> Self {
        match value {
            host::Value::Null => SqlValue::Null,
            host::Value::Integer(i) => SqlValue::Integer(i),
            host::Value::Real(r) => SqlValue::Real(r),
            host::Value::Text(t) => SqlValue::Text(t),
            host::Value::Blob(b) => SqlValue::Blob(b),
        }
    }

    pub(crate) fn to_json(&self) -> serde_json::Value {
        match self {
            SqlValue::Null => serde_json::Value::Null,
            SqlValue::Integer(i) => (*i).into(),
            SqlValue::Real(r) => {
                serde_json::Number::from_f64(*r).map_or(serde_json::Value::Null, Into::into)
            }
            SqlValue::Text(t) => t.clone().into(),
            SqlValue::Blob(b) => b
                .iter()
                .map(|&byte| serde_json::Value::from(byte))
                .collect(),
        }
    }
}

/// Parameters for [`SqlStorage::exec`]: `()`, a tuple of values, or a
/// `Vec<SqlValue>`.
pub trait IntoParams {
    /// The values, in placeholder order.
    fn into_params(self) -> Vec<SqlValue>;
}

impl IntoParams for () {
    fn into_params(self) -> Vec<SqlValue> {
        Vec::new()
    }
}

impl IntoParams for Vec<SqlValue> {
    fn into_params(self) -> Vec<SqlValue> {
        self
    }
}

macro_rules! tuple_params {
    ($($name:ident),+) => {
        impl<$($name: Into<SqlValue>),+> IntoParams for ($($name,)+) {
            #[allow(non_snake_case)]
            fn into_params(self) -> Vec<SqlValue> {
                let ($($name,)+) = self;
                vec![$($name.into()),+]
            }
        }
    };
}
tuple_params!(A);
tuple_params!(A, B);
tuple_params!(A, B, C);
tuple_params!(A, B, C, D);
tuple_params!(A, B, C, D, E);
tuple_params!(A, B, C, D, E, F);
tuple_params!(A, B, C, D, E, F, G);
tuple_params!(A, B, C, D, E, F, G, H);

/// The object's SQL database.
///
/// ```no_run
/// # fn demo(storage: verge::Storage) -> verge::Result<()> {
/// #[derive(serde::Deserialize)]
/// struct Item { sku: String, stock: i64 }
///
/// let sql = storage.sql();
/// sql.exec("CREATE TABLE IF NOT EXISTS items (sku TEXT PRIMARY KEY, stock INTEGER NOT NULL)", ())?;
/// sql.exec("INSERT INTO items VALUES (?, ?) ON CONFLICT DO NOTHING", ("kettle", 10))?;
/// let low: Vec<Item> = sql.exec("SELECT sku, stock FROM items WHERE stock < ?", (5,))?.to_array()?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy)]
pub struct SqlStorage {
    _private: (),
}

impl SqlStorage {
    /// Runs `query` (one statement, or several separated by `;`), binding
    /// `params` to the `?` placeholders of the statement that has them.
    pub fn exec(&self, query: &str, params: impl IntoParams) -> Result<SqlCursor> {
        let params: Vec<host::Value> = params
            .into_params()
            .into_iter()
            .map(SqlValue::into_wire)
            .collect();
        let cursor = host::exec(query, &params)?;
        Ok(SqlCursor {
            columns: cursor.columns,
            rows: cursor
                .rows
                .into_iter()
                .map(|row| row.into_iter().map(SqlValue::from_wire).collect())
                .collect(),
            rows_read: cursor.rows_read,
            rows_written: cursor.rows_written,
        })
    }

    /// The database's size on disk, in bytes.
    pub fn database_size(&self) -> Result<u64> {
        Ok(host::database_size()?)
    }
}

/// The rows a statement returned.
#[derive(Debug, Clone)]
pub struct SqlCursor {
    columns: Vec<String>,
    rows: Vec<Vec<SqlValue>>,
    rows_read: u64,
    rows_written: u64,
}

impl SqlCursor {
    /// Every row as `T`, deserialized from the columns by name (an integer
    /// column into `i64`/`u32`/..., text into `String`, a blob into
    /// `Vec<u8>`; booleans are stored as integers).
    pub fn to_array<T: DeserializeOwned>(&self) -> Result<Vec<T>> {
        self.iter().collect()
    }

    /// Every row as `T`, lazily.
    pub fn iter<T: DeserializeOwned>(&self) -> impl Iterator<Item = Result<T>> + '_ {
        self.rows.iter().map(|row| self.row_as(row))
    }

    /// The only row, as `T`; an error if there are none or several.
    pub fn one<T: DeserializeOwned>(&self) -> Result<T> {
        match self.rows.as_slice() {
            [row] => self.row_as(row),
            rows => Err(Error::Sql(SqlError {
                kind: SqlErrorKind::Mismatch,
                message: format!("expected exactly one row, got {}", rows.len()),
            })),
        }
    }

    /// The rows as values, in column order.
    pub fn raw(&self) -> &[Vec<SqlValue>] {
        &self.rows
    }

    /// The result's column names, in order.
    pub fn column_names(&self) -> &[String] {
        &self.columns
    }

    /// Rows SQLite read to answer, including rows scanned and skipped.
    pub fn rows_read(&self) -> u64 {
        self.rows_read
    }

    /// Rows inserted, updated or deleted.
    pub fn rows_written(&self) -> u64 {
        self.rows_written
    }

    fn row_as<T: DeserializeOwned>(&self, row: &[SqlValue]) -> Result<T> {
        row_as(&self.columns, row).map_err(|message| {
            Error::Sql(SqlError {
                kind: SqlErrorKind::Mismatch,
                message,
            })
        })
    }
}

/// A row as `T`, deserialized from a JSON object of its columns by name;
/// the error says why it does not fit. Shared with D1 results.
pub(crate) fn row_as<T: DeserializeOwned>(
    columns: &[String],
    row: &[SqlValue],
) -> std::result::Result<T, String> {
    let object: serde_json::Map<String, serde_json::Value> = columns
        .iter()
        .zip(row)
        .map(|(column, value)| (column.clone(), value.to_json()))
        .collect();
    serde_json::from_value(object.into())
        .map_err(|e| format!("a row does not fit the requested type: {e}"))
}

/// Bounds and order for [`Storage::list`].
#[derive(Debug, Clone, Default)]
pub struct ListOptions {
    /// First key, inclusive.
    pub start: Option<String>,
    /// Key to stop before, exclusive.
    pub end: Option<String>,
    /// Only keys starting with this.
    pub prefix: Option<String>,
    /// Descending key order.
    pub reverse: bool,
    /// At most this many entries.
    pub limit: Option<u32>,
}

/// A Durable Object's storage: [`sql`](Storage::sql) and a key-value API,
/// in one database.
///
/// ```no_run
/// # fn demo(storage: verge::Storage) -> verge::Result<()> {
/// storage.put("visits", &41)?;
/// let visits: u64 = storage.get("visits")?.unwrap_or(0);
/// storage.transaction_sync(|| {
///     storage.put("visits", &(visits + 1))?;
///     storage.put("last", &"now")
/// })?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Storage {
    _private: (),
}

impl Storage {
    pub(crate) fn new() -> Self {
        Self { _private: () }
    }

    /// The SQL database.
    pub fn sql(&self) -> SqlStorage {
        SqlStorage { _private: () }
    }

    /// The value at `key`, deserialized from JSON.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        host_kv::get(key)?
            .map(|bytes| serde_json::from_slice(&bytes).map_err(Error::from))
            .transpose()
    }

    /// Stores `value` at `key`, as JSON.
    pub fn put<T: Serialize + ?Sized>(&self, key: &str, value: &T) -> Result<()> {
        Ok(host_kv::put(key, &serde_json::to_vec(value)?)?)
    }

    /// Removes `key`; returns whether it existed.
    pub fn delete(&self, key: &str) -> Result<bool> {
        Ok(host_kv::delete(key)?)
    }

    /// Keys and values in key order (or reversed), within the options'
    /// bounds.
    pub fn list<T: DeserializeOwned>(&self, options: ListOptions) -> Result<Vec<(String, T)>> {
        let options = host_kv::ListOptions {
            start: options.start,
            end: options.end,
            prefix: options.prefix,
            reverse: options.reverse,
            limit: options.limit,
        };
        host_kv::list(&options)?
            .into_iter()
            .map(|(key, bytes)| Ok((key, serde_json::from_slice(&bytes)?)))
            .collect()
    }

    /// Removes every key (SQL tables are untouched).
    pub fn delete_all(&self) -> Result<()> {
        Ok(host_kv::delete_all()?)
    }

    /// Runs `body` as a nested transaction: its writes are kept if it
    /// returns `Ok`, rolled back if it returns `Err`.
    pub fn transaction_sync<T>(&self, body: impl FnOnce() -> Result<T>) -> Result<T> {
        host::transaction_begin()?;
        match body() {
            Ok(value) => {
                host::transaction_commit()?;
                Ok(value)
            }
            Err(error) => {
                host::transaction_rollback()?;
                Err(error)
            }
        }
    }

    /// The database's size on disk, in bytes.
    pub fn database_size(&self) -> Result<u64> {
        self.sql().database_size()
    }
}
