//! Durable Objects: one actor per object, each with its own SQLite
//! database and, while it is active, one warm instance.
//!
//! [`ObjectSystem`] is the directory: it finds or starts the actor for an
//! object and hands it messages. Actors run on a runtime of their own, so
//! their SQLite calls (synchronous, usually microseconds, sometimes a long
//! query) never hold up the front door's threads. See `actor.rs` for the
//! gates and group commit.

mod actor;
mod alarms;
mod id;
mod sockets;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use anyhow::{Context, Result};
use arc_swap::ArcSwap;
use tokio::sync::{mpsc, oneshot};

pub use id::{ObjectId, ObjectKey};
pub use sockets::{
    Accepted, Outgoing, SocketHub, SocketId, SocketLimits, UPGRADE_HEADER, close_frame, frame_size,
    serve_connection, validate_close,
};

use crate::bindings::verge::platform::websocket::Message as WsMessage;
use crate::bindings::{Request, Response};
use crate::platform::Platform;
use crate::runtime::WorkerContext;
use crate::storage::{ControlStore, NamespaceRecord, ObjectDb, ObjectRecord, unix_now};

/// The objects on the current call path, outermost first.
pub type Chain = Arc<[ObjectKey]>;

/// What a store running a Durable Object knows about it.
pub struct ObjectScope {
    pub key: ObjectKey,
    pub db: Arc<Mutex<ObjectDb>>,
    /// The objects waiting on the current event.
    pub callers: Chain,
    /// What the current event sent on its WebSockets, held until it
    /// commits (the output gate covers sockets too).
    pub outbox: Vec<Outgoing>,
    /// Payload bytes in `outbox`.
    pub outbox_bytes: usize,
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

/// Test hooks that make the next commits fail, to check that a client never
/// sees success for writes that did not reach the disk.
#[derive(Debug, Default)]
pub struct FaultInjection {
    failing_commits: AtomicU32,
}

impl FaultInjection {
    pub fn fail_next_commits(&self, count: u32) {
        self.failing_commits.store(count, Ordering::SeqCst);
    }

    fn take_commit_failure(&self) -> bool {
        self.failing_commits
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }
}

/// Why a call to an object failed, in the terms of the `objects` interface.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ObjectError {
    #[error("no Durable Object binding named `{0}` in verge.toml")]
    UnknownBinding(String),
    #[error("{0}")]
    InvalidId(String),
    #[error("calling {0} would re-enter an object already on this call chain")]
    Cycle(String),
    #[error("the object did not answer in time")]
    Timeout,
    #[error("{0}")]
    Failed(String),
}

/// An event for an object, and the answer it produced.
#[derive(Debug)]
pub enum Event {
    Fetch(Request),
    Rpc {
        method: String,
        args: Vec<u8>,
    },
    WebSocketMessage {
        socket: SocketId,
        message: WsMessage,
    },
    WebSocketClose {
        socket: SocketId,
        code: u16,
        reason: String,
        was_clean: bool,
    },
    WebSocketError {
        socket: SocketId,
        error: String,
    },
    Alarm {
        name: String,
    },
}

#[derive(Debug)]
pub enum Reply {
    Fetch(Response),
    Rpc(Vec<u8>),
    /// A WebSocket or alarm event ran.
    Done,
}

/// Where an event's reply arrives.
pub(crate) type PendingReply = oneshot::Receiver<Result<Reply, ObjectError>>;

/// Waits up to `timeout` for an event queued with `ObjectSystem::enqueue`.
pub(crate) async fn await_reply(
    answer: Result<PendingReply, ObjectError>,
    timeout: Duration,
) -> Result<Reply, ObjectError> {
    match tokio::time::timeout(timeout, answer?).await {
        Err(_) => Err(ObjectError::Timeout),
        Ok(Err(_)) => Err(ObjectError::Failed(
            "the object stopped before answering".into(),
        )),
        Ok(Ok(result)) => result,
    }
}

/// What actors receive.
pub(crate) enum Message {
    Event {
        event: Event,
        name: Option<String>,
        callers: Chain,
        reply: oneshot::Sender<Result<Reply, ObjectError>>,
    },
    /// A consistent copy of the database, as SQLite file bytes.
    Export(oneshot::Sender<Result<Vec<u8>>>),
    /// Replace the database with these SQLite file bytes.
    Import(Vec<u8>, oneshot::Sender<Result<()>>),
    /// Remove the object and its data.
    Delete(oneshot::Sender<Result<()>>),
    /// Drop the instance and close the database now.
    Evict(oneshot::Sender<()>),
}

/// One object, as `verge objects list` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ObjectSummary {
    pub id: String,
    /// Known when the object was reached by name.
    pub name: Option<String>,
    pub size_bytes: u64,
    /// Unix seconds; 0 when the host has not seen it active.
    pub last_active: i64,
}

/// An actor's inbox, and when it was last sent anything (for evicting the
/// least recently used object when too many are active).
struct Mailbox {
    sender: mpsc::UnboundedSender<Message>,
    last_used: std::time::Instant,
    /// Asked to evict and not sent an event since: it no longer counts as
    /// active, and is not picked again.
    evicting: bool,
}

/// A namespace as the host resolved it.
#[derive(Debug, Clone)]
pub struct Namespace {
    pub id: Arc<str>,
    pub worker: String,
    pub class: String,
}

/// The directory of objects and the runtime their actors run on.
pub struct ObjectSystem {
    me: Weak<ObjectSystem>,
    /// Set once the platform exists: actors look up the active version of
    /// their worker through it.
    platform: OnceLock<Weak<Platform>>,
    control: Arc<ControlStore>,
    root: PathBuf,
    id_key: Vec<u8>,
    options: ObjectOptions,
    /// Active objects past which the least recently used one is evicted
    /// to make room (the host's `--max-objects`).
    max_active: usize,
    /// One permit per warm instance, `max_active` in all: objects never
    /// take the instance slots the pool keeps for stateless requests.
    instance_slots: Arc<tokio::sync::Semaphore>,
    runtime: Option<tokio::runtime::Runtime>,
    actors: Mutex<HashMap<ObjectKey, Mailbox>>,
    namespaces: ArcSwap<Vec<NamespaceRecord>>,
    /// Names and activity not yet written to the control database, one
    /// entry per object however busy it was.
    activity: Mutex<HashMap<ObjectKey, ObjectRecord>>,
    pub faults: FaultInjection,
    sockets: SocketHub,
    alarms: alarms::AlarmSchedule,
    /// Instances started for objects since the host started (a test of
    /// hibernation counts them).
    instances_started: AtomicU64,
}

impl ObjectSystem {
    pub fn new(
        control: Arc<ControlStore>,
        data_dir: &std::path::Path,
        options: ObjectOptions,
        max_active: usize,
    ) -> Result<Arc<Self>> {
        let id_key =
            control.setting_or_init("object_id_key", || hex::encode(rand::random::<[u8; 32]>()))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .thread_name("verge-objects")
            .enable_all()
            .build()
            .context("starting the Durable Object runtime")?;
        let namespaces = ArcSwap::from_pointee(control.namespaces()?);
        let id_key = hex::decode(id_key).context("the stored object id key is not hex")?;
        let system = Arc::new_cyclic(|me| Self {
            me: me.clone(),
            platform: OnceLock::new(),
            namespaces,
            control,
            root: data_dir.join("objects"),
            id_key,
            max_active,
            instance_slots: Arc::new(tokio::sync::Semaphore::new(max_active)),
            runtime: Some(runtime),
            actors: Mutex::default(),
            activity: Mutex::default(),
            faults: FaultInjection::default(),
            sockets: SocketHub::new(options.sockets),
            alarms: alarms::AlarmSchedule::default(),
            instances_started: AtomicU64::new(0),
            options,
        });
        let weak = Arc::downgrade(&system);
        system.spawn(async move {
            // Writes names and activity in batches, off the request path.
            let mut tick = tokio::time::interval(Duration::from_millis(500));
            loop {
                tick.tick().await;
                let Some(system) = weak.upgrade() else { break };
                if let Err(e) = system.flush_activity() {
                    tracing::warn!("recording object activity: {e:#}");
                }
            }
        });
        Ok(system)
    }

    /// Connects the system to the platform it serves.
    pub fn attach(&self, platform: Weak<Platform>) {
        let _ = self.platform.set(platform);
    }

    /// Starts firing alarms, those that fell due while the host was down
    /// first. Called once the deployed workers are back.
    pub fn start_alarms(&self) -> Result<()> {
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
        Ok(())
    }

    /// The WebSockets objects have accepted.
    pub fn sockets(&self) -> &SocketHub {
        &self.sockets
    }

    /// How many object instances have been started (each wake-up of an
    /// evicted object is one).
    pub fn instances_started(&self) -> u64 {
        self.instances_started.load(Ordering::Relaxed)
    }

    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        self.runtime
            .as_ref()
            .expect("the runtime lives as long as the system")
            .spawn(task);
    }

    /// Reloads namespaces after migrations changed them.
    pub fn reload_namespaces(&self) -> Result<()> {
        self.namespaces.store(Arc::new(self.control.namespaces()?));
        Ok(())
    }

    /// The namespace of `class` defined by `worker`.
    pub fn namespace(&self, worker: &str, class: &str) -> Option<Namespace> {
        self.namespaces
            .load()
            .iter()
            .find(|ns| ns.worker == worker && ns.class == class)
            .map(|ns| Namespace {
                id: ns.id.as_str().into(),
                worker: ns.worker.clone(),
                class: ns.class.clone(),
            })
    }

    fn namespace_by_id(&self, id: &str) -> Option<Namespace> {
        let namespaces = self.namespaces.load();
        let ns = namespaces.iter().find(|ns| ns.id == id)?;
        self.namespace(&ns.worker, &ns.class)
    }

    /// The namespace a worker reaches as `binding`.
    pub fn resolve(&self, worker: &WorkerContext, binding: &str) -> Result<Namespace, ObjectError> {
        let declared = worker
            .config
            .durable_objects
            .bindings
            .iter()
            .find(|b| b.name == binding)
            .ok_or_else(|| ObjectError::UnknownBinding(binding.to_owned()))?;
        let script = declared.script_name.as_deref().unwrap_or(&worker.name);
        self.namespace(script, &declared.class_name).ok_or_else(|| {
            ObjectError::Failed(format!(
                "class `{}` of worker `{script}` does not exist (is that worker deployed with a migration creating it?)",
                declared.class_name
            ))
        })
    }

    /// The id `name` has in `namespace`.
    pub fn id_from_name(&self, namespace: &Namespace, name: &str) -> ObjectId {
        ObjectId::from_name(&self.id_key, &namespace.id, name)
    }

    /// Delivers `event` to an object, starting its actor if needed, and
    /// waits up to `timeout` for the reply.
    pub async fn call(
        &self,
        key: ObjectKey,
        name: Option<String>,
        event: Event,
        callers: Chain,
        timeout: Duration,
    ) -> Result<Reply, ObjectError> {
        let answer = self.enqueue(&key, name, event, callers);
        await_reply(answer, timeout).await
    }

    /// Queues `event` for an object now, in order with what was queued
    /// before; the reply comes on the returned channel.
    pub(crate) fn enqueue(
        &self,
        key: &ObjectKey,
        name: Option<String>,
        event: Event,
        callers: Chain,
    ) -> Result<PendingReply, ObjectError> {
        if callers.contains(key) {
            return Err(ObjectError::Cycle(key.to_string()));
        }
        let (reply, answer) = oneshot::channel();
        self.send(
            key,
            Message::Event {
                event,
                name,
                callers,
                reply,
            },
        )?;
        Ok(answer)
    }

    /// Hands `message` to the object's actor, starting one if it has none.
    ///
    /// Sending happens under the directory lock, and an actor retires only
    /// under the same lock with an empty mailbox: a message is never sent
    /// to an actor that has decided to stop.
    fn send(&self, key: &ObjectKey, message: Message) -> Result<(), ObjectError> {
        let mut actors = self.actors.lock().expect("directory lock");
        if let Some(mailbox) = actors.get_mut(key) {
            mailbox.last_used = std::time::Instant::now();
            mailbox.evicting &= !matches!(message, Message::Event { .. });
            match mailbox.sender.send(message) {
                Ok(()) => return Ok(()),
                // The actor died (a panic in the host): start over.
                Err(mpsc::error::SendError(message)) => {
                    actors.remove(key);
                    return self.start_actor(&mut actors, key, message);
                }
            }
        }
        self.start_actor(&mut actors, key, message)
    }

    fn start_actor(
        &self,
        actors: &mut HashMap<ObjectKey, Mailbox>,
        key: &ObjectKey,
        first: Message,
    ) -> Result<(), ObjectError> {
        let active = actors.values().filter(|m| !m.evicting).count();
        if active >= self.max_active
            && let Some(oldest) = actors
                .values_mut()
                .filter(|m| !m.evicting)
                .min_by_key(|m| m.last_used)
        {
            // It leaves once its queued events are done.
            let (done, _) = oneshot::channel();
            let _ = oldest.sender.send(Message::Evict(done));
            oldest.evicting = true;
        }
        let namespace = self.namespace_by_id(&key.namespace).ok_or_else(|| {
            ObjectError::Failed(format!("namespace {} no longer exists", key.namespace))
        })?;
        let (sender, inbox) = mpsc::unbounded_channel();
        sender.send(first).expect("the inbox is alive");
        actors.insert(
            key.clone(),
            Mailbox {
                sender,
                last_used: std::time::Instant::now(),
                evicting: false,
            },
        );
        let path = self.object_path(key);
        self.spawn(actor::run(
            self.me.clone(),
            key.clone(),
            namespace,
            path,
            inbox,
        ));
        Ok(())
    }

    /// Called by an actor that has been idle: retires it unless a message
    /// arrived meanwhile.
    fn retire(&self, key: &ObjectKey, inbox: &mpsc::UnboundedReceiver<Message>) -> bool {
        let mut actors = self.actors.lock().expect("directory lock");
        if !inbox.is_empty() {
            return false;
        }
        actors.remove(key);
        self.sockets.forget_if_idle(key);
        true
    }

    /// Where an object's database lives.
    pub fn object_path(&self, key: &ObjectKey) -> PathBuf {
        self.root
            .join(&*key.namespace)
            .join(format!("{}.sqlite", key.id))
    }

    /// How many objects have an actor right now.
    pub fn active_count(&self) -> usize {
        self.actors.lock().expect("directory lock").len()
    }

    /// Evicts every active object (a test and operations knob): instances
    /// dropped, databases closed. Hibernated state survives.
    pub async fn evict_all(&self) {
        self.evict_where(|_| true).await;
    }

    /// Evicts the active objects `which` picks, waiting for each to close.
    async fn evict_where(&self, which: impl Fn(&ObjectKey) -> bool) {
        let keys: Vec<ObjectKey> = self
            .actors
            .lock()
            .expect("directory lock")
            .keys()
            .filter(|k| which(k))
            .cloned()
            .collect();
        for key in keys {
            let (done, wait) = oneshot::channel();
            if self.send_existing(&key, Message::Evict(done)) {
                let _ = wait.await;
            }
        }
    }

    /// Sends only to an actor that exists; returns whether it did.
    fn send_existing(&self, key: &ObjectKey, message: Message) -> bool {
        let actors = self.actors.lock().expect("directory lock");
        actors
            .get(key)
            .is_some_and(|mailbox| mailbox.sender.send(message).is_ok())
    }

    /// Runs an administrative operation through the object's actor, so it
    /// is ordered with the object's events.
    async fn administer<T>(
        &self,
        key: &ObjectKey,
        message: impl FnOnce(oneshot::Sender<Result<T>>) -> Message,
    ) -> Result<T> {
        let (reply, answer) = oneshot::channel();
        self.send(key, message(reply))
            .map_err(anyhow::Error::from)?;
        answer
            .await
            .context("the object stopped before answering")?
    }

    /// A consistent copy of an object's database, as SQLite file bytes.
    pub async fn export(&self, key: &ObjectKey) -> Result<Vec<u8>> {
        self.administer(key, Message::Export).await
    }

    /// Replaces an object's database with SQLite file bytes, after checking
    /// them; the object's next event sees the new data.
    pub async fn import(&self, key: &ObjectKey, bytes: Vec<u8>) -> Result<()> {
        self.administer(key, |reply| Message::Import(bytes, reply))
            .await
    }

    /// Removes an object and all its data.
    pub async fn delete(&self, key: &ObjectKey) -> Result<()> {
        self.administer(key, Message::Delete).await
    }

    /// Every object of a namespace that has data, most recently active
    /// first.
    pub fn list(&self, namespace: &Namespace) -> Result<Vec<ObjectSummary>> {
        self.flush_activity()?;
        let dir = self.root.join(&*namespace.id);
        let mut known: HashMap<String, ObjectRecord> = self
            .control
            .objects(&namespace.id)?
            .into_iter()
            .map(|r| (r.id.clone(), r))
            .collect();
        let mut summaries = Vec::new();
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(summaries),
            Err(e) => return Err(e).with_context(|| format!("listing {}", dir.display())),
        };
        for entry in entries {
            let path = entry?.path();
            let Some(id) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".sqlite"))
                .filter(|id| ObjectId::parse(id).is_ok())
            else {
                continue;
            };
            let size_bytes = ["", "-wal"]
                .iter()
                .filter_map(|suffix| std::fs::metadata(format!("{}{suffix}", path.display())).ok())
                .map(|m| m.len())
                .sum();
            let record = known.remove(id);
            summaries.push(ObjectSummary {
                id: id.to_owned(),
                name: record.as_ref().and_then(|r| r.name.clone()),
                size_bytes,
                last_active: record.map_or(0, |r| r.last_active),
            });
        }
        summaries.sort_by(|a, b| {
            b.last_active
                .cmp(&a.last_active)
                .then_with(|| a.id.cmp(&b.id))
        });
        Ok(summaries)
    }

    /// Notes that an object was active (and, when known, its name).
    fn record_activity(&self, key: &ObjectKey, name: Option<&str>) {
        let mut activity = self.activity.lock().expect("activity lock");
        let record = activity.entry(key.clone()).or_insert_with(|| ObjectRecord {
            id: key.id.to_string(),
            name: None,
            last_active: 0,
        });
        record.last_active = unix_now();
        if let Some(name) = name {
            record.name = Some(name.to_owned());
        }
    }

    /// Writes pending names and activity to the control database.
    pub fn flush_activity(&self) -> Result<()> {
        let pending = std::mem::take(&mut *self.activity.lock().expect("activity lock"));
        if !pending.is_empty() {
            let records: Vec<(String, ObjectRecord)> = pending
                .into_iter()
                .map(|(key, record)| (key.namespace.to_string(), record))
                .collect();
            self.control.record_objects(&records)?;
        }
        Ok(())
    }

    fn platform(&self) -> Option<Arc<Platform>> {
        self.platform.get()?.upgrade()
    }

    fn control(&self) -> &ControlStore {
        &self.control
    }

    /// Waits (up to `wait`) for one of the objects' instance slots.
    async fn instance_slot(
        &self,
        wait: Duration,
    ) -> Result<tokio::sync::OwnedSemaphorePermit, ObjectError> {
        match tokio::time::timeout(wait, self.instance_slots.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(ObjectError::Failed(format!(
                "all {} object instance slots stayed busy (raise --max-objects)",
                self.max_active
            ))),
        }
    }

    fn options(&self) -> &ObjectOptions {
        &self.options
    }

    /// Stops every actor of a deleted namespace and removes its files.
    pub async fn delete_namespace(&self, namespace: &str) -> Result<()> {
        self.evict_where(|k| &*k.namespace == namespace).await;
        self.sockets
            .close_namespace(namespace, 1001, "the object was deleted");
        self.alarms.forget_namespace(namespace);
        let dir = self.root.join(namespace);
        match std::fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(e).with_context(|| format!("removing {}", dir.display()))
            }
            _ => Ok(()),
        }
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
