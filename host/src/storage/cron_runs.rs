//! The control database's record of cron triggers: for each worker and
//! expression, the latest matching time a run was started for.

use anyhow::Result;
use rusqlite::params;

use super::ControlStore;

impl ControlStore {
    /// Every recorded trigger: (worker, cron, scheduled time in Unix ms).
    pub(crate) fn cron_runs(&self) -> Result<Vec<(String, String, i64)>> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT worker, cron, scheduled_ms FROM cron_runs")?;
        let rows = stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Records that `cron` of `worker` was run for `scheduled_ms`.
    pub(crate) fn record_cron_run(
        &self,
        worker: &str,
        cron: &str,
        scheduled_ms: i64,
    ) -> Result<()> {
        self.conn().execute(
            "INSERT INTO cron_runs (worker, cron, scheduled_ms) VALUES (?1, ?2, ?3)
             ON CONFLICT (worker, cron) DO UPDATE SET scheduled_ms = excluded.scheduled_ms",
            params![worker, cron, scheduled_ms],
        )?;
        Ok(())
    }

    /// Forgets a trigger its worker no longer has, so adding it back
    /// later does not make up runs from before.
    pub(crate) fn forget_cron(&self, worker: &str, cron: &str) -> Result<()> {
        self.conn().execute(
            "DELETE FROM cron_runs WHERE worker = ?1 AND cron = ?2",
            params![worker, cron],
        )?;
        Ok(())
    }
}
