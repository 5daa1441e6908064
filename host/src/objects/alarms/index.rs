//! The host-wide alarm index in the control database: which object has an
//! alarm due when, so the scheduler can wake objects that are not in memory
//! and pick every alarm up again after a restart.
//!
//! An object's own database holds the truth (`_verge_alarms`, written in the
//! event's transaction). The index is written twice around each commit that
//! changed alarms: new times are added before the commit — an alarm moved
//! later keeps its earlier time until then — and the object's exact set
//! replaces its rows after. A crash in between leaves extra or early rows,
//! never missing or late ones; such a row fires an alarm event that finds
//! nothing due in the object's database and does nothing.

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

    /// Adds an object's alarms, keeping the ones not named, and the earlier
    /// of two times for one alarm: until the commit, the database still
    /// holds the old time, and an alarm must never fire late.
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
                 ON CONFLICT (namespace, object_id, name)
                 DO UPDATE SET at_ms = MIN(alarms.at_ms, excluded.at_ms)",
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
    if lock(db).take_alarms_changed() {
        reindex(db, control, schedule, key);
    }
}

/// Makes the object's alarms, as its database has them, the index's and
/// the scheduler's: after a batch, or after its database was replaced.
pub(crate) fn reindex(
    db: &Mutex<ObjectDb>,
    control: &ControlStore,
    schedule: &AlarmSchedule,
    key: &ObjectKey,
) {
    let synced = lock(db)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn at(control: &ControlStore, name: &str) -> Option<i64> {
        control
            .alarms()
            .unwrap()
            .into_iter()
            .find(|a| a.name == name)
            .map(|a| a.at_ms)
    }

    #[test]
    fn an_alarm_moved_later_keeps_its_earlier_time_until_the_commit() {
        let dir = tempfile::tempdir().unwrap();
        let control = ControlStore::open(&dir.path().join("control.db")).unwrap();
        control.add_version("w", "h", "name = \"w\"").unwrap();
        control
            .apply_migration(
                "w",
                &crate::storage::NamespaceMigration {
                    tag: "v1",
                    new_classes: &["C".to_owned()],
                    renamed: Vec::new(),
                    deleted: &[],
                },
            )
            .unwrap();
        let ns = control.namespaces().unwrap()[0].id.clone();
        control
            .replace_alarms(&ns, "o", &[("a".into(), 100)])
            .unwrap();
        // Before a commit that moves it to 500: a crash now must leave the
        // index firing at 100, when the database still says 100.
        control
            .upsert_alarms(&ns, "o", &[("a".into(), 500)])
            .unwrap();
        assert_eq!(at(&control, "a"), Some(100));
        // Moving earlier takes effect at once.
        control
            .upsert_alarms(&ns, "o", &[("a".into(), 50)])
            .unwrap();
        assert_eq!(at(&control, "a"), Some(50));
        // After the commit, the exact set.
        control
            .replace_alarms(&ns, "o", &[("a".into(), 500)])
            .unwrap();
        assert_eq!(at(&control, "a"), Some(500));
    }
}
