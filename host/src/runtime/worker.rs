//! A deployed worker version, ready to serve.

use std::collections::BTreeMap;
use std::sync::Arc;

use wasmtime::Store;
use wasmtime::component::{Instance, InstancePre};

use crate::bindings::OutboundHttp;
use crate::bindings::exports::verge::platform::{handler, object, object_events, scheduled};
use crate::config::WorkerConfig;
use crate::objects::ObjectSystem;
use crate::storage::d1::D1Store;
use crate::storage::kv::KvNamespaces;
use crate::storage::r2::R2Store;
use crate::telemetry::{Telemetry, WorkerMetrics};

use super::HostState;

/// What every request to one worker version shares: its config, its
/// secrets, the outbound HTTP client and the Durable Object system.
pub struct WorkerContext {
    pub name: Arc<str>,
    pub version: u32,
    pub config: WorkerConfig,
    pub secrets: BTreeMap<String, String>,
    pub(crate) http: OutboundHttp,
    pub objects: Arc<ObjectSystem>,
    /// The host's KV namespaces.
    pub(crate) kv: Arc<KvNamespaces>,
    /// The host's D1 databases, which `config.d1_databases` names.
    pub(crate) d1: Arc<D1Store>,
    /// The host's R2 buckets (`[[r2_buckets]]` picks which this worker
    /// reaches).
    pub(crate) r2: Arc<R2Store>,
    /// Host-wide permits for requests in flight, one per instance slot.
    pub request_slots: Arc<tokio::sync::Semaphore>,
    /// This worker's share of them: a worker whose requests hang cannot
    /// take the slots every other worker needs.
    pub(crate) worker_slots: Arc<tokio::sync::Semaphore>,
    pub(crate) worker_slots_limit: u32,
    /// The host's memory budget.
    pub(crate) memory: Arc<super::MemoryBudget>,
    pub(crate) telemetry: Arc<Telemetry>,
    /// This worker's series of them, resolved once.
    pub(crate) metrics: WorkerMetrics,
}

impl WorkerContext {
    /// Counts `error` in the metrics if a limit caused it.
    pub(crate) fn count_breach(&self, error: &super::InvokeError) {
        if let Some(kind) = error.limit_kind() {
            self.metrics.limit_breach(kind);
        }
    }
}

/// A worker version with its component pre-instantiated: serving a request
/// only allocates a store and instantiates from here. A component exports
/// a fetch handler, Durable Object classes, or both.
#[derive(Clone)]
pub struct LoadedWorker {
    pub context: Arc<WorkerContext>,
    /// SHA-256 of the component.
    pub hash: String,
    pub(crate) pre: InstancePre<HostState>,
    pub(crate) handler: Option<handler::GuestIndices>,
    pub(crate) object: Option<object::GuestIndices>,
    pub(crate) events: Option<object_events::GuestIndices>,
    pub(crate) scheduled: Option<scheduled::GuestIndices>,
}

impl LoadedWorker {
    /// Instantiates the component into `store` (see
    /// [`new_store`](super::new_store)): the per-request cold start.
    pub async fn instantiate(&self, store: &mut Store<HostState>) -> wasmtime::Result<Instance> {
        self.pre.instantiate_async(store).await
    }

    /// Whether the component has a fetch handler (a `#[verge::worker]`).
    pub fn has_handler(&self) -> bool {
        self.handler.is_some()
    }
}
