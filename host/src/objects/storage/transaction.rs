//! The transactions the host wraps around guest code: one per batch of
//! events, a savepoint per event, and nested savepoints for the guest's
//! own `transaction_sync`.

use super::{ObjectDb, SqlError, SqlErrorKind, run_cached};

impl ObjectDb {
    /// Starts the transaction of a batch of events.
    pub(crate) fn begin_batch(&mut self) -> Result<(), SqlError> {
        self.lost = None;
        self.internal(|c| run_cached(c, "BEGIN IMMEDIATE"))?;
        self.in_batch = true;
        Ok(())
    }

    /// Makes the batch durable: when this returns `Ok`, the writes survive a
    /// crash. A batch SQLite or a failed undo has lost does not commit.
    pub(crate) fn commit_batch(&mut self) -> Result<(), SqlError> {
        let result = self.internal(|c| run_cached(c, "COMMIT"));
        if result.is_ok() {
            self.in_batch = false;
        }
        result
    }

    /// Abandons the batch, after a failed commit.
    pub(crate) fn rollback_batch(&mut self) {
        self.lost = None;
        self.internal_tables = false;
        let _ = self.internal(|c| run_cached(c, "ROLLBACK"));
        self.in_batch = false;
    }

    /// Opens the savepoint around one event.
    pub(crate) fn begin_event(&mut self) -> Result<(), SqlError> {
        self.transaction_depth = 0;
        self.internal(|c| run_cached(c, "SAVEPOINT verge_event"))
    }

    /// Keeps (`true`) or discards the event's writes, closing any
    /// transaction the guest left open.
    pub(crate) fn end_event(&mut self, keep: bool) -> Result<(), SqlError> {
        self.transaction_depth = 0;
        if !keep {
            // The tables may have been created by the writes undone here.
            self.internal_tables = false;
        }
        if self.lost.is_some() {
            // SQLite already undid everything: nothing to keep or discard.
            return Ok(());
        }
        let ended = self.internal(|c| {
            if !keep {
                run_cached(c, "ROLLBACK TO verge_event")?;
            }
            run_cached(c, "RELEASE verge_event")
        });
        if let Err(e) = &ended
            && !keep
        {
            // The failed event's writes may still be in the transaction:
            // nothing of this batch may commit.
            self.lost = Some(format!("a failed event's writes could not be undone: {e}"));
        }
        ended
    }

    /// `transaction-begin`: a nested savepoint.
    pub(crate) fn transaction_begin(&mut self) -> Result<(), SqlError> {
        self.transaction_depth += 1;
        let name = format!("verge_tx_{}", self.transaction_depth);
        self.internal(|c| c.execute_batch(&format!("SAVEPOINT {name}")))
    }

    /// `transaction-commit` (`keep`) or `transaction-rollback`.
    pub(crate) fn transaction_end(&mut self, keep: bool) -> Result<(), SqlError> {
        if !keep {
            self.internal_tables = false;
        }
        if self.transaction_depth == 0 {
            return Err(SqlError::new(SqlErrorKind::Other, "no transaction is open"));
        }
        let name = format!("verge_tx_{}", self.transaction_depth);
        self.transaction_depth -= 1;
        self.internal(|c| {
            if !keep {
                c.execute_batch(&format!("ROLLBACK TO {name}"))?;
            }
            c.execute_batch(&format!("RELEASE {name}"))
        })
    }
}

#[cfg(test)]
mod tests {
    use rusqlite::types::Value;

    use super::super::tests::db;

    #[test]
    fn savepoints_roll_back_an_event_and_keep_the_batch() {
        let (_dir, mut db) = db();
        db.exec("CREATE TABLE t (v INTEGER)", &[]).unwrap();
        db.begin_batch().unwrap();
        db.begin_event().unwrap();
        db.exec("INSERT INTO t VALUES (1)", &[]).unwrap();
        db.end_event(true).unwrap();
        db.begin_event().unwrap();
        db.exec("INSERT INTO t VALUES (2)", &[]).unwrap();
        db.end_event(false).unwrap();
        db.commit_batch().unwrap();
        let rows = db.exec("SELECT v FROM t", &[]).unwrap();
        assert_eq!(rows.rows, vec![vec![Value::Integer(1)]]);
    }

    #[test]
    fn a_failed_event_that_cannot_be_undone_fails_its_batch() {
        let (_dir, mut db) = db();
        db.exec("CREATE TABLE t (v INTEGER)", &[]).unwrap();
        db.begin_batch().unwrap();
        db.begin_event().unwrap();
        db.exec("INSERT INTO t VALUES (1)", &[]).unwrap();
        // The event's savepoint is gone (as after an I/O error), so its
        // writes can no longer be rolled back on their own.
        db.internal(|c| c.execute_batch("RELEASE verge_event"))
            .unwrap();
        assert!(db.end_event(false).is_err());
        assert!(
            db.commit_batch().is_err(),
            "the failed event's write must not commit"
        );
        db.rollback_batch();
        assert!(db.exec("SELECT v FROM t", &[]).unwrap().rows.is_empty());
    }
}
