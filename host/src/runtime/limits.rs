//! Per-request resource limits enforced inside the store: memory through a
//! [`ResourceLimiter`], CPU time at the epoch ticks.

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

/// Growing the guest's memory would pass the host's memory budget, shared
/// by every instance and buffered body.
#[derive(Debug, thiserror::Error)]
#[error("the host's memory budget of {budget_mb} MiB for instances is used up; retry shortly")]
pub struct HostMemoryExhausted {
    pub budget_mb: u64,
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
        current: usize,
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
        if !self.memory.grow(desired.saturating_sub(current)) {
            let budget_mb = (self.worker().memory.limit() >> 20) as u64;
            return Err(wasmtime::Error::new(HostMemoryExhausted { budget_mb }));
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

/// Installs the limits in a new store: the memory limiter and the epoch
/// check of the guest's CPU time.
pub(crate) fn install(store: &mut Store<HostState>) {
    store.limiter(|state| state);
    // A response (or an argument) as large as the worker's body limit
    // must cross the component boundary; wasmtime's default stops at 128
    // MiB with an opaque error.
    let body = store.data().worker().config.limits.body_bytes();
    store.set_hostcall_fuel(
        body.saturating_mul(2)
            .saturating_add(16 << 20)
            .max(128 << 20),
    );
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(on_epoch_tick);
}

/// Called by wasmtime each time a running guest crosses an epoch tick
/// (see `cpu_time.rs`).
///
/// Each tick also yields to the async runtime, so a spinning guest cannot
/// starve other requests on its thread.
fn on_epoch_tick(store: StoreContextMut<'_, HostState>) -> wasmtime::Result<UpdateDeadline> {
    let state = store.data();
    let limit_ms = state.worker().config.limits.cpu_ms;
    if state.cpu.at_tick() > Duration::from_millis(limit_ms) {
        return Err(wasmtime::Error::new(CpuLimitExceeded { limit_ms }));
    }
    Ok(UpdateDeadline::Yield(1))
}
