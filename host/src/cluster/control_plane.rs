//! The control plane in Postgres: workers, versions, deployments, secrets,
//! Durable Object namespaces, applied migrations and settings (the key
//! object ids are derived with), and uploaded components by hash.
//!
//! Each host keeps serving from its local control.db, as a single host
//! does. A change (deploy, rollback, secret) runs on one host inside a
//! Postgres transaction that holds an advisory lock: the host first pulls
//! the cluster's tables into its control.db, makes the change there with
//! the usual code, then pushes the tables back, bumps `control_revision`
//! and notifies `verge_control`. Every host listens, pulls and reloads
//! what serves (within milliseconds; a poll every few seconds covers a
//! lost connection). The tables are small, so whole-table copies keep
//! this simple and obviously right.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use rusqlite::types::Value;
use sqlx::postgres::{PgListener, PgRow};
// Table and column names come from `TABLES` below, never from input.
use sqlx::{AssertSqlSafe, Postgres, Row, Transaction};
use tokio::sync::watch;

use super::Cluster;
use crate::storage::ControlStore;

/// Serializes control changes cluster-wide (an arbitrary constant: "vc").
const CHANGE_LOCK: i64 = 0x7663;
const CHANNEL: &str = "verge_control";
/// How often a host checks the revision even without a notification.
const POLL_EVERY: Duration = Duration::from_secs(5);

#[derive(Clone, Copy)]
enum Kind {
    Text,
    Integer,
}

/// A control table copied between control.db and Postgres; both have it
/// under the same name with the same columns.
struct Table {
    name: &'static str,
    key: &'static [&'static str],
    columns: &'static [(&'static str, Kind)],
}

/// Parents before children: upserts go in this order.
const TABLES: &[Table] = &[
    Table {
        name: "settings",
        key: &["key"],
        columns: &[("key", Kind::Text), ("value", Kind::Text)],
    },
    Table {
        name: "workers",
        key: &["name"],
        columns: &[
            ("name", Kind::Text),
            ("active_version", Kind::Integer),
            ("created_at", Kind::Integer),
        ],
    },
    Table {
        name: "versions",
        key: &["worker", "version"],
        columns: &[
            ("worker", Kind::Text),
            ("version", Kind::Integer),
            ("component_hash", Kind::Text),
            ("config", Kind::Text),
            ("created_at", Kind::Integer),
        ],
    },
    Table {
        name: "deployments",
        key: &["id"],
        columns: &[
            ("id", Kind::Integer),
            ("worker", Kind::Text),
            ("version", Kind::Integer),
            ("deployed_at", Kind::Integer),
            ("parent", Kind::Integer),
        ],
    },
    Table {
        name: "secrets",
        key: &["worker", "name"],
        columns: &[
            ("worker", Kind::Text),
            ("name", Kind::Text),
            ("value", Kind::Text),
        ],
    },
    Table {
        name: "namespaces",
        key: &["id"],
        columns: &[
            ("id", Kind::Text),
            ("worker", Kind::Text),
            ("class", Kind::Text),
            ("created_at", Kind::Integer),
        ],
    },
    Table {
        name: "applied_migrations",
        key: &["worker", "tag"],
        columns: &[
            ("worker", Kind::Text),
            ("tag", Kind::Text),
            ("applied_at", Kind::Integer),
        ],
    },
];

type Rows = Vec<Vec<Value>>;

impl Table {
    fn column_list(&self) -> String {
        self.columns
            .iter()
            .map(|(name, _)| *name)
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// A row's key, comparable (SQLite values are not hashable).
    fn key_of(&self, row: &[Value]) -> String {
        key_text(
            self.columns
                .iter()
                .zip(row)
                .filter(|((name, _), _)| self.key.contains(name))
                .map(|(_, value)| value),
        )
    }

    fn read_local(&self, control: &ControlStore) -> Result<Rows> {
        let conn = control.conn();
        let mut stmt =
            conn.prepare(&format!("SELECT {} FROM {}", self.column_list(), self.name))?;
        let width = self.columns.len();
        let rows = stmt.query_map([], |row| (0..width).map(|i| row.get(i)).collect())?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    async fn read_cluster(&self, tx: &mut Transaction<'_, Postgres>) -> Result<Rows> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {} FROM {}",
            self.column_list(),
            self.name
        )))
        .fetch_all(&mut **tx)
        .await
        .with_context(|| format!("reading the cluster's {}", self.name))?;
        rows.iter()
            .map(|row| self.values(row))
            .collect::<Result<_>>()
    }

    fn values(&self, row: &PgRow) -> Result<Vec<Value>> {
        self.columns
            .iter()
            .enumerate()
            .map(|(i, (_, kind))| {
                Ok(match kind {
                    Kind::Text => row
                        .try_get::<Option<String>, _>(i)?
                        .map_or(Value::Null, Value::Text),
                    Kind::Integer => row
                        .try_get::<Option<i64>, _>(i)?
                        .map_or(Value::Null, Value::Integer),
                })
            })
            .collect()
    }

    /// Makes control.db's copy of the table equal to `rows`: rows gone
    /// from the cluster are deleted (with what cascades from them: a
    /// deleted worker's objects and alarms), the rest upserted.
    fn write_local(&self, tx: &rusqlite::Transaction<'_>, rows: &Rows) -> Result<()> {
        let wanted: std::collections::HashSet<String> =
            rows.iter().map(|row| self.key_of(row)).collect();
        let key_list = self.key.join(", ");
        let local: Vec<Vec<Value>> = {
            let mut stmt = tx.prepare(&format!("SELECT {key_list} FROM {}", self.name))?;
            let width = self.key.len();
            stmt.query_map([], |row| (0..width).map(|i| row.get(i)).collect())?
                .collect::<Result<_, _>>()?
        };
        let matches = self
            .key
            .iter()
            .enumerate()
            .map(|(i, column)| format!("{column} = ?{}", i + 1))
            .collect::<Vec<_>>()
            .join(" AND ");
        for key in local {
            if !wanted.contains(&key_text(key.iter())) {
                tx.execute(
                    &format!("DELETE FROM {} WHERE {matches}", self.name),
                    rusqlite::params_from_iter(&key),
                )?;
            }
        }
        let placeholders = (1..=self.columns.len())
            .map(|i| format!("?{i}"))
            .collect::<Vec<_>>()
            .join(", ");
        let updates = self
            .columns
            .iter()
            .filter(|(name, _)| !self.key.contains(name))
            .map(|(name, _)| format!("{name} = excluded.{name}"))
            .collect::<Vec<_>>();
        let on_conflict = if updates.is_empty() {
            "DO NOTHING".to_owned()
        } else {
            format!("DO UPDATE SET {}", updates.join(", "))
        };
        let mut upsert = tx.prepare(&format!(
            "INSERT INTO {} ({}) VALUES ({placeholders}) ON CONFLICT ({key_list}) {on_conflict}",
            self.name,
            self.column_list(),
        ))?;
        for row in rows {
            upsert.execute(rusqlite::params_from_iter(row))?;
        }
        Ok(())
    }

    /// Replaces the cluster's copy of the table with `rows`.
    async fn write_cluster(&self, tx: &mut Transaction<'_, Postgres>, rows: &Rows) -> Result<()> {
        sqlx::query(AssertSqlSafe(format!("DELETE FROM {}", self.name)))
            .execute(&mut **tx)
            .await?;
        let placeholders = (1..=self.columns.len())
            .map(|i| format!("${i}"))
            .collect::<Vec<_>>()
            .join(", ");
        let insert = format!(
            "INSERT INTO {} ({}) VALUES ({placeholders})",
            self.name,
            self.column_list()
        );
        for row in rows {
            let mut query = sqlx::query(AssertSqlSafe(insert.as_str()));
            for value in row {
                query = match value {
                    Value::Integer(n) => query.bind(*n),
                    Value::Text(text) => query.bind(text.as_str()),
                    // A NULL of either kind binds the same way.
                    _ => query.bind(None::<i64>),
                };
            }
            query
                .execute(&mut **tx)
                .await
                .with_context(|| format!("writing the cluster's {}", self.name))?;
        }
        Ok(())
    }
}

/// Key values as one comparable string.
fn key_text<'v>(values: impl Iterator<Item = &'v Value>) -> String {
    values
        .map(|value| format!("{value:?}"))
        .collect::<Vec<_>>()
        .join("\u{0}")
}

/// Copies the cluster's control tables into control.db.
async fn pull(tx: &mut Transaction<'_, Postgres>, control: &ControlStore) -> Result<()> {
    let mut tables = Vec::with_capacity(TABLES.len());
    for table in TABLES {
        tables.push(table.read_cluster(tx).await?);
    }
    let mut conn = control.conn();
    let local = conn.transaction()?;
    // Children first for deletes would be tidier, but a parent's delete
    // cascades to them anyway; upserts need parents first.
    for (table, rows) in TABLES.iter().zip(&tables) {
        table
            .write_local(&local, rows)
            .with_context(|| format!("copying the cluster's {} into control.db", table.name))?;
    }
    local.commit()?;
    Ok(())
}

/// A control change in progress: holds the cluster-wide lock until it is
/// committed or dropped (which rolls back, changing nothing in the
/// cluster; the next pull undoes what the host changed locally).
pub(crate) struct ControlChange {
    tx: Transaction<'static, Postgres>,
}

impl Cluster {
    /// Starts a control change: takes the cluster-wide lock and brings
    /// control.db up to date with the cluster.
    pub(crate) async fn begin_change(&self, control: &ControlStore) -> Result<ControlChange> {
        let mut tx = self
            .pool
            .begin()
            .await
            .context("the cluster's database is unreachable")?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(CHANGE_LOCK)
            .execute(&mut *tx)
            .await
            .context("taking the cluster's control lock")?;
        pull(&mut tx, control).await?;
        Ok(ControlChange { tx })
    }

    /// Brings control.db up to date with the cluster; returns the
    /// revision it is now at.
    pub(crate) async fn pull_control(&self, control: &ControlStore) -> Result<i64> {
        let mut tx = self
            .pool
            .begin()
            .await
            .context("the cluster's database is unreachable")?;
        // One consistent view of every table.
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .execute(&mut *tx)
            .await?;
        let revision = revision(&mut tx).await?;
        pull(&mut tx, control).await?;
        tx.commit().await?;
        Ok(revision)
    }

    /// Stores a setting every host must share, unless the cluster has it
    /// already (then the cluster's stays, and the next pull brings it).
    pub(crate) async fn seed_setting(&self, key: &str, value: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
        )
        .bind(key)
        .bind(value)
        .execute(&self.pool)
        .await
        .with_context(|| format!("storing the cluster's {key}"))?;
        Ok(())
    }

    /// The stored bytes of the component with `hash`.
    pub(crate) async fn component(&self, hash: &str) -> Result<Vec<u8>> {
        sqlx::query_scalar("SELECT bytes FROM components WHERE hash = $1")
            .bind(hash)
            .fetch_optional(&self.pool)
            .await
            .with_context(|| format!("fetching component {hash} from the cluster"))?
            .with_context(|| format!("the cluster has no component {hash}"))
    }

    /// Revisions of the control plane as they are announced. The platform
    /// pulls and reloads on each.
    pub(crate) fn watch_control(self: &Arc<Self>) -> watch::Receiver<i64> {
        let (announce, revisions) = watch::channel(0);
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut listener: Option<PgListener> = None;
            loop {
                let Some(cluster) = weak.upgrade() else { break };
                if listener.is_none() {
                    listener = match PgListener::connect_with(&cluster.pool).await {
                        Ok(mut new) => match new.listen(CHANNEL).await {
                            Ok(()) => Some(new),
                            Err(e) => {
                                tracing::debug!("listening for control changes: {e:#}");
                                None
                            }
                        },
                        Err(e) => {
                            tracing::debug!("connecting to hear of control changes: {e:#}");
                            None
                        }
                    };
                }
                // Whatever woke us, the stored revision is the truth.
                match cluster.current_revision().await {
                    Ok(revision) => {
                        announce.send_if_modified(|known| {
                            let newer = revision > *known;
                            *known = (*known).max(revision);
                            newer
                        });
                    }
                    Err(e) => tracing::debug!("reading the control revision: {e:#}"),
                }
                drop(cluster);
                match &mut listener {
                    Some(active) => {
                        match tokio::time::timeout(POLL_EVERY, active.try_recv()).await {
                            Ok(Ok(Some(_))) | Err(_) => {}
                            // The connection dropped: connect again.
                            Ok(Ok(None)) | Ok(Err(_)) => listener = None,
                        }
                    }
                    None => tokio::time::sleep(Duration::from_secs(1)).await,
                }
            }
        });
        revisions
    }

    async fn current_revision(&self) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT revision FROM control_revision")
            .fetch_one(&self.pool)
            .await?)
    }
}

async fn revision(tx: &mut Transaction<'_, Postgres>) -> Result<i64> {
    Ok(sqlx::query_scalar("SELECT revision FROM control_revision")
        .fetch_one(&mut **tx)
        .await?)
}

impl ControlChange {
    /// Pushes control.db's tables to the cluster, with the components its
    /// versions use that the cluster lacks (`component` reads one from
    /// this host's store), and tells every host.
    pub(crate) async fn commit(
        mut self,
        control: &ControlStore,
        component: impl Fn(&str) -> Result<Vec<u8>>,
    ) -> Result<()> {
        let mut tables = Vec::with_capacity(TABLES.len());
        for table in TABLES {
            tables.push(table.read_local(control)?);
        }
        for (table, rows) in TABLES.iter().zip(&tables) {
            table.write_cluster(&mut self.tx, rows).await?;
        }
        let hashes: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT v.component_hash FROM versions v
             WHERE NOT EXISTS (SELECT 1 FROM components c WHERE c.hash = v.component_hash)",
        )
        .fetch_all(&mut *self.tx)
        .await?;
        for hash in hashes {
            sqlx::query("INSERT INTO components (hash, bytes) VALUES ($1, $2)")
                .bind(&hash)
                .bind(component(&hash)?)
                .execute(&mut *self.tx)
                .await
                .with_context(|| format!("storing component {hash} in the cluster"))?;
        }
        sqlx::query(
            "DELETE FROM components c
             WHERE NOT EXISTS (SELECT 1 FROM versions v WHERE v.component_hash = c.hash)",
        )
        .execute(&mut *self.tx)
        .await?;
        let revision: i64 = sqlx::query_scalar(
            "UPDATE control_revision SET revision = revision + 1 RETURNING revision",
        )
        .fetch_one(&mut *self.tx)
        .await?;
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(revision.to_string())
            .execute(&mut *self.tx)
            .await?;
        self.tx
            .commit()
            .await
            .context("committing the control change to the cluster")?;
        Ok(())
    }
}
