//! CPU time a guest's own code uses.
//!
//! Wasmtime's call hooks mark every crossing between wasm and the host:
//! entering wasm (a call into the guest, or a host call returning to it)
//! and leaving it (the guest returning, or calling the host, the epoch
//! check included). What is not counted:
//!
//! - host calls (SQL, key-value, fetch, logging, memory growth), which
//!   have budgets of their own, and the epoch check itself;
//! - time the thread waited for a core: a saturated machine slows a guest
//!   down but does not make it fail its CPU limit.
//!
//! Reading the thread's CPU clock (`CLOCK_THREAD_CPUTIME_ID`) is a system
//! call, ~0.4 µs; a request crosses the boundary dozens of times and a
//! chat-room broadcast thousands. So every crossing reads only the cheap
//! monotonic clock, and the guest's stretches of wall-clock time add up as
//! *pending*. The CPU clock is read when pending time reaches
//! [`SETTLE_EVERY`], and then the interval since the last reading is
//! settled: of its wall time, what the thread did not run was waiting for a
//! core, and what the host's calls took is the host's, so the guest is
//! charged `min(pending, cpu - host)`. A host call long enough to have
//! suspended the guest (a fetch, a yield) or a move to another thread ends
//! an interval: what is pending then — less than [`SETTLE_EVERY`] — is
//! charged as it stands, and the next stretch starts a new interval.
//!
//! The epoch ticks drive the check: every tick a running guest leaves wasm
//! for the epoch callback, which settles and compares with the limit (see
//! `limits::on_epoch_tick`).

use std::time::{Duration, Instant};

/// Guest time after which the CPU clock is read and pending time settled.
const SETTLE_EVERY: Duration = Duration::from_micros(100);
/// A host call this long may have suspended the guest, or run other tasks
/// on its thread: the interval it is part of ends.
const LONG_HOST_CALL: Duration = Duration::from_micros(50);

/// The guest's CPU time for one request or one object event.
#[derive(Debug, Default)]
pub(crate) struct GuestCpu {
    charged: Duration,
    /// Guest wall-clock time since `since`, not yet charged.
    pending: Duration,
    /// When the current stretch of guest code began; `None` while the host
    /// runs.
    entered: Option<Instant>,
    /// When the guest last left wasm.
    left: Option<Instant>,
    /// Host calls under way: wasm they call back into (an allocation for
    /// a result) is host work on the guest's behalf, not counted.
    host_depth: u32,
    since: Option<Reading>,
}

/// The thread's clocks, read together.
#[derive(Debug, Clone, Copy)]
struct Reading {
    thread: usize,
    wall: Instant,
    cpu: Duration,
}

impl Reading {
    fn now() -> Self {
        Self {
            thread: current_thread(),
            wall: Instant::now(),
            cpu: thread_cpu_time(),
        }
    }
}

impl GuestCpu {
    /// A call into wasm begins.
    pub(crate) fn calling_wasm(&mut self) {
        if self.host_depth == 0 {
            self.enter();
        }
    }

    /// A call into wasm returned.
    pub(crate) fn returning_from_wasm(&mut self) {
        if self.host_depth == 0 {
            self.leave();
        }
    }

    /// The guest calls the host.
    pub(crate) fn calling_host(&mut self) {
        self.leave();
        self.host_depth += 1;
    }

    /// A host call returns to the guest.
    pub(crate) fn returning_from_host(&mut self) {
        self.host_depth = self.host_depth.saturating_sub(1);
        self.enter();
    }

    fn enter(&mut self) {
        let now = Instant::now();
        let long_call = self
            .left
            .take()
            .is_some_and(|left| now - left > LONG_HOST_CALL);
        let moved = self.since.is_some_and(|s| s.thread != current_thread());
        if long_call || moved {
            self.charged += std::mem::take(&mut self.pending);
            self.since = None;
        }
        if self.since.is_none() {
            self.since = Some(Reading::now());
        }
        self.entered = Some(now);
    }

    fn leave(&mut self) {
        let Some(entered) = self.entered.take() else {
            return;
        };
        let now = Instant::now();
        self.pending += now - entered;
        self.left = Some(now);
        if self.pending >= SETTLE_EVERY {
            self.settle();
        }
    }

    /// Charges the pending time, corrected by the thread's CPU clock.
    fn settle(&mut self) {
        let Some(since) = self.since else {
            self.charged += std::mem::take(&mut self.pending);
            return;
        };
        let now = Reading::now();
        debug_assert_eq!(now.thread, since.thread, "settled on another thread");
        let cpu = now.cpu.saturating_sub(since.cpu);
        let host = (now.wall - since.wall).saturating_sub(self.pending);
        self.charged += self.pending.min(cpu.saturating_sub(host));
        self.pending = Duration::ZERO;
        self.since = Some(now);
    }

    /// Whether the guest has used more than `limit`. Called from the epoch
    /// callback, on the thread that just ran the guest.
    pub(crate) fn exceeds(&mut self, limit: Duration) -> bool {
        if self.charged + self.pending <= limit {
            return false;
        }
        self.settle();
        self.charged > limit
    }

    /// Starts counting from zero (the next event of a warm object).
    pub(crate) fn reset(&mut self) {
        *self = Self::default();
    }
}

/// Identifies the calling thread, cheaply: the address of a thread-local.
fn current_thread() -> usize {
    thread_local!(static MARK: u8 = const { 0 });
    MARK.with(|mark| mark as *const u8 as usize)
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

    fn used(cpu: &mut GuestCpu) -> Duration {
        cpu.settle();
        cpu.charged
    }

    #[test]
    fn counts_guest_stretches_and_not_host_calls_or_sleeps() {
        let mut cpu = GuestCpu::default();
        cpu.calling_wasm();
        spin(Duration::from_millis(5));
        // A host call doing work, then one that sleeps (as a suspended
        // fetch would).
        cpu.calling_host();
        spin(Duration::from_millis(20));
        cpu.returning_from_host();
        spin(Duration::from_millis(5));
        cpu.calling_host();
        std::thread::sleep(Duration::from_millis(20));
        cpu.returning_from_host();
        spin(Duration::from_millis(5));
        cpu.returning_from_wasm();
        let used = used(&mut cpu);
        assert!(used >= Duration::from_millis(14), "{used:?}");
        assert!(used < Duration::from_millis(25), "{used:?}");
        cpu.reset();
        assert_eq!(used_now(&cpu), Duration::ZERO);
    }

    fn used_now(cpu: &GuestCpu) -> Duration {
        cpu.charged + cpu.pending
    }

    #[test]
    fn many_short_stretches_between_short_host_calls_add_up() {
        let mut cpu = GuestCpu::default();
        cpu.calling_wasm();
        for _ in 0..200 {
            spin(Duration::from_micros(50));
            cpu.calling_host();
            cpu.returning_from_host();
        }
        cpu.returning_from_wasm();
        let used = used(&mut cpu);
        assert!(used >= Duration::from_millis(9), "{used:?}");
        assert!(used < Duration::from_millis(15), "{used:?}");
    }

    #[test]
    fn wasm_called_from_inside_a_host_call_is_the_hosts() {
        let mut cpu = GuestCpu::default();
        cpu.calling_wasm();
        cpu.calling_host();
        // The host lowers a result: an allocation in the guest.
        cpu.calling_wasm();
        spin(Duration::from_millis(5));
        cpu.returning_from_wasm();
        cpu.returning_from_host();
        cpu.returning_from_wasm();
        assert!(used(&mut cpu) < Duration::from_millis(2));
    }
}
