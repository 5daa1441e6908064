//! Test hooks that make the next commits fail, to check that a client never
//! sees success for writes that did not reach the disk. Built only with the
//! `test-hooks` feature, which the host's own tests turn on.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

#[derive(Debug, Default)]
pub struct FaultInjection {
    failing_commits: AtomicU32,
    close_delay_ms: AtomicU64,
}

impl FaultInjection {
    /// Makes background closes of evicted databases wait this long first,
    /// so a test can act while one is under way.
    pub fn delay_closes(&self, delay: Duration) {
        self.close_delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    pub(crate) fn close_delay(&self) -> Duration {
        Duration::from_millis(self.close_delay_ms.load(Ordering::SeqCst))
    }

    pub fn fail_next_commits(&self, count: u32) {
        self.failing_commits.store(count, Ordering::SeqCst);
    }

    pub(crate) fn take_commit_failure(&self) -> bool {
        self.failing_commits
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }
}
