//! The cluster-wide alarm index: when each object's alarms are due, in
//! Postgres, kept a superset of what the objects' own databases hold the
//! same way a single host's index is (`objects/alarms/index.rs`): earlier
//! times are added before a batch commits, the exact set replaces them
//! after its changes are durable.
//!
//! The owner fires its objects' alarms from its own schedule. An alarm
//! whose object has no live owner is picked up by whichever host looks
//! first (every host looks every second); firing it takes the object.

use anyhow::{Context, Result};
use sqlx::Row;

use super::Cluster;
use crate::objects::{ObjectId, ObjectKey};

/// One alarm due on an object nobody alive owns.
pub(crate) struct Orphan {
    pub(crate) key: ObjectKey,
    pub(crate) name: String,
    pub(crate) at_ms: i64,
}

impl Cluster {
    /// Adds `alarms` to the object's rows, keeping the earlier of two
    /// times for one alarm; with `replace`, makes them the whole set.
    pub(crate) async fn index_alarms(
        &self,
        key: &ObjectKey,
        alarms: &[(String, i64)],
        replace: bool,
    ) -> Result<()> {
        let (namespace, id) = (&*key.namespace, key.id.to_string());
        let names: Vec<&str> = alarms.iter().map(|(name, _)| name.as_str()).collect();
        let times: Vec<i64> = alarms.iter().map(|(_, at)| *at).collect();
        let mut tx = self.pool.begin().await?;
        if replace {
            sqlx::query("DELETE FROM alarms WHERE namespace = $1 AND object_id = $2")
                .bind(namespace)
                .bind(&id)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query(
            "INSERT INTO alarms (namespace, object_id, name, at_ms)
             SELECT $1, $2, a.name, a.at_ms FROM UNNEST($3::text[], $4::bigint[]) AS a(name, at_ms)
             ON CONFLICT (namespace, object_id, name)
             DO UPDATE SET at_ms = LEAST(alarms.at_ms, EXCLUDED.at_ms)",
        )
        .bind(namespace)
        .bind(&id)
        .bind(&names)
        .bind(&times)
        .execute(&mut *tx)
        .await?;
        tx.commit()
            .await
            .with_context(|| format!("indexing object {key}'s alarms in the cluster"))
    }

    /// Alarms due by `due_by_ms` whose objects no live host owns.
    pub(crate) async fn orphaned_alarms(&self, due_by_ms: i64) -> Result<Vec<Orphan>> {
        let rows = sqlx::query(
            "SELECT a.namespace, a.object_id, a.name, a.at_ms FROM alarms a
             LEFT JOIN objects o ON o.namespace = a.namespace AND o.object_id = a.object_id
             WHERE a.at_ms <= $1
               AND NOT EXISTS (SELECT 1 FROM hosts h
                               WHERE h.id = o.owner AND h.lease_expires > now())
             ORDER BY a.at_ms LIMIT 1000",
        )
        .bind(due_by_ms)
        .fetch_all(&self.pool)
        .await
        .context("looking for alarms of objects without an owner")?;
        let mut orphans = Vec::with_capacity(rows.len());
        for row in rows {
            let id: String = row.try_get("object_id")?;
            let Ok(id) = ObjectId::parse(&id) else {
                continue;
            };
            let namespace: String = row.try_get("namespace")?;
            orphans.push(Orphan {
                key: ObjectKey {
                    namespace: namespace.into(),
                    id,
                },
                name: row.try_get("name")?,
                at_ms: row.try_get("at_ms")?,
            });
        }
        Ok(orphans)
    }
}
