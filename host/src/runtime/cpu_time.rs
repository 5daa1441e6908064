//! CPU time a guest's own code uses, read off the thread's CPU clock.
//!
//! Wasmtime's call hooks mark every crossing between wasm and the host:
//! entering wasm (a call into the guest, or a host call returning to it)
//! and leaving it (the guest returning, or calling the host, a libcall such
//! as the epoch check included). Each stretch of guest execution between
//! two crossings runs on one thread without a pause — a fiber can only be
//! suspended inside a host call — so the thread's CPU clock read at both
//! ends measures exactly what the guest ran. What is not counted:
//!
//! - host calls (SQL, key-value, fetch, logging, memory growth), which
//!   have budgets of their own, and the epoch check itself;
//! - time the thread waited for a core: a saturated machine slows a guest
//!   down but does not make it fail its CPU limit.
//!
//! The epoch ticks still drive the check: every tick a running guest
//! leaves wasm for the epoch callback, which compares the sum with the
//! limit (see `limits::on_epoch_tick`).

use std::time::Duration;

/// The guest's CPU time for one request or one object event.
#[derive(Debug, Default)]
pub(crate) struct GuestCpu {
    used: Duration,
    /// The thread CPU clock when the current stretch of guest code began;
    /// `None` while the host runs.
    entered: Option<Duration>,
}

impl GuestCpu {
    /// Wasm starts (or resumes) running on this thread.
    pub(crate) fn enter(&mut self) {
        self.entered = Some(thread_cpu_time());
    }

    /// Wasm stops running on this thread: its stretch is added up.
    pub(crate) fn leave(&mut self) {
        if let Some(entered) = self.entered.take() {
            self.used += thread_cpu_time().saturating_sub(entered);
        }
    }

    /// CPU time used by completed stretches of guest code.
    pub(crate) fn used(&self) -> Duration {
        self.used
    }

    /// Starts counting from zero (the next event of a warm object).
    pub(crate) fn reset(&mut self) {
        *self = Self::default();
    }
}

/// The calling thread's CPU clock (`CLOCK_THREAD_CPUTIME_ID`): time it has
/// spent running, in user and kernel mode, since it started.
fn thread_cpu_time() -> Duration {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the timespec it is given, and the
    // thread CPU clock exists on every platform Verge builds for.
    let status = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    debug_assert_eq!(status, 0, "the thread CPU clock is unavailable");
    Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spin(for_at_least: Duration) {
        let start = thread_cpu_time();
        while thread_cpu_time() - start < for_at_least {
            std::hint::black_box(());
        }
    }

    #[test]
    fn counts_only_the_stretches_between_enter_and_leave() {
        let mut cpu = GuestCpu::default();
        cpu.enter();
        spin(Duration::from_millis(5));
        cpu.leave();
        // Host work and sleeping between stretches are not counted.
        spin(Duration::from_millis(20));
        std::thread::sleep(Duration::from_millis(20));
        cpu.enter();
        spin(Duration::from_millis(5));
        cpu.leave();
        let used = cpu.used();
        assert!(used >= Duration::from_millis(10), "{used:?}");
        assert!(used < Duration::from_millis(30), "{used:?}");
        cpu.reset();
        assert_eq!(cpu.used(), Duration::ZERO);
    }

    #[test]
    fn a_leave_without_an_enter_counts_nothing() {
        let mut cpu = GuestCpu::default();
        cpu.leave();
        assert_eq!(cpu.used(), Duration::ZERO);
    }
}
