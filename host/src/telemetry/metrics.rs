//! The host's Prometheus metrics, served at `/metrics` on the admin
//! listener in the OpenMetrics text format (docs/operations.md lists
//! each one).
//!
//! Counters and histograms are updated where things happen; gauges that
//! describe the host's state right now (objects active, WebSockets,
//! alarms waiting) are read from their owners at scrape time, so they can
//! never drift from the truth.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use crate::objects::ObjectStats;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WorkerLabel {
    worker: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    worker: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    worker: String,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    worker: String,
    outcome: &'static str,
}

type HistogramFamily = Family<WorkerLabel, Histogram, fn() -> Histogram>;

/// Seconds, from 100 µs to ~55 s.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 20))
}

/// Bytes, from 64 KiB to 4 GiB.
fn memory_histogram() -> Histogram {
    Histogram::new(exponential_buckets(65536.0, 2.0, 17))
}

/// Every metric the host keeps, and the registry that encodes them.
pub struct Metrics {
    registry: Registry,
    requests: Family<StatusLabels, Counter>,
    request_duration: HistogramFamily,
    instantiations: Family<KindLabels, Counter>,
    cpu: Family<WorkerLabel, Counter<f64, AtomicU64>>,
    memory: HistogramFamily,
    limit_breaches: Family<KindLabels, Counter>,
    scheduled_runs: Family<OutcomeLabels, Counter>,
    objects_active: Gauge,
    objects_evicted: Counter,
    batch_events: Histogram,
    commit_duration: Histogram,
    websockets_open: Gauge,
    websockets_hibernated: Gauge,
    alarms_scheduled: Gauge,
    alarms_due: Gauge,
    alarms_fired: Counter,
    alarms_retried: Counter,
    memory_reserved: Gauge,
}

/// The host's state at scrape time, for the gauges.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub objects: ObjectStats,
    pub memory_reserved_bytes: usize,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("verge");
        let requests = Family::default();
        registry.register(
            "requests",
            "Requests the front door answered, by worker and HTTP status",
            requests.clone(),
        );
        let request_duration = HistogramFamily::new_with_constructor(latency_histogram);
        registry.register_with_unit(
            "request_duration",
            "Time from a request's arrival to its response head, by worker",
            Unit::Seconds,
            request_duration.clone(),
        );
        let instantiations = Family::default();
        registry.register(
            "instantiations",
            "Guest instances started, by worker and kind (request: one per request; object: a Durable Object waking; scheduled: one per cron run)",
            instantiations.clone(),
        );
        let cpu = Family::default();
        registry.register_with_unit(
            "guest_cpu",
            "CPU time guests spent in their own code, by worker",
            Unit::Seconds,
            cpu.clone(),
        );
        let memory = HistogramFamily::new_with_constructor(memory_histogram);
        registry.register_with_unit(
            "guest_memory",
            "Linear memory each request's instance (or object event) had grown to when it ended, by worker",
            Unit::Bytes,
            memory.clone(),
        );
        let limit_breaches = Family::default();
        registry.register(
            "limit_breaches",
            "Guest calls stopped by a limit, by worker and kind (cpu, memory, wall_clock, host_memory, instances, worker_share)",
            limit_breaches.clone(),
        );
        let scheduled_runs = Family::default();
        registry.register(
            "scheduled_runs",
            "Scheduled (cron) handler runs, by worker and outcome (ok, error)",
            scheduled_runs.clone(),
        );
        let objects_active = Gauge::default();
        registry.register(
            "objects_active",
            "Durable Objects with a live actor",
            objects_active.clone(),
        );
        let objects_evicted = Counter::default();
        registry.register(
            "objects_evicted",
            "Durable Objects evicted (idle, or least recently used past --max-objects)",
            objects_evicted.clone(),
        );
        let batch_events = Histogram::new(exponential_buckets(1.0, 2.0, 10));
        registry.register(
            "commit_batch_events",
            "Events one Durable Object commit covered (group commit)",
            batch_events.clone(),
        );
        let commit_duration = latency_histogram();
        registry.register_with_unit(
            "commit_duration",
            "Time a Durable Object commit took, fsync included",
            Unit::Seconds,
            commit_duration.clone(),
        );
        let websockets_open = Gauge::default();
        registry.register(
            "websockets_open",
            "WebSockets the host holds for Durable Objects",
            websockets_open.clone(),
        );
        let websockets_hibernated = Gauge::default();
        registry.register(
            "websockets_hibernated",
            "Held WebSockets whose object is not active (hibernated)",
            websockets_hibernated.clone(),
        );
        let alarms_scheduled = Gauge::default();
        registry.register(
            "alarms_scheduled",
            "Alarms waiting to fire",
            alarms_scheduled.clone(),
        );
        let alarms_due = Gauge::default();
        registry.register(
            "alarms_due",
            "Alarms whose time has come: firing now, or waiting for a retry",
            alarms_due.clone(),
        );
        let alarms_fired = Counter::default();
        registry.register(
            "alarms_fired",
            "Alarm events delivered to objects",
            alarms_fired.clone(),
        );
        let alarms_retried = Counter::default();
        registry.register(
            "alarms_retried",
            "Alarm events that failed and were scheduled again",
            alarms_retried.clone(),
        );
        let memory_reserved = Gauge::default();
        registry.register_with_unit(
            "host_memory_reserved",
            "Instance memory and buffered bodies counted against the host's memory budget",
            Unit::Bytes,
            memory_reserved.clone(),
        );
        Self {
            registry,
            requests,
            request_duration,
            instantiations,
            cpu,
            memory,
            limit_breaches,
            scheduled_runs,
            objects_active,
            objects_evicted,
            batch_events,
            commit_duration,
            websockets_open,
            websockets_hibernated,
            alarms_scheduled,
            alarms_due,
            alarms_fired,
            alarms_retried,
            memory_reserved,
        }
    }
}

/// One worker's metrics, resolved once when its version loads: recording
/// them on a request takes no label lookup (the status counter aside).
pub struct WorkerMetrics {
    worker: String,
    requests: Family<StatusLabels, Counter>,
    request_duration: Histogram,
    instantiated_for_request: Counter,
    instantiated_for_object: Counter,
    cpu: Counter<f64, AtomicU64>,
    memory: Histogram,
    limit_breaches: Family<KindLabels, Counter>,
    instantiated_for_scheduled: Counter,
    scheduled_ok: Counter,
    scheduled_failed: Counter,
}

/// Why a guest instance was started.
#[derive(Debug, Clone, Copy)]
pub enum Instantiation {
    /// A fresh instance for one request.
    Request,
    /// A Durable Object waking.
    Object,
    /// A fresh instance for one cron run.
    Scheduled,
}

impl WorkerMetrics {
    /// A request answered with `status` after `duration`.
    pub fn request(&self, status: u16, duration: Duration) {
        self.requests
            .get_or_create(&StatusLabels {
                worker: self.worker.clone(),
                status,
            })
            .inc();
        self.request_duration.observe(duration.as_secs_f64());
    }

    /// A guest call ended: the instance it started, if it started one,
    /// and what it used.
    pub fn guest_call(&self, started: Option<Instantiation>, cpu: Duration, memory_bytes: usize) {
        match started {
            Some(Instantiation::Request) => self.instantiated_for_request.inc(),
            Some(Instantiation::Object) => self.instantiated_for_object.inc(),
            Some(Instantiation::Scheduled) => self.instantiated_for_scheduled.inc(),
            None => 0,
        };
        self.cpu.inc_by(cpu.as_secs_f64());
        self.memory.observe(memory_bytes as f64);
    }

    /// A scheduled handler run finished, well or not.
    pub fn scheduled_run(&self, ok: bool) {
        if ok {
            self.scheduled_ok.inc();
        } else {
            self.scheduled_failed.inc();
        }
    }

    /// A guest call stopped by a limit of `kind`.
    pub fn limit_breach(&self, kind: &'static str) {
        self.limit_breaches
            .get_or_create(&KindLabels {
                worker: self.worker.clone(),
                kind,
            })
            .inc();
    }
}

impl Metrics {
    /// The metrics of the worker `name`.
    pub fn worker(&self, name: &str) -> WorkerMetrics {
        let label = WorkerLabel {
            worker: name.to_owned(),
        };
        let instantiated = |kind| {
            self.instantiations.get_or_create_owned(&KindLabels {
                worker: name.to_owned(),
                kind,
            })
        };
        let scheduled = |outcome| {
            self.scheduled_runs.get_or_create_owned(&OutcomeLabels {
                worker: name.to_owned(),
                outcome,
            })
        };
        WorkerMetrics {
            worker: name.to_owned(),
            requests: self.requests.clone(),
            request_duration: self.request_duration.get_or_create_owned(&label),
            instantiated_for_request: instantiated("request"),
            instantiated_for_object: instantiated("object"),
            cpu: self.cpu.get_or_create_owned(&label),
            memory: self.memory.get_or_create_owned(&label),
            limit_breaches: self.limit_breaches.clone(),
            instantiated_for_scheduled: instantiated("scheduled"),
            scheduled_ok: scheduled("ok"),
            scheduled_failed: scheduled("error"),
        }
    }

    pub fn object_evicted(&self) {
        self.objects_evicted.inc();
    }

    /// One Durable Object commit of `events` events.
    pub fn commit(&self, events: usize, duration: Duration) {
        self.batch_events.observe(events as f64);
        self.commit_duration.observe(duration.as_secs_f64());
    }

    pub fn alarm_fired(&self) {
        self.alarms_fired.inc();
    }

    pub fn alarm_retried(&self) {
        self.alarms_retried.inc();
    }

    /// Every metric in the OpenMetrics text format, the gauges set from
    /// `now`.
    pub fn encode(&self, now: Snapshot) -> String {
        let gauge = |value: usize| i64::try_from(value).unwrap_or(i64::MAX);
        let objects = &now.objects;
        self.objects_active.set(gauge(objects.active));
        self.websockets_open.set(gauge(objects.websockets_open));
        self.websockets_hibernated
            .set(gauge(objects.websockets_hibernated));
        self.alarms_scheduled.set(gauge(objects.alarms_scheduled));
        self.alarms_due.set(gauge(objects.alarms_due));
        self.memory_reserved.set(gauge(now.memory_reserved_bytes));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }
}
