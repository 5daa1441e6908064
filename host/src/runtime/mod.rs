//! Running guests: the engine, the compiled-component cache, the linker,
//! and per-request instantiation under limits.

mod artifacts;
mod cpu_time;
mod engine;
mod guest_log;
mod invoke;
mod limits;
mod linker;
mod memory;
mod state;
mod worker;

pub use artifacts::{ArtifactCache, ArtifactStats, content_hash};
pub(crate) use cpu_time::HostWork;
pub use engine::{EPOCH_TICK, EngineOptions, new_engine};
pub(crate) use invoke::guarded;
pub use invoke::{Invocation, InvokeError, component_classes, invoke, invoke_scheduled, new_store};
pub use limits::{CpuLimitExceeded, HostMemoryExhausted, MemoryLimitExceeded};
pub use linker::{LinkError, Prepared, new_linker, prepare};
pub use memory::MemoryBudget;
pub(crate) use memory::Reservation;
pub use state::{HostState, RequestId};
pub use worker::{LoadedWorker, WorkerContext};
