//! Per-request resource limits enforced inside the store: memory through a
//! [`ResourceLimiter`], CPU time through epoch ticks.

use wasmtime::{ResourceLimiter, StoreContextMut, UpdateDeadline};

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

/// Called by wasmtime each time a running guest crosses an epoch tick.
///
/// Ticks only arrive while guest code runs: time spent awaiting a host call
/// (a fetch) shows up as at most one tick when the guest resumes, so this
/// counts CPU time, not wall time. Each tick yields to the async runtime, so
/// a spinning guest cannot starve other requests on its thread.
pub fn on_epoch_tick(
    mut store: StoreContextMut<'_, HostState>,
) -> wasmtime::Result<UpdateDeadline> {
    let state = store.data_mut();
    state.cpu_ticks += 1;
    let limit_ms = state.worker().config.limits.cpu_ms;
    if state.cpu_ticks > limit_ms {
        return Err(wasmtime::Error::new(CpuLimitExceeded { limit_ms }));
    }
    Ok(UpdateDeadline::Yield(1))
}
