//! What the operator does to D1 databases — `verge d1` through the admin
//! API, or on local state with `--local` — in one place, so both answer
//! the same. Reading commands need the database to exist; writing ones
//! create it, as a worker's first query does. Operator SQL runs under the
//! same authorizer as a worker's, without a time limit, capped at the
//! host's ceiling for database size.

use rusqlite::types::Value;
use serde::Serialize;
use serde_json::json;

use super::{
    AppliedMigration, D1Answer, D1Failure, D1Op, D1Store, DatabaseInfo, DumpOptions, Meta,
    QueryResult,
};
use crate::config::{D1_DATABASE_MB_CEILING, validate_database_name, validate_migrations_table};
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
    /// In a cluster: the database's owner could not be reached.
    #[error("{0}")]
    Unavailable(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<D1Failure> for OperatorError {
    fn from(failure: D1Failure) -> Self {
        match failure {
            D1Failure::Sql(e) => OperatorError::Sql(e),
            D1Failure::NotFound(name) => OperatorError::NotFound(name),
            D1Failure::Invalid(why) => OperatorError::Invalid(why),
            D1Failure::Unavailable(why) => OperatorError::Unavailable(why),
            D1Failure::Internal(why) => OperatorError::Internal(anyhow::anyhow!(why)),
        }
    }
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

impl From<QueryResult> for Executed {
    fn from(result: QueryResult) -> Self {
        Executed {
            columns: result.columns,
            rows: result
                .rows
                .into_iter()
                .map(|row| row.iter().map(json_value).collect())
                .collect(),
            meta: result.meta,
            statements: result.statements,
        }
    }
}

impl D1Store {
    /// Runs a script in one transaction; the last statement's rows.
    pub(crate) fn operator_execute(&self, name: &str, sql: &str) -> Outcome<Executed> {
        let result = self
            .database(name)?
            .exec(sql, &mut EventBudget::unlimited(), LIMIT_BYTES)?;
        Ok(result.into())
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

/// The admin API's commands: the same as above, run wherever the
/// database is (on its owner, in a cluster).
impl D1Store {
    async fn operator(&self, name: &str, op: D1Op) -> Outcome<D1Answer> {
        let (result, _) = self
            .call(name, op, EventBudget::unlimited(), LIMIT_BYTES)
            .await;
        Ok(result?)
    }

    /// Creates `name`; `false` when it already existed.
    pub(crate) async fn admin_create(self: &std::sync::Arc<Self>, name: &str) -> Outcome<bool> {
        let Some(cluster) = self.cluster.clone() else {
            let (store, name) = (self.clone(), name.to_owned());
            return blocking(move || Ok(store.create(&name)?)).await;
        };
        validate_database_name(name).map_err(|e| OperatorError::Invalid(e.to_string()))?;
        let existed = cluster
            .d1_exists(&crate::cluster::d1_key(name))
            .await
            .map_err(|e| OperatorError::Unavailable(format!("{e:#}")))?;
        self.operator(name, D1Op::Create).await?;
        Ok(!existed)
    }

    /// Every database, by name, with its size.
    pub(crate) async fn admin_list(self: &std::sync::Arc<Self>) -> Outcome<Vec<DatabaseInfo>> {
        let Some(cluster) = self.cluster.clone() else {
            let store = self.clone();
            return blocking(move || Ok(store.list()?)).await;
        };
        let names = cluster
            .d1_names()
            .await
            .map_err(|e| OperatorError::Unavailable(format!("{e:#}")))?;
        let mut databases = Vec::with_capacity(names.len());
        for name in names {
            let size_bytes = match self.operator(&name, D1Op::Size).await? {
                D1Answer::Size(size) => size,
                other => return Err(unexpected(&other)),
            };
            databases.push(DatabaseInfo { name, size_bytes });
        }
        Ok(databases)
    }

    /// Runs a script in one transaction; the last statement's rows.
    pub(crate) async fn admin_execute(&self, name: &str, sql: String) -> Outcome<Executed> {
        match self.operator(name, D1Op::Exec(sql)).await? {
            D1Answer::Result(result) => Ok(result.into()),
            other => Err(unexpected(&other)),
        }
    }

    /// The database as SQL text.
    pub(crate) async fn admin_export(&self, name: &str, options: DumpOptions) -> Outcome<String> {
        let op = D1Op::Export {
            schema: options.schema,
            data: options.data,
        };
        match self.operator(name, op).await? {
            D1Answer::Dump(dump) => Ok(dump),
            other => Err(unexpected(&other)),
        }
    }

    /// The migrations recorded in `table`.
    pub(crate) async fn admin_applied(
        &self,
        name: &str,
        table: &str,
    ) -> Outcome<Vec<AppliedMigration>> {
        valid_table(table)?;
        let op = D1Op::Applied {
            table: table.to_owned(),
        };
        match self.operator(name, op).await? {
            D1Answer::Applied(applied) => Ok(applied),
            other => Err(unexpected(&other)),
        }
    }

    /// Applies one migration and records it in `table`.
    pub(crate) async fn admin_apply(
        &self,
        name: &str,
        table: &str,
        migration: &str,
        sql: String,
    ) -> Outcome<serde_json::Value> {
        valid_table(table)?;
        let op = D1Op::Apply {
            table: table.to_owned(),
            name: migration.to_owned(),
            sql,
        };
        self.operator(name, op).await?;
        Ok(json!({ "applied": migration }))
    }
}

/// Runs `work` on the blocking pool: SQLite blocks.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Outcome<T> + Send + 'static,
) -> Outcome<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| anyhow::anyhow!("the D1 command failed: {e}"))?
}

/// An answer of the wrong kind: a peer running another version, maybe.
fn unexpected(answer: &D1Answer) -> OperatorError {
    let kind = match answer {
        D1Answer::Result(_) => "rows",
        D1Answer::Results(_) => "a batch's rows",
        D1Answer::Dump(_) => "a dump",
        D1Answer::Applied(_) => "migrations",
        D1Answer::Size(_) => "a size",
        D1Answer::Done => "nothing",
    };
    OperatorError::Internal(anyhow::anyhow!(
        "the D1 call answered {kind}, which it does not ask for"
    ))
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
