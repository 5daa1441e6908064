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

use anyhow::Result;
use rusqlite::params;

use super::ControlStore;

/// One alarm as the index knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlarmRecord {
    pub namespace: String,
    pub object_id: String,
    pub name: String,
    pub at_ms: i64,
}

impl ControlStore {
    /// Every indexed alarm (read once, when the host starts).
    pub fn alarms(&self) -> Result<Vec<AlarmRecord>> {
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
    pub fn upsert_alarms(
        &self,
        namespace: &str,
        object_id: &str,
        alarms: &[(String, i64)],
    ) -> Result<()> {
        self.write_alarms(namespace, object_id, alarms, false)
    }

    /// Makes `alarms` the object's whole set.
    pub fn replace_alarms(
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
