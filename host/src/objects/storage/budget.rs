//! How long guest SQL may run. SQLite is synchronous and runs on the
//! object runtime's threads: a query that never ends would hold one for
//! good. So each event gets a budget of SQL time (`limits.sql_ms`, and never
//! past the event's wall-clock deadline), and a progress handler SQLite
//! calls every few thousand virtual-machine steps interrupts the statement
//! once the budget is spent.
//!
//! The deadline is armed only while a guest statement runs: the host's own
//! statements (commits above all) are never interrupted.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// SQLite virtual-machine steps between two looks at the clock: a few
/// microseconds of work, so an interrupt comes promptly and the clock costs
/// nothing measurable.
pub(crate) const STEPS_PER_CHECK: i32 = 4096;

const DISARMED: u64 = u64::MAX;

/// The deadline the progress handler checks, shared with it.
pub(crate) struct Deadline {
    /// Nanoseconds after `base`, or [`DISARMED`].
    at: AtomicU64,
    base: Instant,
}

impl Deadline {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            at: AtomicU64::new(DISARMED),
            base: Instant::now(),
        })
    }

    /// The progress handler: whether to interrupt the running statement.
    pub(crate) fn passed(&self) -> bool {
        let at = self.at.load(Ordering::Relaxed);
        at != DISARMED && self.base.elapsed().as_nanos() as u64 >= at
    }

    fn arm(&self, until: Instant) {
        let at = until.saturating_duration_since(self.base).as_nanos() as u64;
        self.at.store(at.min(DISARMED - 1), Ordering::Relaxed);
    }

    fn disarm(&self) {
        self.at.store(DISARMED, Ordering::Relaxed);
    }
}

/// What is left of the current event's SQL time.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EventBudget {
    /// `limits.sql_ms`, to name in errors.
    pub(crate) limit: Duration,
    pub(crate) remaining: Duration,
    /// The event's wall-clock deadline, which SQL never runs past.
    pub(crate) wall_deadline: Option<Instant>,
}

impl EventBudget {
    /// A fresh budget of `limit`, ending at `wall_deadline` at the latest.
    pub(crate) fn new(limit: Duration, wall_deadline: Option<Instant>) -> Self {
        Self {
            limit,
            remaining: limit,
            wall_deadline,
        }
    }

    /// Outside any event (tests, tools): generous.
    pub(crate) fn unlimited() -> Self {
        Self::new(Duration::from_secs(3600), None)
    }

    /// Runs `statement` with the deadline armed, and charges its time.
    /// `None` when nothing is left to run it with.
    pub(crate) fn run<T>(
        &mut self,
        deadline: &Deadline,
        statement: impl FnOnce() -> T,
    ) -> Option<T> {
        let started = Instant::now();
        let mut until = started.checked_add(self.remaining)?;
        if let Some(wall) = self.wall_deadline {
            until = until.min(wall);
        }
        if until <= started {
            return None;
        }
        deadline.arm(until);
        let result = statement();
        deadline.disarm();
        self.remaining = self.remaining.saturating_sub(started.elapsed());
        Some(result)
    }

    /// Whether the budget ran out (a statement interrupted now was stopped
    /// by it).
    pub(crate) fn spent(&self) -> bool {
        self.remaining.is_zero()
            || self
                .wall_deadline
                .is_some_and(|wall| Instant::now() >= wall)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_deadline_is_armed_only_while_a_statement_runs() {
        let deadline = Deadline::new();
        let mut budget = EventBudget::new(Duration::from_millis(20), None);
        assert!(!deadline.passed());
        let passed = budget.run(&deadline, || {
            std::thread::sleep(Duration::from_millis(30));
            deadline.passed()
        });
        assert_eq!(passed, Some(true));
        assert!(!deadline.passed(), "disarmed after the statement");
        assert!(budget.spent());
        assert_eq!(budget.run(&deadline, || ()), None, "nothing left");
    }

    #[test]
    fn the_wall_deadline_caps_the_budget() {
        let deadline = Deadline::new();
        let mut budget = EventBudget::new(Duration::from_secs(60), Some(Instant::now()));
        assert_eq!(budget.run(&deadline, || ()), None);
        assert!(budget.spent());
    }
}
