//! Alarms, host side, all of them: how an object's alarms are stored, how
//! the host finds them again, how they fire and how a failing one retries.
//!
//! - `table.rs`: the truth, `_verge_alarms` in the object's own database,
//!   written in the event's transaction like any other write.
//! - `index.rs`: the host-wide index in the control database, kept a
//!   superset of every object's table around each commit.
//! - `schedule.rs`: the one task that wakes objects when their alarms
//!   fall due, whether or not they are in memory.
//! - here: firing one alarm inside its event, and the retry policy.
//!
//! An alarm event takes the alarm out of the table inside the event's
//! savepoint. If the handler fails, the rollback puts it back and the
//! actor reschedules it with exponential backoff, until its retries are
//! spent. Delivery is at least once.

mod index;
mod schedule;
mod table;

use std::sync::Mutex;
use std::time::Duration;

pub(crate) use index::{commit_with_index, reindex, sync_index};
pub(super) use schedule::{AlarmSchedule, adopt_orphans, run};
pub(crate) use table::DueAlarm;

use super::ObjectKey;
use super::error::ObjectError;
use super::storage::{ObjectDb, lock};
use crate::bindings::exports::verge::platform::object_events::AlarmInfo;
use crate::clock::unix_now_ms;

/// How failed alarms are retried, host-wide.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RetryPolicy {
    /// The delay before the first retry; each retry doubles it.
    pub(crate) base: Duration,
    /// Retries before the alarm is dropped.
    pub(crate) max_retries: u32,
}

impl RetryPolicy {
    /// When to try an alarm again after its `retry`-th failed attempt
    /// (0 for the first), or `None` once its retries are spent.
    fn delay(&self, retry: u32) -> Option<Duration> {
        (retry < self.max_retries).then(|| self.base.saturating_mul(1 << retry.min(20)))
    }
}

/// The alarm the current event fires, remembered for a retry if it fails.
pub(super) struct Firing {
    name: String,
    due: DueAlarm,
}

/// Takes alarm `name` out of the database to fire it: what the handler is
/// told, and what a retry needs. `None` when it is no longer due (moved or
/// deleted since it was scheduled).
pub(super) fn take(
    db: &Mutex<ObjectDb>,
    name: &str,
) -> Result<Option<(AlarmInfo, Firing)>, ObjectError> {
    let due = lock(db)
        .alarm_take(name, unix_now_ms())
        .map_err(ObjectError::storage)?;
    Ok(due.map(|due| {
        let info = AlarmInfo {
            name: name.to_owned(),
            scheduled: due.at_ms,
            retry_count: due.retry,
            is_retry: due.retry > 0,
        };
        let firing = Firing {
            name: name.to_owned(),
            due,
        };
        (info, firing)
    }))
}

/// After a failed alarm event (its take rolled back), schedules the next
/// attempt, or drops the alarm once its retries are spent. Returns whether
/// the failure is handled: the scheduler then has nothing more to do.
pub(super) fn reschedule_failed(
    db: &Mutex<ObjectDb>,
    key: &ObjectKey,
    firing: Firing,
    policy: RetryPolicy,
) -> bool {
    let Firing { name, due } = firing;
    let result = match policy.delay(due.retry) {
        None => {
            tracing::error!(object = %key, alarm = name, "alarm failed {} times; dropping it", due.retry + 1);
            lock(db).alarm_delete(&name).map(drop)
        }
        Some(delay) => {
            let at = unix_now_ms().saturating_add(delay.as_millis() as i64);
            tracing::warn!(object = %key, alarm = name, "alarm failed; retrying in {delay:?}");
            lock(db).alarm_retry(&name, at, due.retry + 1)
        }
    };
    match result {
        Ok(()) => true,
        Err(e) => {
            tracing::error!(object = %key, alarm = name, "cannot reschedule the alarm: {e}");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_exponentially_then_stop() {
        let policy = RetryPolicy {
            base: Duration::from_secs(2),
            max_retries: 3,
        };
        let delays: Vec<_> = (0..4).map(|retry| policy.delay(retry)).collect();
        assert_eq!(
            delays,
            [
                Some(Duration::from_secs(2)),
                Some(Duration::from_secs(4)),
                Some(Duration::from_secs(8)),
                None
            ]
        );
    }
}
