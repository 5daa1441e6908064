//! D1 databases: SQLite databases shared by every worker bound to them in
//! verge.toml's `[[d1_databases]]`, with workers-rs's API —
//! `prepare(sql).bind(params)?` then `first`, `all`, `raw` or `run`, and
//! `batch` and `exec` on the database.
//!
//! Calls are synchronous: the host runs the query while your code waits,
//! and the wait does not count against the CPU limit.

use serde::de::DeserializeOwned;

use crate::__private::bindings::verge::platform::d1 as host;
use crate::storage::row_as;
use crate::{Env, Error, IntoParams, Result, SqlValue};

/// Why a D1 call failed. Each case carries SQLite's message or Verge's
/// explanation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum D1Error {
    /// No `[[d1_databases]]` entry with this binding in verge.toml.
    #[error("no D1 database is bound as `{0}` in verge.toml")]
    UnknownBinding(String),
    /// The SQL did not parse, or names something that does not exist.
    #[error("syntax: {0}")]
    Syntax(String),
    /// A UNIQUE, NOT NULL, CHECK or FOREIGN KEY constraint failed.
    #[error("constraint: {0}")]
    Constraint(String),
    /// Not allowed: ATTACH, PRAGMA changes, internal tables, BEGIN/COMMIT
    /// (use [`D1Database::batch`] for a transaction).
    #[error("denied: {0}")]
    Denied(String),
    /// The database reached its size limit (`limits.d1_database_mb`).
    #[error("full: {0}")]
    Full(String),
    /// A parameter or type did not fit the statement, or a row did not fit
    /// the type asked for.
    #[error("mismatch: {0}")]
    Mismatch(String),
    /// The statement, its parameters or its result are over a limit.
    #[error("too large: {0}")]
    TooLarge(String),
    /// The request's SQL time (`limits.sql_ms`) ran out.
    #[error("timeout: {0}")]
    Timeout(String),
    /// Anything else.
    #[error("{0}")]
    Other(String),
}

impl From<host::D1Error> for D1Error {
    fn from(error: host::D1Error) -> Self {
        use host::D1Error as E;
        match error {
            E::UnknownBinding(m) => D1Error::UnknownBinding(m),
            E::Syntax(m) => D1Error::Syntax(m),
            E::Constraint(m) => D1Error::Constraint(m),
            E::Denied(m) => D1Error::Denied(m),
            E::Full(m) => D1Error::Full(m),
            E::Mismatch(m) => D1Error::Mismatch(m),
            E::TooLarge(m) => D1Error::TooLarge(m),
            E::Timeout(m) => D1Error::Timeout(m),
            E::Other(m) => D1Error::Other(m),
        }
    }
}

impl From<host::D1Error> for Error {
    fn from(error: host::D1Error) -> Self {
        Error::D1(error.into())
    }
}

impl Env {
    /// The D1 database bound as `binding` in verge.toml's
    /// `[[d1_databases]]`. An unknown binding shows up as
    /// [`D1Error::UnknownBinding`] on first use.
    ///
    /// ```no_run
    /// # fn demo(env: verge::Env) -> verge::Result<()> {
    /// #[derive(serde::Deserialize)]
    /// struct Note { id: i64, title: String }
    ///
    /// let db = env.d1("DB")?;
    /// let note: Option<Note> = db
    ///     .prepare("SELECT id, title FROM notes WHERE id = ?")
    ///     .bind((7,))?
    ///     .first(None)?;
    /// # Ok(()) }
    /// ```
    pub fn d1(&self, binding: &str) -> Result<D1Database> {
        Ok(D1Database {
            binding: binding.to_owned(),
        })
    }
}

/// A D1 database, from [`Env::d1`].
#[derive(Debug, Clone)]
pub struct D1Database {
    binding: String,
}

impl D1Database {
    /// A statement to run, with `?` placeholders for [`bind`](D1PreparedStatement::bind).
    pub fn prepare(&self, sql: impl Into<String>) -> D1PreparedStatement {
        D1PreparedStatement {
            binding: self.binding.clone(),
            sql: sql.into(),
            params: Vec::new(),
        }
    }

    /// Runs the statements in order, in one transaction: if any fails, the
    /// call fails and none of them leaves anything behind. One result per
    /// statement.
    ///
    /// ```no_run
    /// # fn demo(db: verge::D1Database) -> verge::Result<()> {
    /// db.batch(vec![
    ///     db.prepare("UPDATE accounts SET balance = balance - ? WHERE id = ?").bind((10, 1))?,
    ///     db.prepare("UPDATE accounts SET balance = balance + ? WHERE id = ?").bind((10, 2))?,
    /// ])?;
    /// # Ok(()) }
    /// ```
    pub fn batch(&self, statements: Vec<D1PreparedStatement>) -> Result<Vec<D1Result>> {
        let wire: Vec<host::Statement> = statements
            .into_iter()
            .map(D1PreparedStatement::into_wire)
            .collect();
        Ok(host::batch(&self.binding, &wire)?
            .into_iter()
            .map(D1Result::from_wire)
            .collect())
    }

    /// Runs a script of statements separated by `;` (no parameters), in
    /// one transaction: a schema, say.
    pub fn exec(&self, sql: &str) -> Result<D1ExecResult> {
        let result = host::exec(&self.binding, sql)?;
        Ok(D1ExecResult {
            count: result.count,
            duration: result.duration,
        })
    }
}

/// A statement and its parameters, from [`D1Database::prepare`].
#[derive(Debug, Clone)]
pub struct D1PreparedStatement {
    binding: String,
    sql: String,
    params: Vec<SqlValue>,
}

impl D1PreparedStatement {
    /// Binds the values of the `?` placeholders, in order: a tuple, or a
    /// `Vec<SqlValue>`.
    pub fn bind(mut self, params: impl IntoParams) -> Result<Self> {
        self.params = params.into_params();
        Ok(self)
    }

    /// The first row as `T` (`column` `None`, deserialized from the row's
    /// columns by name), or the value of its `column`; `None` when there
    /// are no rows.
    pub fn first<T: DeserializeOwned>(&self, column: Option<&str>) -> Result<Option<T>> {
        let result = self.all()?;
        let Some(row) = result.rows.first() else {
            return Ok(None);
        };
        let value = match column {
            None => row_as(&result.columns, row),
            Some(name) => {
                let index = result
                    .columns
                    .iter()
                    .position(|c| c == name)
                    .ok_or_else(|| {
                        D1Error::Mismatch(format!("the result has no column `{name}`"))
                    })?;
                serde_json::from_value(row[index].to_json())
                    .map_err(|e| format!("column `{name}` does not fit the requested type: {e}"))
            }
        };
        value.map(Some).map_err(|m| D1Error::Mismatch(m).into())
    }

    /// Runs the statement; its rows and meta.
    pub fn all(&self) -> Result<D1Result> {
        Ok(D1Result::from_wire(host::query(
            &self.binding,
            &self.clone().into_wire(),
        )?))
    }

    /// Runs the statement for its effect; its meta, and rows if it
    /// returned any.
    pub fn run(&self) -> Result<D1Result> {
        self.all()
    }

    /// The rows as arrays of values in column order, each value as `T`
    /// (use [`SqlValue`] or `serde_json::Value` for mixed columns).
    pub fn raw<T: DeserializeOwned>(&self) -> Result<Vec<Vec<T>>> {
        let result = self.all()?;
        result
            .rows
            .iter()
            .map(|row| {
                row.iter()
                    .map(|value| {
                        serde_json::from_value(value.to_json()).map_err(|e| {
                            D1Error::Mismatch(format!(
                                "a value does not fit the requested type: {e}"
                            ))
                            .into()
                        })
                    })
                    .collect()
            })
            .collect()
    }

    fn into_wire(self) -> host::Statement {
        host::Statement {
            sql: self.sql,
            params: self.params.into_iter().map(SqlValue::into_wire).collect(),
        }
    }
}

/// What a statement returned: rows and [`D1Meta`].
#[derive(Debug, Clone)]
pub struct D1Result {
    columns: Vec<String>,
    rows: Vec<Vec<SqlValue>>,
    meta: D1Meta,
}

impl D1Result {
    fn from_wire(result: host::QueryResult) -> Self {
        let meta = result.meta;
        D1Result {
            columns: result.columns,
            rows: result
                .rows
                .into_iter()
                .map(|row| row.into_iter().map(SqlValue::from_wire).collect())
                .collect(),
            meta: D1Meta {
                duration: meta.duration,
                rows_read: meta.rows_read,
                rows_written: meta.rows_written,
                last_row_id: meta.last_row_id,
                changes: meta.changes,
                changed_db: meta.changed_db,
                size_after: meta.size_after,
            },
        }
    }

    /// Every row as `T`, deserialized from the columns by name (integers
    /// into `i64`/`u32`/..., text into `String`, blobs into `Vec<u8>`;
    /// booleans are stored as integers).
    pub fn results<T: DeserializeOwned>(&self) -> Result<Vec<T>> {
        self.rows
            .iter()
            .map(|row| row_as(&self.columns, row).map_err(|m| D1Error::Mismatch(m).into()))
            .collect()
    }

    /// What the statement did.
    pub fn meta(&self) -> &D1Meta {
        &self.meta
    }

    /// Always `true`: a failed statement is an `Err`, not a result. Kept
    /// for code ported from workers-rs.
    pub fn success(&self) -> bool {
        true
    }

    /// The result's column names, in order.
    pub fn column_names(&self) -> &[String] {
        &self.columns
    }
}

/// D1's `meta`: what a statement did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct D1Meta {
    /// Milliseconds the statement took on the host.
    pub duration: f64,
    /// Rows SQLite read, including rows scanned and skipped.
    pub rows_read: u64,
    /// Rows inserted, updated or deleted.
    pub rows_written: u64,
    /// The rowid of the row the statement inserted; 0 when it inserted none.
    pub last_row_id: i64,
    /// Rows changed by the statement.
    pub changes: u64,
    /// Whether the statement changed the database.
    pub changed_db: bool,
    /// The database's size afterwards, in bytes.
    pub size_after: u64,
}

/// What [`D1Database::exec`] did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct D1ExecResult {
    /// Statements run.
    pub count: u32,
    /// Milliseconds the script took on the host.
    pub duration: f64,
}
