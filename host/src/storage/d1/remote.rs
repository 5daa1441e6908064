//! Where a D1 call runs. On a single host: here, on the blocking pool, as
//! it always did. In a cluster: on the database's owner — this host when
//! it holds the database (or can take it), else the owner, reached over
//! the cluster listener (`cluster/d1.rs`) with the call as JSON.
//!
//! Every call is a [`D1Op`] (the binding's query/batch/exec, and what the
//! admin API and `verge d1` do), so the same thing runs wherever it runs,
//! and its [`D1Failure`] comes back typed.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::{AppliedMigration, D1Database, D1Store, DumpOptions, QueryResult, Statement};
use crate::cluster::{Cluster, Owner, PeerDelivery, RELOCATE_PAUSE, Replica, d1_key};
use crate::config::validate_database_name;
use crate::objects::ObjectKey;
use crate::objects::storage::{EventBudget, SqlError};

/// How long a call keeps looking for a database's owner (while a dead
/// owner's lease runs out) before it gives up.
const RELOCATE_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a forwarded call may take past its SQL time: commits,
/// shipping, the way there and back.
const FORWARD_SLACK: Duration = Duration::from_secs(30);

/// How long a copy given up may stay in use by calls that had it before
/// the database is rebuilt over it.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(30);

/// One call on a database.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum D1Op {
    /// One statement (or a script): `query`, `first`, `all`, `raw`, `run`.
    Query(Statement),
    /// Statements in one transaction.
    Batch(Vec<Statement>),
    /// A script without parameters, atomically: `exec`, `verge d1
    /// execute` and `import`.
    Exec(String),
    /// The database as SQL text.
    Export { schema: bool, data: bool },
    /// The migrations recorded in `table`.
    Applied { table: String },
    /// Applies `sql` as migration `name`, recorded in `table`.
    Apply {
        table: String,
        name: String,
        sql: String,
    },
    /// The database's size in bytes.
    Size,
    /// Creates the database (opening it does).
    Create,
}

impl D1Op {
    /// Whether the call refuses a database that does not exist (instead
    /// of creating it, as writes do).
    fn needs_existing(&self) -> bool {
        matches!(
            self,
            D1Op::Export { .. } | D1Op::Applied { .. } | D1Op::Size
        )
    }

    /// Runs the call on `db`, here.
    fn run(
        self,
        db: &D1Database,
        budget: &mut EventBudget,
        limit_bytes: u64,
    ) -> Result<D1Answer, D1Failure> {
        Ok(match self {
            D1Op::Query(statement) => {
                D1Answer::Result(db.query(&statement, budget, limit_bytes)?)
            }
            D1Op::Batch(statements) => {
                D1Answer::Results(db.batch(&statements, budget, limit_bytes)?)
            }
            D1Op::Exec(sql) => D1Answer::Result(db.exec(&sql, budget, limit_bytes)?),
            D1Op::Export { schema, data } => {
                D1Answer::Dump(db.dump(DumpOptions { schema, data }, limit_bytes)?)
            }
            D1Op::Applied { table } => {
                D1Answer::Applied(db.applied_migrations(&table, limit_bytes)?)
            }
            D1Op::Apply { table, name, sql } => {
                db.apply_migration(&table, &name, &sql, limit_bytes)?;
                D1Answer::Done
            }
            D1Op::Size => D1Answer::Size(db.size()?),
            D1Op::Create => D1Answer::Done,
        })
    }
}

/// What a call answered.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum D1Answer {
    Result(QueryResult),
    Results(Vec<QueryResult>),
    Dump(String),
    Applied(Vec<AppliedMigration>),
    Size(u64),
    Done,
}

/// Why a call failed.
#[derive(Debug, Clone, Serialize, Deserialize, thiserror::Error)]
pub(crate) enum D1Failure {
    /// The SQL failed, as SQLite or the rules said.
    #[error("{0}")]
    Sql(#[from] SqlError),
    #[error("no D1 database named `{0}` (create it with `verge d1 create {0}`)")]
    NotFound(String),
    /// The call names something invalid (a database).
    #[error("{0}")]
    Invalid(String),
    /// The database's owner could not be found or reached; the message
    /// says whether the call may have run.
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

impl D1Failure {
    fn internal(error: anyhow::Error) -> Self {
        D1Failure::Internal(format!("{error:#}"))
    }
}

/// A call as it travels to the owner.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct D1Request {
    database: String,
    op: D1Op,
    /// The caller's `limits.sql_ms`, to name in errors.
    limit_us: u64,
    /// What is left of the caller's SQL time.
    remaining_us: u64,
    limit_bytes: u64,
}

/// The owner's answer to a forwarded call.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum D1Reply {
    /// The peer does not own the database; it ran nothing.
    NotOwner,
    Answered {
        result: Result<D1Answer, D1Failure>,
        /// What is left of the SQL time after the call.
        remaining_us: u64,
    },
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

/// What the guest may still spend: its SQL time, within its wall-clock
/// deadline.
fn remaining(budget: &EventBudget) -> Duration {
    match budget.wall_deadline {
        Some(wall) => budget
            .remaining
            .min(wall.saturating_duration_since(Instant::now())),
        None => budget.remaining,
    }
}

/// Databases given up in a cluster, until the calls that had them end.
pub(super) type Retired = HashMap<String, Weak<D1Database>>;

impl D1Store {
    /// Runs `op` on the database `name` within `budget`, capped at
    /// `limit_bytes`: here, or on its owner in a cluster. Returns what is
    /// left of the budget too.
    pub(crate) async fn call(
        &self,
        name: &str,
        op: D1Op,
        budget: EventBudget,
        limit_bytes: u64,
    ) -> (Result<D1Answer, D1Failure>, EventBudget) {
        if let Err(e) = validate_database_name(name) {
            return (Err(D1Failure::Invalid(e.to_string())), budget);
        }
        let Some(cluster) = self.cluster.clone() else {
            if op.needs_existing() && !self.exists(name) {
                return (Err(D1Failure::NotFound(name.to_owned())), budget);
            }
            return match self.database(name) {
                Ok(db) => run_here(db, op, budget, limit_bytes).await,
                Err(e) => (Err(D1Failure::internal(e)), budget),
            };
        };
        self.call_in_cluster(&cluster, name, op, budget, limit_bytes)
            .await
    }

    async fn call_in_cluster(
        &self,
        cluster: &Arc<Cluster>,
        name: &str,
        op: D1Op,
        mut budget: EventBudget,
        limit_bytes: u64,
    ) -> (Result<D1Answer, D1Failure>, EventBudget) {
        let key = d1_key(name);
        if op.needs_existing() {
            match cluster.d1_exists(&key).await {
                Ok(true) => {}
                Ok(false) => return (Err(D1Failure::NotFound(name.to_owned())), budget),
                Err(e) => return (Err(D1Failure::Unavailable(format!("{e:#}"))), budget),
            }
        }
        let started = Instant::now();
        loop {
            let why = match self.owned(cluster, name, &key).await {
                Ok(Some(db)) => return run_here(db, op, budget, limit_bytes).await,
                Err(e) => {
                    let error = format!("cannot place D1 database `{name}`: {e:#}");
                    return (Err(D1Failure::Unavailable(error)), budget);
                }
                Ok(None) => match cluster.locate(&key).await {
                    // Taken here meanwhile: `owned` opens it next time.
                    Ok(Owner::Me(_)) => "this host took it meanwhile".to_owned(),
                    Ok(Owner::Peer { host, address }) => {
                        let request = D1Request {
                            database: name.to_owned(),
                            op: op.clone(),
                            limit_us: micros(budget.limit),
                            remaining_us: micros(remaining(&budget)),
                            limit_bytes,
                        };
                        let timeout = remaining(&budget) + FORWARD_SLACK;
                        match cluster
                            .forward_d1(&host, &address, &key, &request, timeout)
                            .await
                        {
                            PeerDelivery::Answered(D1Reply::Answered {
                                result,
                                remaining_us,
                            }) => {
                                budget.remaining =
                                    budget.remaining.min(Duration::from_micros(remaining_us));
                                return (result, budget);
                            }
                            PeerDelivery::Answered(D1Reply::NotOwner) => {
                                format!("{address} does not own it")
                            }
                            PeerDelivery::NotThere(why) => why,
                            PeerDelivery::Unknown(why) => {
                                return (Err(D1Failure::Unavailable(why)), budget);
                            }
                        }
                    }
                    Err(e) => {
                        let error = format!("cannot place D1 database `{name}`: {e:#}");
                        return (Err(D1Failure::Unavailable(error)), budget);
                    }
                },
            };
            cluster.forget_owner(&key);
            if started.elapsed() + RELOCATE_PAUSE >= RELOCATE_TIMEOUT {
                let error = format!(
                    "the owner of D1 database `{name}` could not be reached in time ({why}); retry"
                );
                return (Err(D1Failure::Unavailable(error)), budget);
            }
            tokio::time::sleep(RELOCATE_PAUSE).await;
        }
    }

    /// Runs a call a peer forwarded, if this host owns the database (or
    /// can take it).
    pub(crate) async fn serve_forwarded(&self, request: D1Request) -> D1Reply {
        let D1Request {
            database,
            op,
            limit_us,
            remaining_us,
            limit_bytes,
        } = request;
        let budget = EventBudget {
            limit: Duration::from_micros(limit_us),
            remaining: Duration::from_micros(remaining_us),
            wall_deadline: None,
        };
        let answered = |result, budget: EventBudget| D1Reply::Answered {
            result,
            remaining_us: micros(budget.remaining),
        };
        if let Err(e) = validate_database_name(&database) {
            return answered(Err(D1Failure::Invalid(e.to_string())), budget);
        }
        let Some(cluster) = self.cluster.clone() else {
            return answered(
                Err(D1Failure::Internal("this host is not in a cluster".into())),
                budget,
            );
        };
        match self.owned(&cluster, &database, &d1_key(&database)).await {
            Ok(Some(db)) => {
                let (result, budget) = run_here(db, op, budget, limit_bytes).await;
                answered(result, budget)
            }
            Ok(None) => D1Reply::NotOwner,
            Err(e) => answered(
                Err(D1Failure::Unavailable(format!(
                    "cannot place D1 database `{database}`: {e:#}"
                ))),
                budget,
            ),
        }
    }

    /// The database `name` if this host owns it, opened as a replica of
    /// its history (claimed and rebuilt when this host had no live copy);
    /// `None` when another host owns it.
    async fn owned(
        &self,
        cluster: &Arc<Cluster>,
        name: &str,
        key: &ObjectKey,
    ) -> Result<Option<Arc<D1Database>>> {
        match self.open_copy(name) {
            Some(db) if db.is_live() => return Ok(Some(db)),
            Some(_) => {}
            None => {
                if let Owner::Peer { .. } = cluster.locate(key).await? {
                    return Ok(None);
                }
            }
        }
        // One opening at a time, so a database is never rebuilt twice at
        // once or under a copy still open.
        let mut retired = self.retired.lock().await;
        if let Some(db) = self.open_copy(name) {
            if db.is_live() {
                return Ok(Some(db));
            }
            // Its lease lapsed, or a write was not confirmed: what it holds
            // can no longer be trusted.
            self.forget_copy(name);
            db.give_up();
            retired.insert(name.to_owned(), Arc::downgrade(&db));
        }
        if let Owner::Peer { .. } = cluster.locate(key).await? {
            return Ok(None);
        }
        if let Some(old) = retired.remove(name)
            && !closed(&old).await
        {
            retired.insert(name.to_owned(), old);
            anyhow::bail!(
                "the previous copy of D1 database `{name}` on this host is still in use; retry"
            );
        }
        let path = self.path(name);
        let Some(replica) = Replica::open(cluster, key, &path).await? else {
            return Ok(None);
        };
        cluster.d1_name(key, name).await?;
        let runtime = tokio::runtime::Handle::current();
        let db_name = name.to_owned();
        let db = tokio::task::spawn_blocking(move || {
            D1Database::open_replica(&path, &db_name, replica, runtime)
        })
        .await
        .context("the task opening the database failed")??;
        let db = Arc::new(db);
        self.keep_copy(name, db.clone());
        tracing::debug!(database = name, "holds the D1 database");
        Ok(Some(db))
    }
}

/// Waits until the calls holding a copy that was given up have ended;
/// `false` when they did not in time.
async fn closed(copy: &Weak<D1Database>) -> bool {
    let started = Instant::now();
    while copy.strong_count() > 0 {
        if started.elapsed() > CLOSE_TIMEOUT {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    true
}

/// Runs `op` on `db` on the blocking pool (SQLite blocks; in a cluster a
/// write also waits there for its shipment).
async fn run_here(
    db: Arc<D1Database>,
    op: D1Op,
    mut budget: EventBudget,
    limit_bytes: u64,
) -> (Result<D1Answer, D1Failure>, EventBudget) {
    let before = budget;
    tokio::task::spawn_blocking(move || {
        let result = op.run(&db, &mut budget, limit_bytes);
        (result, budget)
    })
    .await
    .unwrap_or_else(|e| {
        let error = format!("the query failed on the host: {e}");
        (Err(D1Failure::Internal(error)), before)
    })
}

/// SQLite values as JSON, for calls and answers that travel between
/// hosts: tagged, so that integers, reals, text and blobs come back as
/// what they were (reals by their bits: JSON has no infinity).
pub(crate) mod values {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD as BASE64;
    use rusqlite::types::Value;
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    #[serde(tag = "t", content = "v")]
    pub(super) enum Wire {
        Null,
        Integer(i64),
        Real(u64),
        Text(String),
        Blob(String),
    }

    pub(super) fn to_wire(value: &Value) -> Wire {
        match value {
            Value::Null => Wire::Null,
            Value::Integer(i) => Wire::Integer(*i),
            Value::Real(r) => Wire::Real(r.to_bits()),
            Value::Text(t) => Wire::Text(t.clone()),
            Value::Blob(b) => Wire::Blob(BASE64.encode(b)),
        }
    }

    pub(super) fn from_wire(wire: Wire) -> Result<Value, String> {
        Ok(match wire {
            Wire::Null => Value::Null,
            Wire::Integer(i) => Value::Integer(i),
            Wire::Real(bits) => Value::Real(f64::from_bits(bits)),
            Wire::Text(t) => Value::Text(t),
            Wire::Blob(b) => Value::Blob(
                BASE64
                    .decode(b)
                    .map_err(|e| format!("a blob that is not base64: {e}"))?,
            ),
        })
    }

    pub(crate) fn serialize<S: Serializer>(values: &[Value], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(values.iter().map(to_wire))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Value>, D::Error> {
        Vec::<Wire>::deserialize(d)?
            .into_iter()
            .map(from_wire)
            .collect::<Result<_, _>>()
            .map_err(D::Error::custom)
    }
}

/// Rows of SQLite values as JSON (see [`values`]).
pub(crate) mod rows {
    use rusqlite::types::Value;
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serializer};

    use super::values::{Wire, from_wire, to_wire};

    pub(crate) fn serialize<S: Serializer>(rows: &[Vec<Value>], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(
            rows.iter()
                .map(|row| row.iter().map(to_wire).collect::<Vec<_>>()),
        )
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Vec<Vec<Value>>, D::Error> {
        Vec::<Vec<Wire>>::deserialize(d)?
            .into_iter()
            .map(|row| row.into_iter().map(from_wire).collect())
            .collect::<Result<_, String>>()
            .map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use rusqlite::types::Value;

    use super::*;

    #[test]
    fn calls_and_answers_keep_every_value_and_error_kind_across_json() {
        let values = vec![
            Value::Null,
            Value::Integer(i64::MIN),
            Value::Real(f64::INFINITY),
            Value::Real(-0.0),
            Value::Real(0.1),
            Value::Text("naïve 'quoted'".into()),
            Value::Blob(vec![0, 1, 254, 255]),
        ];
        let op = D1Op::Batch(vec![Statement {
            sql: "INSERT INTO t VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)".into(),
            params: values.clone(),
        }]);
        let json = serde_json::to_string(&op).unwrap();
        let D1Op::Batch(back) = serde_json::from_str(&json).unwrap() else {
            panic!("not a batch: {json}");
        };
        assert_eq!(back[0].params.len(), values.len());
        for (a, b) in back[0].params.iter().zip(&values) {
            match (a, b) {
                (Value::Real(a), Value::Real(b)) => assert_eq!(a.to_bits(), b.to_bits()),
                (a, b) => assert_eq!(a, b),
            }
        }

        let answer: Result<D1Answer, D1Failure> = Ok(D1Answer::Result(QueryResult {
            columns: vec!["v".into()],
            rows: values.iter().map(|v| vec![v.clone()]).collect(),
            ..QueryResult::default()
        }));
        let json = serde_json::to_string(&answer).unwrap();
        let back: Result<D1Answer, D1Failure> = serde_json::from_str(&json).unwrap();
        let Ok(D1Answer::Result(result)) = back else {
            panic!("{json}");
        };
        assert_eq!(result.rows.len(), values.len());
        assert_eq!(result.rows[6][0], Value::Blob(vec![0, 1, 254, 255]));

        let failure: Result<D1Answer, D1Failure> = Err(D1Failure::Sql(SqlError::new(
            crate::objects::storage::SqlErrorKind::Constraint,
            "UNIQUE constraint failed: notes.title",
        )));
        let json = serde_json::to_string(&failure).unwrap();
        match serde_json::from_str::<Result<D1Answer, D1Failure>>(&json).unwrap() {
            Err(D1Failure::Sql(e)) => {
                assert_eq!(e.kind, crate::objects::storage::SqlErrorKind::Constraint);
                assert!(e.message.contains("UNIQUE"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_blob_that_is_not_base64_is_refused_not_misread() {
        let json = r#"{"Query":{"sql":"SELECT ?1","params":[{"t":"Blob","v":"@@"}]}}"#;
        let error = serde_json::from_str::<D1Op>(json).unwrap_err();
        assert!(error.to_string().contains("not base64"), "{error}");
    }
}
