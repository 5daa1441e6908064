//! Per-request resource limits enforced inside the store: memory through a
//! [`ResourceLimiter`], CPU time through the call hooks and epoch ticks.

use std::time::Duration;

use wasmtime::{ResourceLimiter, Store, StoreContextMut, UpdateDeadline};

use super::HostState;

/// The guest tried to grow its memory past `limits.memory_mb`.
#[derive(Debug, thiserror::Error)]
#[error("memory limit of {limit_mb} MiB exceeded (the guest asked for {desired_mb} MiB)")]
pub struct MemoryLimitExceeded {
    pub limit_mb: u64,
    pub desired_mb: u64,
}

/// The guest ran longer than `limits.cpu_ms`.
#[derive(Debug, thiserror::Error)]
#[error("CPU time limit of {limit_ms} ms exceeded")]
pub struct CpuLimitExceeded {
    pub limit_ms: u64,
}

/// Tables hold function references; Rust guests use a few hundred.
const MAX_TABLE_ELEMENTS: usize = 100_000;

impl ResourceLimiter for HostState {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let limits = &self.worker().config.limits;
        if desired > limits.memory_bytes() {
            // An error rather than `Ok(false)`: the guest stops right here
            // with a precise message, instead of failing later in its own
            // allocator with an opaque `unreachable` trap.
            return Err(wasmtime::Error::new(MemoryLimitExceeded {
                limit_mb: limits.memory_mb,
                desired_mb: (desired as u64).div_ceil(1 << 20),
            }));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}

/// Installs the limits in a new store: the memory limiter, the call hook
/// that meters the guest's CPU time, and the epoch check.
pub(crate) fn install(store: &mut Store<HostState>) {
    store.limiter(|state| state);
    store.call_hook(|mut store, hook| {
        let cpu = &mut store.data_mut().cpu;
        if hook.exiting_host() {
            cpu.enter();
        } else {
            cpu.leave();
        }
        Ok(())
    });
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(on_epoch_tick);
}

/// Called by wasmtime each time a running guest crosses an epoch tick: a
/// host call, so the guest's CPU time is up to date here (see
/// `cpu_time.rs`).
///
/// Each tick also yields to the async runtime, so a spinning guest cannot
/// starve other requests on its thread.
fn on_epoch_tick(store: StoreContextMut<'_, HostState>) -> wasmtime::Result<UpdateDeadline> {
    let state = store.data();
    let limit_ms = state.worker().config.limits.cpu_ms;
    if state.cpu.used() > Duration::from_millis(limit_ms) {
        return Err(wasmtime::Error::new(CpuLimitExceeded { limit_ms }));
    }
    Ok(UpdateDeadline::Yield(1))
}
