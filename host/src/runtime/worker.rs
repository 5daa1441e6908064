//! A deployed worker version, ready to serve.

use std::collections::BTreeMap;
use std::sync::Arc;

use wasmtime::Store;

use crate::bindings::{OutboundHttp, Worker, WorkerPre};
use crate::config::WorkerConfig;

use super::HostState;

/// What every request to one worker version shares: its config, its
/// secrets and the outbound HTTP client.
pub struct WorkerContext {
    pub name: Arc<str>,
    pub version: u32,
    pub config: WorkerConfig,
    pub secrets: BTreeMap<String, String>,
    pub http: OutboundHttp,
}

/// A worker version with its component pre-instantiated: serving a request
/// only allocates a store and instantiates from here.
#[derive(Clone)]
pub struct LoadedWorker {
    pub context: Arc<WorkerContext>,
    /// SHA-256 of the component.
    pub hash: String,
    pub(crate) pre: WorkerPre<HostState>,
}

impl LoadedWorker {
    /// Instantiates the component into `store` (see
    /// [`new_store`](super::new_store)): the per-request cold start.
    pub async fn instantiate(&self, store: &mut Store<HostState>) -> wasmtime::Result<Worker> {
        self.pre.instantiate_async(store).await
    }
}
