//! [`HostState`]: the data each request's `Store` carries.

use std::fmt;
use std::sync::Arc;

use tracing::Level;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::InvokeError;
use super::cpu_time::GuestCpu;
use super::guest_log::{GuestLog, GuestOutput};
use super::memory::Reservation;
use super::worker::WorkerContext;
use crate::objects::ObjectScope;
use crate::objects::storage::EventBudget;
use crate::telemetry::Instantiation;

/// Identifies one inbound request in logs, error pages and the
/// `x-verge-request-id` response header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RequestId(u64);

impl RequestId {
    pub fn random() -> Self {
        Self(rand::random())
    }
}

impl From<u64> for RequestId {
    fn from(id: u64) -> Self {
        Self(id)
    }
}

impl From<RequestId> for u64 {
    fn from(id: RequestId) -> Self {
        id.0
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
    /// CPU time the guest's own code has used; see `cpu_time.rs`.
    pub(crate) cpu: GuestCpu,
    /// The guest's linear memory, taken from the host's budget.
    pub(crate) memory: Reservation,
    /// A Durable Object this request called answered that it is
    /// overloaded: the request's failure is then a 503 to retry.
    pub(crate) object_overloaded: bool,
    /// Outbound fetches made so far.
    pub(crate) subrequests: u32,
    /// R2 object bodies this store holds open (see `bindings/r2.rs`).
    pub(crate) r2_bodies: u32,
    /// Verge hosts the request had passed through when it arrived.
    pub(crate) hops: u32,
    /// The first Durable Object the request called (`BINDING:name`), for
    /// its log line.
    pub(crate) first_object: Option<String>,
    /// Set when this store runs a Durable Object: the one seam between a
    /// store and the object it serves (`objects/instance.rs`).
    pub(crate) object: Option<ObjectScope>,
    /// What is left of this request's (or object event's) SQL time for D1
    /// calls; started at the first one.
    pub(crate) d1_budget: Option<EventBudget>,
}

impl HostState {
    pub fn new(worker: Arc<WorkerContext>, request_id: RequestId) -> Self {
        let cpu = GuestCpu::default();
        let watched = worker.telemetry.tail.is_watched();
        let guest_log = GuestLog::new(worker.name.clone(), request_id, cpu.clone(), watched);
        let memory = worker.memory.reserve();
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
            cpu,
            memory,
            object_overloaded: false,
            subrequests: 0,
            r2_bodies: 0,
            hops: 0,
            first_object: None,
            object: None,
            d1_budget: None,
        }
    }

    /// Starts the next event of a long-lived object instance: its own
    /// request id, log budget, CPU and subrequest counters.
    pub(crate) fn begin_event(&mut self, request_id: RequestId) {
        self.request_id = request_id;
        self.guest_log
            .reset(request_id, self.worker.telemetry.tail.is_watched());
        self.cpu.reset();
        self.subrequests = 0;
        self.d1_budget = None;
    }

    /// The loop header an outbound request carries: one entry per Verge
    /// host passed through, this one included.
    pub(crate) fn loop_header_value(&self) -> http::HeaderValue {
        let hops = vec![crate::bindings::LOOP_TOKEN; self.hops as usize + 1].join(", ");
        http::HeaderValue::from_str(&hops).expect("tokens and commas are a valid header")
    }

    /// A trap's error with what the guest last wrote at warning level or
    /// above: a panicking Rust guest prints its message just before it
    /// traps, and the error line should carry it.
    pub(crate) fn with_last_words(&self, error: InvokeError) -> InvokeError {
        match (error, self.guest_log.last_words()) {
            (InvokeError::Trap(trap), Some(words)) => InvokeError::Trap(format!("{words}: {trap}")),
            (error, _) => error,
        }
    }

    /// Counts a guest call that ended with `result` in the metrics: the
    /// instance it started, if it started one, its CPU time and memory,
    /// and the limit that stopped it, if one did.
    pub(crate) fn record_call<T>(
        &self,
        started: Option<Instantiation>,
        result: &Result<T, InvokeError>,
    ) {
        self.worker
            .metrics
            .guest_call(started, self.cpu.charged(), self.memory.bytes());
        if let Err(error) = result {
            self.worker.count_breach(error);
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
