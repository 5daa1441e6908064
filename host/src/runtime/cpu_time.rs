//! CPU time a guest's own code uses.
//!
//! A guest call is a future the host polls (`invoke::guarded`); between
//! polls — while a fetch or a stub call is awaited, or after the guest
//! yielded at an epoch tick — its thread runs other tasks. So the guest is
//! charged poll by poll: what each poll took, less the host's own work
//! inside it — SQL, key-value and alarm calls, which have budgets of their
//! own ([`GuestCpu::host_work`]), and writing the guest's log lines. What
//! wasmtime does to hand a host call its arguments — copying a 1 MiB
//! WebSocket message out of guest memory, say — is charged to the guest:
//! the guest chose to send it, as a Cloudflare worker pays for what it
//! serializes.
//!
//! The thread's CPU clock (`CLOCK_THREAD_CPUTIME_ID`) leaves out time the
//! thread spent waiting for a core, but reading it is a system call: 0.5 µs
//! on a 2-core VM, against 20 ns for the monotonic clock, and a simple
//! request does all its work in one or two polls of some tens of
//! microseconds. So a call starts on the monotonic clock, and a stretch
//! measured on it is charged at most one epoch tick: between two ticks —
//! from a poll's start, or from the last epoch callback, to the next
//! callback or the poll's end — the guest cannot have run much longer than
//! a tick, since its first check after the epoch advanced calls the epoch
//! callback. Once a call has been charged [`MONOTONIC_UP_TO`] it is worth
//! measuring exactly: from then on every poll's start and end and every
//! tick read the CPU clock, so a guest that computes for 40 ms passes a
//! 50 ms limit on a saturated machine. (Switching at the first epoch
//! callback instead would put most requests of a loaded host on the CPU
//! clock: a callback only says that a tick passed since the store was
//! made, and on a loaded host one usually has. wasmtime's call hooks,
//! marking every crossing between wasm and the host, cost dozens of clock
//! reads per request.)
//!
//! The epoch ticks drive the check: every tick a running guest leaves wasm
//! for the epoch callback, which charges the stretch so far and compares
//! the total with the limit (see `limits::on_epoch_tick`).

use std::ops::{Deref, DerefMut};
use std::pin::pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::EPOCH_TICK;

/// What a call may be charged on the monotonic clock before it is measured
/// on the CPU clock: at most this much of a limit can be time spent
/// waiting for a core.
const MONOTONIC_UP_TO: Duration = Duration::from_millis(10);

/// The guest's CPU time for one request or one object event; clones share
/// one meter, so the poll wrapper can reach it while the call borrows the
/// store.
#[derive(Debug, Clone, Default)]
pub(crate) struct GuestCpu(Arc<Mutex<Meter>>);

#[derive(Debug, Default)]
struct Meter {
    charged: Duration,
    /// Where the stretch of the poll under way began; `None` between polls.
    stretch: Option<Mark>,
    /// Host work done inside the current stretch, on the monotonic clock.
    host: Duration,
    /// Stretches are measured on the thread's CPU clock from now on.
    precise: bool,
}

/// A point in time on the clocks a stretch is measured with.
#[derive(Debug, Clone, Copy)]
struct Mark {
    wall: Instant,
    /// The thread's CPU clock, read only once the meter is precise.
    cpu: Option<Duration>,
}

impl Meter {
    fn mark(&self) -> Mark {
        Mark {
            wall: Instant::now(),
            cpu: self.precise.then(thread_cpu_time),
        }
    }

    /// Charges the stretch under way up to `now`, and ends it.
    fn charge_until(&mut self, now: Mark) {
        let Some(start) = self.stretch.take() else {
            return;
        };
        let host = std::mem::take(&mut self.host);
        self.charged += match (start.cpu, now.cpu) {
            (Some(start), Some(now)) => now.saturating_sub(start).saturating_sub(host),
            _ => {
                let wall = now.wall.saturating_duration_since(start.wall);
                wall.saturating_sub(host).min(EPOCH_TICK)
            }
        };
        if self.charged >= MONOTONIC_UP_TO {
            self.precise = true;
        }
    }
}

impl GuestCpu {
    fn meter(&self) -> std::sync::MutexGuard<'_, Meter> {
        // The meter holds plain numbers: a panic elsewhere cannot leave
        // them half-updated in a way that matters.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Polls `call` to completion, charging each poll to the guest.
    pub(crate) async fn metered<F: Future>(&self, call: F) -> F::Output {
        let mut call = pin!(call);
        std::future::poll_fn(|cx| {
            {
                let mut meter = self.meter();
                meter.host = Duration::ZERO;
                meter.stretch = Some(meter.mark());
            }
            let result = call.as_mut().poll(cx);
            let mut meter = self.meter();
            let now = meter.mark();
            meter.charge_until(now);
            result
        })
        .await
    }

    /// An epoch tick found the guest running: charges the stretch so far
    /// and returns the guest's total.
    pub(crate) fn at_tick(&self) -> Duration {
        let mut meter = self.meter();
        let now = meter.mark();
        meter.charge_until(now);
        meter.stretch = Some(now);
        meter.charged
    }

    /// Runs host work on the guest's behalf (`work` takes the lock the
    /// work needs), and keeps the time it takes, until the returned guard
    /// drops, off the guest's account.
    pub(crate) fn host_work<T>(&self, work: impl FnOnce() -> T) -> HostWork<'_, T> {
        let started = Instant::now();
        HostWork {
            value: work(),
            cpu: self,
            started,
        }
    }

    /// Runs host work on the guest's behalf, its time off the guest's
    /// account.
    pub(crate) fn exclude<T>(&self, work: impl FnOnce() -> T) -> T {
        let started = Instant::now();
        let value = work();
        self.host_since(started);
        value
    }

    /// Takes the host work begun at `started` off the guest's account.
    fn host_since(&self, started: Instant) {
        self.meter().host += started.elapsed();
    }

    /// The guest's CPU time so far.
    pub(crate) fn charged(&self) -> Duration {
        self.meter().charged
    }

    /// Starts counting from zero (the next event of a warm object).
    pub(crate) fn reset(&self) {
        *self.meter() = Meter::default();
    }
}

/// What [`GuestCpu::host_work`] returns: the work's value, its time
/// uncharged until this drops.
pub(crate) struct HostWork<'a, T> {
    value: T,
    cpu: &'a GuestCpu,
    started: Instant,
}

impl<T> Deref for HostWork<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T> DerefMut for HostWork<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.value
    }
}

impl<T> Drop for HostWork<'_, T> {
    fn drop(&mut self) {
        self.cpu.host_since(self.started);
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
    use std::task::{Context, Poll, Waker};

    use super::*;

    fn spin(for_at_least: Duration) {
        let start = thread_cpu_time();
        while thread_cpu_time() - start < for_at_least {
            std::hint::black_box(());
        }
    }

    fn ms(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    fn charged(cpu: &GuestCpu) -> Duration {
        cpu.meter().charged
    }

    /// What a guest call does, step by step.
    enum Step {
        /// The guest's own code, for this much CPU time; the epoch callback
        /// runs after each tick's worth, as it would.
        Guest(Duration),
        /// A host call that works for this long.
        HostWork(Duration),
        /// The call awaits something: the poll ends.
        Suspend,
    }

    /// Runs the steps as a metered call, polled the way an executor would;
    /// between polls the thread spins for other tasks.
    fn run(cpu: &GuestCpu, steps: Vec<Step>) {
        let mut steps = steps.into_iter();
        let call = cpu.metered(std::future::poll_fn(|_| {
            for step in steps.by_ref() {
                match step {
                    Step::Guest(mut left) => {
                        while left > Duration::ZERO {
                            let stretch = left.min(EPOCH_TICK);
                            spin(stretch);
                            left -= stretch;
                            if stretch == EPOCH_TICK {
                                cpu.at_tick();
                            }
                        }
                    }
                    Step::HostWork(time) => drop(cpu.host_work(|| spin(time))),
                    Step::Suspend => return Poll::Pending,
                }
            }
            Poll::Ready(())
        }));
        let mut call = pin!(call);
        let mut cx = Context::from_waker(Waker::noop());
        while call.as_mut().poll(&mut cx).is_pending() {
            spin(ms(20));
        }
    }

    #[test]
    fn counts_the_guests_own_work_not_host_work_or_other_tasks() {
        use Step::*;
        let cpu = GuestCpu::default();
        let steps = vec![
            Guest(ms(5)),
            HostWork(ms(20)),
            Guest(ms(5)),
            Suspend,
            Guest(ms(5)),
            Suspend,
            HostWork(ms(20)),
            Guest(ms(5)),
        ];
        run(&cpu, steps);
        let used = charged(&cpu);
        assert!(used >= ms(19), "{used:?}");
        assert!(used < ms(30), "{used:?}");
        cpu.reset();
        assert_eq!(charged(&cpu), Duration::ZERO);
    }

    #[test]
    fn a_short_call_is_timed_on_the_monotonic_clock() {
        use Step::*;
        let cpu = GuestCpu::default();
        let guest = Duration::from_micros(300);
        run(&cpu, vec![Guest(guest), HostWork(ms(5)), Guest(guest)]);
        let used = charged(&cpu);
        assert!(used >= 2 * guest, "{used:?}");
        assert!(used <= EPOCH_TICK, "{used:?}");
        assert!(!cpu.meter().precise);
    }

    #[test]
    fn time_the_thread_did_not_run_is_not_charged() {
        let cpu = GuestCpu::default();
        // Descheduled: the wall clock moves, the thread's CPU clock does
        // not. A call's first stretches are on the monotonic clock, but
        // none is charged more than a tick.
        let call = pin!(cpu.metered(std::future::poll_fn(|_| {
            std::thread::sleep(ms(30));
            cpu.at_tick();
            std::thread::sleep(ms(30));
            Poll::Ready(())
        })));
        assert!(
            call.poll(&mut Context::from_waker(Waker::noop()))
                .is_ready()
        );
        assert!(charged(&cpu) < EPOCH_TICK + ms(2), "{:?}", charged(&cpu));
    }

    #[test]
    fn waiting_for_a_core_costs_a_call_at_most_the_monotonic_allowance() {
        let cpu = GuestCpu::default();
        // Thirty short polls, each descheduled for longer than a tick.
        let mut polls = 0;
        let call = cpu.metered(std::future::poll_fn(|_| {
            std::thread::sleep(ms(2));
            polls += 1;
            if polls == 30 {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        }));
        let mut call = pin!(call);
        while call
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()))
            .is_pending()
        {}
        let used = charged(&cpu);
        assert!(used < MONOTONIC_UP_TO + ms(2), "{used:?}");
    }
}
