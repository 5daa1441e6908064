//! Durable Objects: one actor per object, each with its own SQLite
//! database and, while it is active, one warm instance.
//!
//! The rest of the host talks to [`ObjectSystem`]: resolve a binding to an
//! object, run an event on it ([`ObjectSystem::call`]), and administer
//! objects (`admin.rs`). The system asks for the code it runs through the
//! `ActiveCode` handle the platform gives it; it never sees the platform.
//!
//! A request meets the files in this order:
//!
//! | file | concept |
//! |---|---|
//! | `namespaces.rs` | binding → namespace, name → object id (`id.rs`) |
//! | `directory.rs` | the live actors, placement, LRU eviction |
//! | `mailbox.rs` | events, replies, and taking a batch out of an inbox |
//! | `actor.rs` | one object's task: what running an event means |
//! | `batch.rs` | the input and output gates, group commit |
//! | `instance.rs` | the warm instance: start, run an event, its slots |
//! | `storage/` | the object's SQLite file: connection policy, authorizer, guest SQL, transactions, KV |
//! | `alarms/` | every host-side alarm concern: table, index, scheduler, retries |
//! | `hibernation/` | WebSockets the host holds for objects: the hub, and a task per connection |
//! | `activity.rs` | names and last activity, written in batches |
//! | `admin.rs` | list, export, import, delete, evict |
//! | `error.rs` | why a call failed, and its HTTP status |
//!
//! Actors run on a runtime of their own, so their SQLite calls
//! (synchronous, usually microseconds, sometimes a long query) never hold
//! up the front door's threads.

mod activity;
mod actor;
mod admin;
mod alarms;
mod batch;
mod closing;
mod directory;
mod error;
#[cfg(feature = "test-hooks")]
mod faults;
mod hibernation;
mod id;
mod instance;
mod mailbox;
mod namespaces;
mod routing;
pub(crate) mod storage;
mod waits;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::Duration;

use anyhow::{Context, Result};

pub(crate) use admin::AdminOp;
pub use admin::ObjectStats;
pub use error::ObjectError;
#[cfg(feature = "test-hooks")]
pub use faults::FaultInjection;
pub use hibernation::SocketLimits;
pub(crate) use hibernation::{
    SocketHub, SocketId, UPGRADE_HEADER, close_frame, frame_size, serve_connection, validate_close,
};
pub use id::{ObjectId, ObjectKey};
pub(crate) use instance::ObjectScope;
pub use mailbox::{CallPath, Chain, Event, Reply};
pub use namespaces::Namespace;
pub(crate) use namespaces::new_id_key_setting;
pub(crate) use storage::{KvRange, ObjectDb, SqlError, SqlErrorKind, lock};

use crate::cluster::Cluster;
use crate::config::WorkerConfig;
use crate::runtime::LoadedWorker;
use crate::storage::ControlStore;
use crate::telemetry::Telemetry;
use activity::Activity;
use alarms::{AlarmSchedule, RetryPolicy};
use closing::Closing;
use directory::Directory;
use instance::InstanceSlots;
use mailbox::{Message, Pending, PendingReply, await_reply};
use namespaces::Namespaces;
use waits::WaitsFor;

/// Where objects find the code they run: the active version of a worker.
/// The platform implements it over what it serves; objects hold only this.
pub(crate) trait ActiveCode: Send + Sync {
    fn active(&self, worker: &str) -> Option<Arc<LoadedWorker>>;
}

/// How objects behave, host-wide.
#[derive(Debug, Clone)]
pub struct ObjectOptions {
    /// An object with no events for this long is evicted: its instance
    /// dropped, its database closed.
    pub idle_timeout: Duration,
    /// Most events one commit may cover.
    pub max_batch: usize,
    /// The delay before the first retry of a failed alarm; each retry
    /// doubles it.
    pub alarm_retry_base: Duration,
    /// Retries of a failing alarm before it is dropped.
    pub alarm_max_retries: u32,
    pub sockets: SocketLimits,
}

impl Default for ObjectOptions {
    fn default() -> Self {
        Self {
            idle_timeout: Duration::from_secs(10),
            max_batch: 256,
            alarm_retry_base: Duration::from_secs(2),
            alarm_max_retries: 6,
            sockets: SocketLimits::default(),
        }
    }
}

impl ObjectOptions {
    fn alarm_retries(&self) -> RetryPolicy {
        RetryPolicy {
            base: self.alarm_retry_base,
            max_retries: self.alarm_max_retries,
        }
    }
}

/// The Durable Object subsystem of a host.
pub struct ObjectSystem {
    me: Weak<ObjectSystem>,
    code: Arc<dyn ActiveCode>,
    /// In cluster mode: where objects live, and their histories.
    cluster: Option<Arc<Cluster>>,
    control: Arc<ControlStore>,
    /// `objects/` in the data directory: one folder per namespace, one
    /// SQLite file per object.
    root: PathBuf,
    options: ObjectOptions,
    runtime: Option<tokio::runtime::Runtime>,
    directory: Directory,
    namespaces: Namespaces,
    activity: Activity,
    instances: InstanceSlots,
    sockets: SocketHub,
    alarms: AlarmSchedule,
    closing: Closing,
    waits: WaitsFor,
    telemetry: Arc<Telemetry>,
    /// Test hooks: make commits fail on purpose.
    #[cfg(feature = "test-hooks")]
    pub faults: FaultInjection,
}

impl ObjectSystem {
    /// The object system of a host whose data lives in `data_dir`, running
    /// the code `code` names, with at most `max_active` objects active.
    pub(crate) fn new(
        control: Arc<ControlStore>,
        data_dir: &Path,
        options: ObjectOptions,
        max_active: usize,
        code: Arc<dyn ActiveCode>,
        telemetry: Arc<Telemetry>,
        cluster: Option<Arc<Cluster>>,
    ) -> Result<Arc<Self>> {
        // SQLite runs on these threads, synchronously: a statement that
        // uses up its SQL budget holds one for up to `limits.sql_ms`. More
        // threads than cores keep other objects moving meanwhile.
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads((cores * 2).max(4))
            .thread_name("verge-objects")
            .enable_all()
            .build()
            .context("starting the Durable Object runtime")?;
        let namespaces = Namespaces::load(&control)?;
        let system = Arc::new_cyclic(|me| Self {
            me: me.clone(),
            code,
            cluster,
            namespaces,
            control,
            root: data_dir.join("objects"),
            runtime: Some(runtime),
            directory: Directory::new(max_active),
            activity: Activity::default(),
            instances: InstanceSlots::new(max_active),
            sockets: SocketHub::new(options.sockets),
            alarms: AlarmSchedule::default(),
            closing: Closing::default(),
            waits: WaitsFor::default(),
            telemetry,
            #[cfg(feature = "test-hooks")]
            faults: FaultInjection::default(),
            options,
        });
        let weak = Arc::downgrade(&system);
        system.spawn(async move {
            let mut tick = tokio::time::interval(activity::FLUSH_EVERY);
            loop {
                tick.tick().await;
                let Some(system) = weak.upgrade() else { break };
                if let Err(e) = system.share_activity().await {
                    tracing::warn!("recording object activity: {e:#}");
                }
            }
        });
        Ok(system)
    }

    /// Starts firing alarms, those that fell due while the host was down
    /// first. Called once the deployed workers are back.
    pub(crate) fn start_alarms(&self) -> Result<()> {
        for record in self.control.alarms()? {
            let Ok(id) = ObjectId::parse(&record.object_id) else {
                tracing::warn!(
                    object = record.object_id,
                    "skipping an alarm with a bad object id"
                );
                continue;
            };
            let key = ObjectKey {
                namespace: record.namespace.into(),
                id,
            };
            self.alarms.add(&key, record.name, record.at_ms);
        }
        self.spawn(alarms::run(self.me.clone()));
        if let Some(cluster) = &self.cluster {
            self.spawn(alarms::adopt_orphans(self.me.clone(), cluster.clone()));
        }
        Ok(())
    }

    /// The cluster this host is part of, if any.
    pub(crate) fn cluster(&self) -> Option<&Arc<Cluster>> {
        self.cluster.as_ref()
    }

    /// The WebSockets objects have accepted.
    pub(crate) fn sockets(&self) -> &SocketHub {
        &self.sockets
    }

    /// How many object instances have been started (each wake-up of an
    /// evicted object is one).
    pub fn instances_started(&self) -> u64 {
        self.instances.started()
    }

    /// How many objects have an actor right now.
    pub fn active_count(&self) -> usize {
        self.directory.len()
    }

    pub(crate) fn telemetry(&self) -> &Telemetry {
        &self.telemetry
    }

    /// Writes pending names and activity to the control database.
    pub fn flush_activity(&self) -> Result<()> {
        self.activity.flush(&self.control).map(drop)
    }

    /// Writes pending names and activity to the control database and, in
    /// a cluster, to the cluster's record of objects.
    async fn share_activity(&self) -> Result<()> {
        let records = self.activity.flush(&self.control)?;
        if let Some(cluster) = &self.cluster
            && !records.is_empty()
        {
            cluster.record_activity(&records).await?;
        }
        Ok(())
    }

    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        self.runtime
            .as_ref()
            .expect("the runtime lives as long as the system")
            .spawn(task);
    }

    /// Reloads namespaces after migrations changed them.
    pub(crate) fn reload_namespaces(&self) -> Result<()> {
        self.namespaces.reload(&self.control)
    }

    /// The namespace of `class` defined by `worker`.
    pub fn namespace(&self, worker: &str, class: &str) -> Option<Namespace> {
        self.namespaces.of_class(worker, class)
    }

    /// The namespace the worker `name` reaches as `binding`.
    pub(crate) fn resolve(
        &self,
        name: &str,
        config: &WorkerConfig,
        binding: &str,
    ) -> Result<Namespace, ObjectError> {
        self.namespaces.resolve(name, config, binding)
    }

    /// The id `name` has in `namespace`.
    pub fn id_from_name(&self, namespace: &Namespace, name: &str) -> ObjectId {
        self.namespaces.id_from_name(namespace, name)
    }

    /// Delivers `event` to an object, starting its actor if needed, and
    /// waits up to `timeout` for the reply.
    pub async fn call(
        &self,
        key: ObjectKey,
        name: Option<String>,
        event: Event,
        path: CallPath,
        timeout: Duration,
    ) -> Result<Reply, ObjectError> {
        let _waiting = match path.objects.last() {
            Some(waiter) if *waiter != key => Some(self.waits.begin(waiter, &key)?),
            _ => None,
        };
        if let Some(cluster) = &self.cluster {
            // Boxed: a single host's calls do not carry the forwarding
            // machinery's state in their futures.
            return Box::pin(routing::call(
                self, cluster, key, name, event, path, timeout,
            ))
            .await;
        }
        let answer = self.enqueue(&key, name, event, path);
        await_reply(answer, timeout).await
    }

    /// Queues `event` for an object now, in order with what was queued
    /// before; the reply comes on the returned channel.
    pub(crate) fn enqueue(
        &self,
        key: &ObjectKey,
        name: Option<String>,
        event: Event,
        path: CallPath,
    ) -> Result<PendingReply, ObjectError> {
        if path.objects.contains(key) {
            return Err(ObjectError::Cycle(key.to_string()));
        }
        let (reply, answer) = tokio::sync::oneshot::channel();
        let pending = Pending {
            event,
            name,
            path,
            reply,
        };
        self.send(key, Message::Event(pending))?;
        Ok(answer)
    }

    /// Hands `message` to the object's actor, starting one if it has none.
    fn send(&self, key: &ObjectKey, message: Message) -> Result<(), ObjectError> {
        self.directory.send(key, message, |inbox, backlog| {
            let namespace = self.namespaces.by_id(&key.namespace).ok_or_else(|| {
                ObjectError::NotDeployed(format!("namespace {} no longer exists", key.namespace))
            })?;
            let path = self
                .root
                .join(&*key.namespace)
                .join(format!("{}.sqlite", key.id));
            self.spawn(actor::run(
                self.me.clone(),
                key.clone(),
                namespace,
                path,
                inbox,
                backlog,
            ));
            Ok(())
        })
    }
}

impl Drop for ObjectSystem {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            // Dropping may happen on an async thread, where a blocking
            // shutdown would panic.
            runtime.shutdown_background();
        }
    }
}
