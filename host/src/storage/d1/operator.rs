//! What the operator does to D1 databases — `verge d1` through the admin
//! API, or on local state with `--local` — in one place, so both answer
//! the same. Reading commands need the database to exist; writing ones
//! create it, as a worker's first query does. Operator SQL runs under the
//! same authorizer as a worker's, without a time limit, capped at the
//! host's ceiling for database size.

use rusqlite::types::Value;
use serde::Serialize;
use serde_json::json;

use super::{AppliedMigration, D1Store, DumpOptions, Meta};
use crate::config::{D1_DATABASE_MB_CEILING, validate_migrations_table};
use crate::objects::storage::{EventBudget, SqlError};

const LIMIT_BYTES: u64 = D1_DATABASE_MB_CEILING << 20;

/// Why an operator command failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum OperatorError {
    #[error("no D1 database named `{0}` (create it with `verge d1 create {0}`)")]
    NotFound(String),
    /// The request names something invalid (a migrations table).
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Sql(#[from] SqlError),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// The rows of an `execute`'s last statement.
#[derive(Debug, Serialize)]
pub(crate) struct Executed {
    pub(crate) columns: Vec<String>,
    /// Values as JSON: integers and reals as numbers, blobs as arrays of
    /// bytes (as D1 returns them).
    pub(crate) rows: Vec<Vec<serde_json::Value>>,
    pub(crate) meta: Meta,
    pub(crate) statements: u32,
}

type Outcome<T> = Result<T, OperatorError>;

impl D1Store {
    /// Runs a script in one transaction; the last statement's rows.
    pub(crate) fn operator_execute(&self, name: &str, sql: &str) -> Outcome<Executed> {
        let result = self
            .database(name)?
            .exec(sql, &mut EventBudget::unlimited(), LIMIT_BYTES)?;
        Ok(Executed {
            columns: result.columns,
            rows: result
                .rows
                .into_iter()
                .map(|row| row.iter().map(json_value).collect())
                .collect(),
            meta: result.meta,
            statements: result.statements,
        })
    }

    /// The database as SQL text.
    pub(crate) fn operator_export(&self, name: &str, options: DumpOptions) -> Outcome<String> {
        Ok(self.existing(name)?.dump(options, LIMIT_BYTES)?)
    }

    /// The migrations recorded in `table`.
    pub(crate) fn operator_applied(
        &self,
        name: &str,
        table: &str,
    ) -> Outcome<Vec<AppliedMigration>> {
        valid_table(table)?;
        Ok(self
            .existing(name)?
            .applied_migrations(table, LIMIT_BYTES)?)
    }

    /// Applies one migration and records it in `table`.
    pub(crate) fn operator_apply(
        &self,
        name: &str,
        table: &str,
        migration: &str,
        sql: &str,
    ) -> Outcome<serde_json::Value> {
        valid_table(table)?;
        self.database(name)?
            .apply_migration(table, migration, sql, LIMIT_BYTES)?;
        Ok(json!({ "applied": migration }))
    }

    fn existing(&self, name: &str) -> Outcome<std::sync::Arc<super::D1Database>> {
        if !self.exists(name) {
            return Err(OperatorError::NotFound(name.to_owned()));
        }
        Ok(self.database(name)?)
    }
}

/// Refuses a migrations table name that is no plain identifier: it goes
/// into SQL as one.
fn valid_table(table: &str) -> Outcome<()> {
    validate_migrations_table(table).map_err(|e| OperatorError::Invalid(e.to_string()))
}

/// A SQLite value as JSON.
fn json_value(value: &Value) -> serde_json::Value {
    match value {
        Value::Null => serde_json::Value::Null,
        Value::Integer(i) => (*i).into(),
        Value::Real(r) => {
            serde_json::Number::from_f64(*r).map_or(serde_json::Value::Null, Into::into)
        }
        Value::Text(t) => t.clone().into(),
        Value::Blob(b) => b
            .iter()
            .map(|&byte| serde_json::Value::from(byte))
            .collect(),
    }
}
