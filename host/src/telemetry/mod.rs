//! What a host tells its operators: one log line per request, live tails
//! for `verge tail`, and Prometheus metrics.

mod log_pipe;
mod logging;
mod metrics;
mod tail;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use log_pipe::{LogGuard, flush_log};
pub use logging::{LogFormat, init_logging};
pub use metrics::{Instantiation, Metrics, Snapshot, WorkerMetrics};
pub use tail::{TailEvent, TailFilter, TailHub, TailLog, TailSubscription};

/// The host's metrics and its tail hub; one per platform.
#[derive(Default)]
pub struct Telemetry {
    pub metrics: Metrics,
    pub tail: TailHub,
}

/// The worker version that served a request.
pub struct ServedBy<'a> {
    pub worker: &'a str,
    pub version: u32,
    pub metrics: &'a WorkerMetrics,
}

/// A request the front door finished, for its log line, metrics and tail.
pub struct RequestRecord<'a> {
    pub request_id: String,
    pub method: &'a str,
    pub host: &'a str,
    pub path: &'a str,
    pub status: u16,
    pub duration: Duration,
    /// What served it, if a worker matched.
    pub served_by: Option<ServedBy<'a>>,
    pub object: Option<String>,
    pub error_id: Option<String>,
    pub logs: Vec<TailLog>,
}

/// A run of a cron trigger, for its log line, metrics and tail.
pub struct ScheduledRecord<'a> {
    pub request_id: String,
    pub worker: &'a str,
    pub version: u32,
    pub metrics: &'a WorkerMetrics,
    pub cron: &'a str,
    /// The matching time it ran for, in ms since the Unix epoch.
    pub scheduled_ms: i64,
    pub duration: Duration,
    /// Set when it failed.
    pub error_id: Option<String>,
    pub logs: Vec<TailLog>,
}

/// A fresh id that names one failure in the log and in what the client
/// (or the tail) sees.
pub fn new_error_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// An event a Durable Object ran, for `verge tail`.
pub struct ObjectEventRecord<'a> {
    pub request_id: String,
    pub worker: (&'a str, u32),
    /// `Class:name`.
    pub object: &'a str,
    /// What ran: `alarm daily`, `rpc add`, `websocket message`.
    pub event: String,
    pub failed: bool,
    pub duration: Duration,
    pub logs: Vec<TailLog>,
}

impl Telemetry {
    /// Logs the request's line, counts it, and shows it to tail watchers.
    pub fn request_finished(&self, record: RequestRecord<'_>) {
        let duration_ms = record.duration.as_secs_f64() * 1000.0;
        let (worker, version) = record
            .served_by
            .as_ref()
            .map(|by| (by.worker, by.version))
            .unzip();
        tracing::info!(
            target: "verge::request",
            status = record.status,
            // Two decimals: a microsecond is noise at this scale.
            duration_ms = (duration_ms * 100.0).round() / 100.0,
            worker = worker.map(display),
            version,
            object = record.object.as_deref().map(display),
            request_id = %record.request_id,
            error_id = record.error_id.as_deref().map(display),
            "{} {}{}",
            record.method,
            record.host,
            record.path,
        );
        if let Some(by) = &record.served_by {
            by.metrics.request(record.status, record.duration);
        }
        self.tail.send(|| TailEvent {
            timestamp_ms: now_ms(),
            request_id: record.request_id,
            kind: "fetch".into(),
            worker: worker.map(str::to_owned),
            version,
            method: Some(record.method.to_owned()),
            target: format!("{}{}", record.host, record.path),
            status: record.status,
            duration_ms,
            object: record.object,
            error_id: record.error_id,
            logs: record.logs,
        });
    }

    /// Logs a cron run's line, counts it, and shows it to tail watchers.
    pub fn scheduled_finished(&self, record: ScheduledRecord<'_>) {
        let duration_ms = record.duration.as_secs_f64() * 1000.0;
        let ok = record.error_id.is_none();
        tracing::info!(
            target: "verge::request",
            status = if ok { "ok" } else { "error" },
            duration_ms = (duration_ms * 100.0).round() / 100.0,
            worker = record.worker,
            version = record.version,
            scheduled_ms = record.scheduled_ms,
            request_id = %record.request_id,
            error_id = record.error_id.as_deref().map(display),
            "scheduled {:?}",
            record.cron,
        );
        record.metrics.scheduled_run(ok);
        self.tail.send(|| TailEvent {
            timestamp_ms: now_ms(),
            request_id: record.request_id,
            kind: "scheduled".into(),
            worker: Some(record.worker.to_owned()),
            version: Some(record.version),
            method: None,
            target: record.cron.to_owned(),
            status: if ok { 200 } else { 500 },
            duration_ms,
            object: None,
            error_id: record.error_id,
            logs: record.logs,
        });
    }

    /// Shows an object's event to tail watchers.
    pub fn object_event_finished(&self, record: ObjectEventRecord<'_>) {
        let (worker, version) = record.worker;
        self.tail.send(|| TailEvent {
            timestamp_ms: now_ms(),
            request_id: record.request_id,
            kind: "object".into(),
            worker: Some(worker.to_owned()),
            version: Some(version),
            method: None,
            target: record.event,
            status: if record.failed { 500 } else { 200 },
            duration_ms: record.duration.as_secs_f64() * 1000.0,
            object: Some(record.object.to_owned()),
            error_id: None,
            logs: record.logs,
        });
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
