//! `verge:platform/d1`: a worker's D1 databases. Each call runs on tokio's
//! blocking pool (SQLite blocks; a long query must not hold a runtime
//! thread), within the request's SQL time (`limits.sql_ms`), and the time
//! the guest waits for it is not charged to its CPU limit. In a cluster it
//! runs on the host that owns the database (`storage/d1/remote.rs`).

use super::sql::{from_sqlite, to_sqlite};
use super::verge::platform::d1::{
    D1Error, ExecResult, Host, Meta as WireMeta, QueryResult as WireResult,
    Statement as WireStatement,
};
use crate::objects::storage::{EventBudget, SqlError, SqlErrorKind};
use crate::runtime::HostState;
use crate::storage::d1::{D1Answer, D1Failure, D1Op, Meta, QueryResult, Statement};

impl From<SqlError> for D1Error {
    fn from(error: SqlError) -> Self {
        let message = error.message;
        match error.kind {
            SqlErrorKind::Syntax => D1Error::Syntax(message),
            SqlErrorKind::Constraint => D1Error::Constraint(message),
            SqlErrorKind::Denied => D1Error::Denied(message),
            SqlErrorKind::Full => D1Error::Full(message),
            SqlErrorKind::Mismatch => D1Error::Mismatch(message),
            SqlErrorKind::TooLarge => D1Error::TooLarge(message),
            SqlErrorKind::Timeout => D1Error::Timeout(message),
            SqlErrorKind::Other => D1Error::Other(message),
        }
    }
}

impl From<Meta> for WireMeta {
    fn from(meta: Meta) -> Self {
        WireMeta {
            duration: meta.duration,
            rows_read: meta.rows_read,
            rows_written: meta.rows_written,
            last_row_id: meta.last_row_id,
            changes: meta.changes,
            changed_db: meta.changed_db,
            size_after: meta.size_after,
        }
    }
}

impl From<QueryResult> for WireResult {
    fn from(result: QueryResult) -> Self {
        WireResult {
            columns: result.columns,
            rows: result
                .rows
                .into_iter()
                .map(|row| row.into_iter().map(from_sqlite).collect())
                .collect(),
            meta: result.meta.into(),
        }
    }
}

impl From<D1Failure> for D1Error {
    fn from(failure: D1Failure) -> Self {
        match failure {
            D1Failure::Sql(error) => error.into(),
            other => D1Error::Other(other.to_string()),
        }
    }
}

impl HostState {
    /// Runs `op` on the database bound as `binding` (on its owner, in a
    /// cluster), within this request's SQL time (`limits.sql_ms`) and the
    /// worker's size limit, and keeps what is left of the time for the
    /// request's next call.
    async fn d1_run(&mut self, binding: &str, op: D1Op) -> Result<D1Answer, D1Error> {
        let worker = self.worker();
        let limits = worker.config.limits;
        let entry = worker
            .config
            .d1_databases
            .iter()
            .find(|d| d.binding == binding)
            .ok_or_else(|| D1Error::UnknownBinding(binding.to_owned()))?;
        let (store, name) = (worker.d1.clone(), entry.database_name.clone());
        let budget = *self.d1_budget.get_or_insert_with(|| {
            EventBudget::new(std::time::Duration::from_millis(limits.sql_ms), None)
        });
        let (result, budget) = store
            .call(&name, op, budget, limits.d1_database_bytes())
            .await;
        self.d1_budget = Some(budget);
        Ok(result?)
    }

    /// Checks a statement against `limits.d1_statement_kb` and
    /// `limits.d1_params`, and converts it.
    fn d1_statement(&self, statement: WireStatement) -> Result<Statement, D1Error> {
        let limits = self.worker().config.limits;
        check_length(&statement.sql, limits.d1_statement_kb)?;
        if statement.params.len() as u64 > limits.d1_params {
            return Err(D1Error::TooLarge(format!(
                "{} parameters bound; at most {} are allowed (limits.d1_params)",
                statement.params.len(),
                limits.d1_params
            )));
        }
        Ok(Statement {
            sql: statement.sql,
            params: statement.params.into_iter().map(to_sqlite).collect(),
        })
    }
}

/// An answer of the wrong kind for the call.
fn unexpected() -> D1Error {
    D1Error::Other("the D1 call answered something it does not ask for".into())
}

/// Refuses SQL longer than `limits.d1_statement_kb`.
fn check_length(sql: &str, limit_kb: u64) -> Result<(), D1Error> {
    if sql.len() as u64 > limit_kb << 10 {
        return Err(D1Error::TooLarge(format!(
            "the SQL is {} bytes; at most {limit_kb} KiB are allowed (limits.d1_statement_kb)",
            sql.len()
        )));
    }
    Ok(())
}

impl Host for HostState {
    async fn query(
        &mut self,
        binding: String,
        statement: WireStatement,
    ) -> Result<WireResult, D1Error> {
        let statement = self.d1_statement(statement)?;
        match self.d1_run(&binding, D1Op::Query(statement)).await? {
            D1Answer::Result(result) => Ok(result.into()),
            _ => Err(unexpected()),
        }
    }

    async fn batch(
        &mut self,
        binding: String,
        statements: Vec<WireStatement>,
    ) -> Result<Vec<WireResult>, D1Error> {
        let statements = statements
            .into_iter()
            .map(|s| self.d1_statement(s))
            .collect::<Result<Vec<_>, _>>()?;
        match self.d1_run(&binding, D1Op::Batch(statements)).await? {
            D1Answer::Results(results) => Ok(results.into_iter().map(Into::into).collect()),
            _ => Err(unexpected()),
        }
    }

    async fn exec(&mut self, binding: String, sql: String) -> Result<ExecResult, D1Error> {
        check_length(&sql, self.worker().config.limits.d1_statement_kb)?;
        match self.d1_run(&binding, D1Op::Exec(sql)).await? {
            D1Answer::Result(result) => Ok(ExecResult {
                count: result.statements,
                duration: result.meta.duration,
            }),
            _ => Err(unexpected()),
        }
    }
}
