//! The host-wide alarm index in the control database: which object has an
//! alarm due when, so the scheduler can wake objects that are not in memory
//! and pick every alarm up again after a restart.
//!
//! An object's own database holds the truth (`_verge_alarms`, written in the
//! event's transaction). The index is written twice around each commit that
//! changed alarms: new times are added before the commit, and the object's
//! exact set replaces its rows after. A crash in between leaves extra rows,
//! never missing ones; an extra row fires an alarm event that finds nothing
//! in the object's database and does nothing.

use std::sync::Mutex;

use anyhow::{Context, Result};
use rusqlite::params;

use super::AlarmSchedule;
use crate::objects::ObjectKey;
use crate::objects::storage::{ObjectDb, lock};
use crate::storage::ControlStore;

/// One alarm as the index knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AlarmRecord {
    pub(crate) namespace: String,
    pub(crate) object_id: String,
    pub(crate) name: String,
    pub(crate) at_ms: i64,
}

impl ControlStore {
    /// Every indexed alarm (read once, when the host starts).
    pub(crate) fn alarms(&self) -> Result<Vec<AlarmRecord>> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT namespace, object_id, name, at_ms FROM alarms")?;
        let rows = stmt.query_map([], |r| {
            Ok(AlarmRecord {
                namespace: r.get(0)?,
                object_id: r.get(1)?,
                name: r.get(2)?,
                at_ms: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Adds or moves an object's alarms, keeping the ones not named.
    pub(crate) fn upsert_alarms(
        &self,
        namespace: &str,
        object_id: &str,
        alarms: &[(String, i64)],
    ) -> Result<()> {
        self.write_alarms(namespace, object_id, alarms, false)
    }

    /// Makes `alarms` the object's whole set.
    pub(crate) fn replace_alarms(
        &self,
        namespace: &str,
        object_id: &str,
        alarms: &[(String, i64)],
    ) -> Result<()> {
        self.write_alarms(namespace, object_id, alarms, true)
    }

    fn write_alarms(
        &self,
        namespace: &str,
        object_id: &str,
        alarms: &[(String, i64)],
        replace: bool,
    ) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        if replace {
            tx.execute(
                "DELETE FROM alarms WHERE namespace = ?1 AND object_id = ?2",
                params![namespace, object_id],
            )?;
        }
        {
            let mut upsert = tx.prepare_cached(
                "INSERT INTO alarms (namespace, object_id, name, at_ms) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (namespace, object_id, name) DO UPDATE SET at_ms = excluded.at_ms",
            )?;
            for (name, at_ms) in alarms {
                upsert.execute(params![namespace, object_id, name, at_ms])?;
            }
        }
        tx.commit()?;
        Ok(())
    }
}

/// Commits a batch, keeping the alarm index a superset of the object's
/// alarms: new times go in before the commit, the exact set after.
pub(crate) fn commit_with_index(
    db: &Mutex<ObjectDb>,
    control: &ControlStore,
    schedule: &AlarmSchedule,
    key: &ObjectKey,
) -> Result<()> {
    let mut guard = lock(db);
    if guard.alarms_changed() {
        let alarms = guard.alarm_list()?;
        control
            .upsert_alarms(&key.namespace, &key.id.to_string(), &alarms)
            .context("recording alarms in the alarm index")?;
    }
    guard.commit_batch()?;
    drop(guard);
    sync_index(db, control, schedule, key);
    Ok(())
}

/// Gives the alarm index and the scheduler the object's alarms, after a
/// batch that changed them committed or rolled back.
pub(crate) fn sync_index(
    db: &Mutex<ObjectDb>,
    control: &ControlStore,
    schedule: &AlarmSchedule,
    key: &ObjectKey,
) {
    let mut guard = lock(db);
    if !guard.take_alarms_changed() {
        return;
    }
    let synced = guard
        .alarm_list()
        .map_err(anyhow::Error::from)
        .and_then(|alarms| {
            control.replace_alarms(&key.namespace, &key.id.to_string(), &alarms)?;
            Ok(alarms)
        });
    match synced {
        Ok(alarms) => schedule.replace(key, alarms),
        // The index keeps the superset written before the commit: at
        // worst an alarm event finds nothing to fire.
        Err(e) => tracing::error!(object = %key, "updating the alarm index: {e:#}"),
    }
}
