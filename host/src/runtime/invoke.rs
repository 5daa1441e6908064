//! Serving one request: a fresh store and instance, the call, and the
//! classification of whatever went wrong.

use std::time::Duration;

use wasmtime::{PoolConcurrencyLimitError, Store};

use crate::bindings::{Request, Response};

use super::limits::{CpuLimitExceeded, MemoryLimitExceeded, on_epoch_tick};
use super::{HostState, LoadedWorker, RequestId};

/// Why a request produced no response from the guest.
#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    #[error(transparent)]
    CpuLimit(#[from] CpuLimitExceeded),
    #[error(transparent)]
    MemoryLimit(#[from] MemoryLimitExceeded),
    #[error("wall-clock limit of {limit_ms} ms exceeded")]
    Timeout { limit_ms: u64 },
    #[error("every instance slot is busy")]
    AtCapacity,
    /// The guest trapped (a panic, `unreachable`, a bad memory access...).
    /// Carries wasmtime's message with the wasm backtrace.
    #[error("the guest trapped: {0}")]
    Trap(String),
    /// The handler returned `Err`.
    #[error("the handler returned an error: {0}")]
    Handler(String),
}

/// Runs `request` through a fresh instance of `worker`.
///
/// Nothing survives the call: the store, the instance and its memory are
/// dropped (and the pool slot recycled) before this returns.
pub async fn invoke(
    worker: &LoadedWorker,
    request: Request,
    request_id: RequestId,
) -> Result<Response, InvokeError> {
    let limits = worker.context.config.limits;
    let mut store = new_store(worker, request_id);
    let call = async {
        let instance = worker.instantiate(&mut store).await?;
        instance
            .verge_platform_handler()
            .call_handle(&mut store, &request)
            .await
    };
    match tokio::time::timeout(Duration::from_millis(limits.wall_ms), call).await {
        Err(_elapsed) => Err(InvokeError::Timeout {
            limit_ms: limits.wall_ms,
        }),
        Ok(Err(error)) => Err(classify(error)),
        Ok(Ok(Err(message))) => Err(InvokeError::Handler(message)),
        Ok(Ok(Ok(response))) => Ok(response),
    }
}

/// A fresh store for one request to `worker`, its limits installed.
pub fn new_store(worker: &LoadedWorker, request_id: RequestId) -> Store<HostState> {
    let mut store = Store::new(
        worker.pre.engine(),
        HostState::new(worker.context.clone(), request_id),
    );
    store.limiter(|state| state);
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(on_epoch_tick);
    store
}

fn classify(error: wasmtime::Error) -> InvokeError {
    let error = match error.downcast::<CpuLimitExceeded>() {
        Ok(cpu) => return cpu.into(),
        Err(other) => other,
    };
    let error = match error.downcast::<MemoryLimitExceeded>() {
        Ok(memory) => return memory.into(),
        Err(other) => other,
    };
    if error.is::<PoolConcurrencyLimitError>() {
        return InvokeError::AtCapacity;
    }
    InvokeError::Trap(format!("{error:?}"))
}
