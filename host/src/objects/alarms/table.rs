//! An object's alarms, in its own database (`_verge_alarms`), written in
//! the current event's transaction like any other write.

use rusqlite::OptionalExtension;

use crate::objects::storage::{ObjectDb, SqlError};

const CREATE: &str = "CREATE TABLE IF NOT EXISTS _verge_alarms (
    name  TEXT PRIMARY KEY,
    at_ms INTEGER NOT NULL,
    retry INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID";

/// An alarm taken for firing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DueAlarm {
    pub(crate) at_ms: i64,
    /// Failed attempts so far.
    pub(crate) retry: u32,
}

impl ObjectDb {
    /// Schedules (or moves) alarm `name`, as a fresh alarm with no retries.
    pub(crate) fn alarm_set(&mut self, name: &str, at_ms: i64) -> Result<(), SqlError> {
        self.alarm_write(name, at_ms, 0)
    }

    /// Reschedules alarm `name` after a failed attempt.
    pub(crate) fn alarm_retry(
        &mut self,
        name: &str,
        at_ms: i64,
        retry: u32,
    ) -> Result<(), SqlError> {
        self.alarm_write(name, at_ms, retry)
    }

    fn alarm_write(&mut self, name: &str, at_ms: i64, retry: u32) -> Result<(), SqlError> {
        self.alarms_changed = true;
        self.bounded(|db| {
            db.internal(|c| {
                c.execute_batch(CREATE)?;
                c.prepare_cached(
                    "INSERT INTO _verge_alarms (name, at_ms, retry) VALUES (?1, ?2, ?3)
                     ON CONFLICT (name) DO UPDATE SET at_ms = excluded.at_ms, retry = excluded.retry",
                )?
                .execute(rusqlite::params![name, at_ms, retry])
                .map(|_| ())
            })
        })
    }

    pub(crate) fn alarm_get(&mut self, name: &str) -> Result<Option<i64>, SqlError> {
        Ok(self.alarm_due(name)?.map(|due| due.at_ms))
    }

    fn alarm_due(&mut self, name: &str) -> Result<Option<DueAlarm>, SqlError> {
        if !self.has_alarms_table()? {
            return Ok(None);
        }
        self.internal(|c| {
            c.prepare_cached("SELECT at_ms, retry FROM _verge_alarms WHERE name = ?1")?
                .query_row([name], |r| {
                    Ok(DueAlarm {
                        at_ms: r.get(0)?,
                        retry: r.get(1)?,
                    })
                })
                .optional()
        })
    }

    /// Cancels alarm `name`; whether it was set.
    pub(crate) fn alarm_delete(&mut self, name: &str) -> Result<bool, SqlError> {
        if !self.has_alarms_table()? {
            return Ok(false);
        }
        self.alarms_changed = true;
        self.internal(|c| {
            c.prepare_cached("DELETE FROM _verge_alarms WHERE name = ?1")?
                .execute([name])
                .map(|n| n > 0)
        })
    }

    /// Every alarm, soonest first.
    pub(crate) fn alarm_list(&mut self) -> Result<Vec<(String, i64)>, SqlError> {
        if !self.has_alarms_table()? {
            return Ok(Vec::new());
        }
        self.internal(|c| {
            let mut statement =
                c.prepare_cached("SELECT name, at_ms FROM _verge_alarms ORDER BY at_ms, name")?;
            let rows = statement.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect()
        })
    }

    /// Removes alarm `name` for firing when it is due by `now_ms`: the
    /// handler may set it again, and a failed event brings it back.
    /// An alarm not due (moved, deleted, or an index entry a crash left
    /// behind) gives `None`; the index is then brought in line.
    pub(crate) fn alarm_take(
        &mut self,
        name: &str,
        now_ms: i64,
    ) -> Result<Option<DueAlarm>, SqlError> {
        self.alarms_changed = true;
        let Some(due) = self.alarm_due(name)?.filter(|due| due.at_ms <= now_ms) else {
            return Ok(None);
        };
        self.alarm_delete(name)?;
        Ok(Some(due))
    }

    /// Whether the batch wrote alarms.
    pub(crate) fn alarms_changed(&self) -> bool {
        self.alarms_changed
    }

    /// Whether the batch wrote alarms since the last call.
    pub(crate) fn take_alarms_changed(&mut self) -> bool {
        std::mem::take(&mut self.alarms_changed)
    }

    fn has_alarms_table(&mut self) -> Result<bool, SqlError> {
        self.internal(|c| {
            c.prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE name = '_verge_alarms')",
            )?
            .query_row([], |r| r.get(0))
        })
    }
}
