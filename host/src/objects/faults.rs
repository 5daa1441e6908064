//! Test hooks that make the next commits fail, to check that a client never
//! sees success for writes that did not reach the disk. Built only with the
//! `test-hooks` feature, which the host's own tests turn on.

use std::sync::atomic::{AtomicU32, Ordering};

#[derive(Debug, Default)]
pub struct FaultInjection {
    failing_commits: AtomicU32,
}

impl FaultInjection {
    pub fn fail_next_commits(&self, count: u32) {
        self.failing_commits.store(count, Ordering::SeqCst);
    }

    pub(crate) fn take_commit_failure(&self) -> bool {
        self.failing_commits
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }
}
