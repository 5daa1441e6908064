//! Serving one request: a fresh store and instance, the call, and the
//! classification of whatever went wrong.

use std::time::Duration;

use wasmtime::{PoolConcurrencyLimitError, Store, WasmBacktrace};

use crate::bindings::exports::verge::platform::scheduled::Controller;
use crate::bindings::{Request, Response};

use super::cpu_time::GuestCpu;
use super::limits::{self, CpuLimitExceeded, HostMemoryExhausted, MemoryLimitExceeded};
use super::{HostState, LoadedWorker, RequestId};
use crate::storage::r2::ObjectBody;
use crate::telemetry::{Instantiation, TailLog};

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
    /// The worker already runs as many requests as one worker may.
    #[error("this worker already runs {limit} requests, its share of the host")]
    WorkerBusy { limit: u32 },
    #[error(transparent)]
    HostMemory(#[from] HostMemoryExhausted),
    /// The request failed after a Durable Object it called said it was
    /// overloaded.
    #[error("a Durable Object this request called is overloaded: {0}")]
    ObjectOverloaded(String),
    /// The guest trapped (a panic, `unreachable`, a bad memory access...).
    /// Carries wasmtime's message with the wasm backtrace.
    #[error("the guest trapped: {0}")]
    Trap(String),
    /// The handler returned `Err`.
    #[error("the handler returned an error: {0}")]
    Handler(String),
}

impl InvokeError {
    /// The limit that stopped the call, as the metrics name it.
    pub fn limit_kind(&self) -> Option<&'static str> {
        Some(match self {
            Self::CpuLimit(_) => "cpu",
            Self::MemoryLimit(_) => "memory",
            Self::Timeout { .. } => "wall_clock",
            Self::HostMemory(_) => "host_memory",
            Self::AtCapacity => "instances",
            Self::WorkerBusy { .. } => "worker_share",
            Self::ObjectOverloaded(_) | Self::Trap(_) | Self::Handler(_) => return None,
        })
    }

    /// The host (or an object) had no room for the request: retrying
    /// later may succeed.
    pub fn is_overload(&self) -> bool {
        matches!(
            self,
            Self::AtCapacity
                | Self::WorkerBusy { .. }
                | Self::HostMemory(_)
                | Self::ObjectOverloaded(_)
        )
    }
}

/// The longest a request waits for a free instance slot.
const MAX_SLOT_WAIT: Duration = Duration::from_secs(10);

/// What serving one request (or one scheduled run) produced.
pub struct Invocation<T = Response> {
    pub result: Result<T, InvokeError>,
    /// The first Durable Object the call reached, as `BINDING:name`.
    pub object: Option<String>,
    /// The guest's log lines, when `verge tail` was watching.
    pub logs: Vec<TailLog>,
    /// An R2 object's body the guest handed off as the response's body
    /// (`Response::from_r2`), to stream after the instance is gone.
    pub body: Option<ObjectBody>,
}

impl<T> Invocation<T> {
    fn refused(worker: &LoadedWorker, error: InvokeError) -> Self {
        worker.context.count_breach(&error);
        Self {
            result: Err(error),
            object: None,
            logs: Vec::new(),
            body: None,
        }
    }
}

/// The permits a fresh instance runs under: a place in the worker's share
/// of the host, and one of the host's instance slots.
struct Admission<'a> {
    _worker_slot: tokio::sync::SemaphorePermit<'a>,
    _slot: tokio::sync::SemaphorePermit<'a>,
}

/// Waits for room to run a fresh instance of `worker`: its share at once,
/// a slot for as long as its wall clock allows (up to [`MAX_SLOT_WAIT`]),
/// so a burst beyond the pool waits instead of failing.
async fn admit(worker: &LoadedWorker) -> Result<Admission<'_>, InvokeError> {
    let context = &worker.context;
    let Ok(worker_slot) = context.worker_slots.try_acquire() else {
        return Err(InvokeError::WorkerBusy {
            limit: context.worker_slots_limit,
        });
    };
    let wait = Duration::from_millis(context.config.limits.wall_ms).min(MAX_SLOT_WAIT);
    match tokio::time::timeout(wait, context.request_slots.acquire()).await {
        Ok(Ok(slot)) => Ok(Admission {
            _worker_slot: worker_slot,
            _slot: slot,
        }),
        _ => Err(InvokeError::AtCapacity),
    }
}

/// What a finished call leaves in its store: counted in the metrics, and
/// an overloaded object named as the cause of the failure.
fn finish<T>(
    state: &mut HostState,
    started: Instantiation,
    result: Result<T, InvokeError>,
) -> Invocation<T> {
    state.record_call(Some(started), &result);
    let result = match result {
        Err(InvokeError::Handler(error) | InvokeError::Trap(error)) if state.object_overloaded => {
            Err(InvokeError::ObjectOverloaded(error))
        }
        other => other,
    };
    Invocation {
        result,
        object: state.first_object.take(),
        logs: state.guest_log().take_collected(),
        body: None,
    }
}

/// Runs `request` through a fresh instance of `worker`.
///
/// Nothing survives the call: the store, the instance and its memory are
/// dropped (and the pool slot recycled) before this returns.
/// `hops` is how many Verge hosts the request had passed through.
pub async fn invoke(
    worker: &LoadedWorker,
    request: Request,
    request_id: RequestId,
    hops: u32,
) -> Invocation {
    let Some(handler) = &worker.handler else {
        return Invocation::refused(
            worker,
            InvokeError::Handler(
                "this component has no fetch handler, only Durable Object classes: \
                 add a #[verge::worker] function, or remove the worker's routes"
                    .into(),
            ),
        );
    };
    let _admission = match admit(worker).await {
        Ok(admission) => admission,
        Err(error) => return Invocation::refused(worker, error),
    };
    let mut state = HostState::new(worker.context.clone(), request_id);
    state.hops = hops;
    let mut store = new_store(worker, state);
    let cpu = store.data().cpu.clone();
    let result = guarded(worker.context.config.limits.wall_ms, &cpu, async {
        let instance = worker.instantiate(&mut store).await?;
        handler
            .load(&mut store, &instance)?
            .call_handle(&mut store, &request)
            .await
    })
    .await
    .map_err(|error| store.data().with_last_words(error));
    let state = store.data_mut();
    let mut body = None;
    let result = result.and_then(|mut response| {
        body = state
            .take_response_body(&mut response)
            .map_err(|why| InvokeError::Handler(format!("invalid response: {why}")))?;
        Ok(response)
    });
    Invocation {
        body,
        ..finish(state, Instantiation::Request, result)
    }
}

/// Runs the scheduled handler of `worker` for one match of a cron
/// trigger, in a fresh instance under the same limits as a request.
pub async fn invoke_scheduled(
    worker: &LoadedWorker,
    controller: &Controller,
    request_id: RequestId,
) -> Invocation<()> {
    let Some(scheduled) = &worker.scheduled else {
        return Invocation::refused(
            worker,
            InvokeError::Handler(
                "verge.toml has [triggers] crons, but this component exports no scheduled \
                 handler: rebuild it with this version of the verge SDK and add a \
                 #[verge::scheduled] function"
                    .into(),
            ),
        );
    };
    let _admission = match admit(worker).await {
        Ok(admission) => admission,
        Err(error) => return Invocation::refused(worker, error),
    };
    let mut store = new_store(worker, HostState::new(worker.context.clone(), request_id));
    let cpu = store.data().cpu.clone();
    let result = guarded(worker.context.config.limits.wall_ms, &cpu, async {
        let instance = worker.instantiate(&mut store).await?;
        scheduled
            .load(&mut store, &instance)?
            .call_scheduled(&mut store, controller)
            .await
    })
    .await
    .map_err(|error| store.data().with_last_words(error));
    finish(store.data_mut(), Instantiation::Scheduled, result)
}

/// The Durable Object classes a component defines, asked of a throwaway
/// instance; an error says why it cannot tell.
pub async fn component_classes(worker: &LoadedWorker) -> Result<Vec<String>, String> {
    let Some(object) = &worker.object else {
        return Err(
            "exports no Durable Object classes (mark an impl #[verge::durable_object])".into(),
        );
    };
    let mut store = new_store(
        worker,
        HostState::new(worker.context.clone(), RequestId::random()),
    );
    let cpu = store.data().cpu.clone();
    guarded(worker.context.config.limits.wall_ms, &cpu, async {
        let instance = worker.instantiate(&mut store).await?;
        Ok(Ok(object
            .load(&mut store, &instance)?
            .call_classes(&mut store)
            .await?))
    })
    .await
    .map_err(|e| format!("could not list its classes: {e}"))
}

/// A store for `worker` around `state`, its limits installed.
pub fn new_store(worker: &LoadedWorker, state: HostState) -> Store<HostState> {
    let mut store = Store::new(worker.pre.engine(), state);
    limits::install(&mut store);
    store
}

/// Runs one guest call under the wall-clock limit, metering its CPU time
/// on `cpu` (the store's), and names what went wrong: a breached limit, a
/// trap, or the guest's own `Err`.
pub(crate) async fn guarded<T>(
    wall_ms: u64,
    cpu: &GuestCpu,
    call: impl Future<Output = wasmtime::Result<Result<T, String>>>,
) -> Result<T, InvokeError> {
    let call = cpu.metered(call);
    match tokio::time::timeout(Duration::from_millis(wall_ms), call).await {
        Err(_elapsed) => Err(InvokeError::Timeout { limit_ms: wall_ms }),
        Ok(Err(error)) => Err(classify(error)),
        Ok(Ok(Err(message))) => Err(InvokeError::Handler(message)),
        Ok(Ok(Ok(value))) => Ok(value),
    }
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
    let error = match error.downcast::<HostMemoryExhausted>() {
        Ok(memory) => return memory.into(),
        Err(other) => other,
    };
    if error.is::<PoolConcurrencyLimitError>() {
        return InvokeError::AtCapacity;
    }
    InvokeError::Trap(describe_trap(&error))
}

/// A trap as its cause and the guest's own frames: never the host's Rust
/// backtrace, and without the panic machinery a Rust guest runs between
/// its `panic!` and the trap.
fn describe_trap(error: &wasmtime::Error) -> String {
    let Some(backtrace) = error.downcast_ref::<WasmBacktrace>() else {
        return format!("{error:#}");
    };
    let frames = backtrace.frames();
    let machinery = frames
        .iter()
        .take_while(|frame| {
            frame
                .func_name()
                .is_some_and(|name| is_panic_machinery(&demangled(name)))
        })
        .count();
    let shown = if machinery == frames.len() {
        frames
    } else {
        &frames[machinery..]
    };
    let mut text = error.root_cause().to_string();
    text.push_str("\nguest backtrace:");
    for (n, frame) in shown.iter().enumerate() {
        let module = frame.module().name().unwrap_or("<module>");
        let offset = frame.module_offset().unwrap_or_default();
        match frame.func_name() {
            Some(name) => text.push_str(&format!(
                "\n  {n:>2}: {module}!{} (at {offset:#x})",
                demangled(name)
            )),
            None => text.push_str(&format!(
                "\n  {n:>2}: {module}!<function {}> (at {offset:#x}; names stripped: `verge dev` keeps them)",
                frame.func_index()
            )),
        }
    }
    text
}

/// A Rust symbol as source names it, without its hash; anything else
/// as it is.
fn demangled(name: &str) -> String {
    format!("{:#}", rustc_demangle::demangle(name))
}

/// Frames of Rust's standard library that unwind a panic into a trap.
fn is_panic_machinery(name: &str) -> bool {
    ["std::", "alloc::", "__rustc::", "core::panicking::"]
        .iter()
        .any(|prefix| name.starts_with(prefix))
        || name == "abort"
}
