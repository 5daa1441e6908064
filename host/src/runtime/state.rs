//! [`HostState`]: the data each request's `Store` carries.

use std::fmt;
use std::sync::Arc;

use tracing::Level;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::guest_log::{GuestLog, GuestOutput};
use super::worker::WorkerContext;

/// Identifies one inbound request in logs, error pages and the
/// `x-verge-request-id` response header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RequestId(u64);

impl RequestId {
    pub fn random() -> Self {
        Self(rand::random())
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// Per-request state: WASI (no files, no sockets, no environment: stdout and
/// stderr go to the log), the worker's shared context, and the counters the
/// limits are checked against.
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    worker: Arc<WorkerContext>,
    request_id: RequestId,
    guest_log: GuestLog,
    /// Epoch ticks spent running guest code; see `limits::on_epoch_tick`.
    pub(crate) cpu_ticks: u64,
    /// Outbound fetches made so far.
    pub(crate) subrequests: u32,
}

impl HostState {
    pub fn new(worker: Arc<WorkerContext>, request_id: RequestId) -> Self {
        let guest_log = GuestLog::new(worker.name.clone(), request_id);
        // No preopened files and no environment by default; sockets are
        // denied explicitly (outbound HTTP goes through `fetch` and its
        // allow-list), and random bytes are capped because the host
        // allocates them outside the guest's memory limit.
        let wasi = WasiCtx::builder()
            .stdout(GuestOutput::new(guest_log.clone(), Level::INFO))
            .stderr(GuestOutput::new(guest_log.clone(), Level::WARN))
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .max_random_size(1 << 20)
            .build();
        Self {
            wasi,
            table: ResourceTable::new(),
            worker,
            request_id,
            guest_log,
            cpu_ticks: 0,
            subrequests: 0,
        }
    }

    pub fn worker(&self) -> &WorkerContext {
        &self.worker
    }

    pub fn request_id(&self) -> RequestId {
        self.request_id
    }

    pub fn guest_log(&self) -> &GuestLog {
        &self.guest_log
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}
