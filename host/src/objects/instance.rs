//! The warm instance of an object: started (instantiated and constructed)
//! on the first event, kept between events, and given each event in turn.
//! Warm instances draw from slots of their own, so active objects never
//! take the instance slots the pool keeps for stateless requests.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime::Store;

use super::error::ObjectError;
use super::hibernation::Outgoing;
use super::id::ObjectKey;
use super::mailbox::{CallPath, Chain, Event, Reply};
use super::storage::ObjectDb;
use crate::bindings::exports::verge::platform::object_events::AlarmInfo;
use crate::bindings::exports::verge::platform::{object, object_events};
use crate::runtime::{HostState, LoadedWorker, RequestId, guarded, new_store};
use crate::telemetry::{Instantiation, ObjectEventRecord};

/// What a store running a Durable Object knows about it.
pub(crate) struct ObjectScope {
    pub(crate) key: ObjectKey,
    pub(crate) db: Arc<Mutex<ObjectDb>>,
    /// The objects waiting on the current event.
    pub(crate) callers: Chain,
    /// What the current event sent on its WebSockets, held until it
    /// commits (the output gate covers sockets too).
    pub(crate) outbox: Vec<Outgoing>,
    /// Payload bytes in `outbox`.
    pub(crate) outbox_bytes: usize,
}

impl HostState {
    /// Where a call from here comes from: the current object's callers
    /// and the object itself (an object already on it cannot be called
    /// again: that would deadlock), and the request's hops.
    pub(crate) fn call_path(&self) -> CallPath {
        let objects = match &self.object {
            Some(object) => object
                .callers
                .iter()
                .cloned()
                .chain([object.key.clone()])
                .collect(),
            None => Chain::default(),
        };
        CallPath {
            objects,
            hops: self.hops,
            request_id: Some(self.request_id()),
        }
    }
}

/// The warm instances' share of the instance pool: one permit each,
/// `--max-objects` in all.
pub(crate) struct InstanceSlots {
    slots: Arc<Semaphore>,
    max: usize,
    /// Instances started since the host started (each wake-up of an
    /// evicted object is one).
    started: AtomicU64,
}

impl InstanceSlots {
    pub(crate) fn new(max: usize) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(max)),
            max,
            started: AtomicU64::new(0),
        }
    }

    pub(crate) fn started(&self) -> u64 {
        self.started.load(Ordering::Relaxed)
    }

    /// Waits (up to `wait`) for a free slot.
    async fn acquire(&self, wait: Duration) -> Result<OwnedSemaphorePermit, ObjectError> {
        match tokio::time::timeout(wait, self.slots.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(ObjectError::Overloaded(format!(
                "all {} object instance slots stayed busy (raise --max-objects)",
                self.max
            ))),
        }
    }
}

/// An instance of the object's class, kept between events.
pub(crate) struct Warm {
    pub(crate) worker: Arc<LoadedWorker>,
    class: String,
    /// `Class:name` (or the id of an object without a name), for logs.
    label: String,
    store: Store<HostState>,
    exports: object::Guest,
    /// WebSocket and alarm handlers; components built before them have none.
    events: Option<object_events::Guest>,
    /// The object's slot, returned on drop.
    _slot: OwnedSemaphorePermit,
}

impl Warm {
    /// Instantiates `class` of `worker` and constructs the object.
    pub(crate) async fn start(
        slots: &InstanceSlots,
        worker: Arc<LoadedWorker>,
        scope: ObjectScope,
        class: &str,
        name: Option<&str>,
    ) -> Result<Self, ObjectError> {
        let Some(indices) = worker.object.clone() else {
            return Err(ObjectError::NotDeployed(format!(
                "worker `{}` defines no Durable Object classes",
                worker.context.name
            )));
        };
        let wall_ms = worker.context.config.limits.wall_ms;
        let slot = slots.acquire(Duration::from_millis(wall_ms)).await?;
        let id = scope.key.id.to_string();
        slots.started.fetch_add(1, Ordering::Relaxed);
        let mut state = HostState::new(worker.context.clone(), RequestId::random());
        state.object = Some(scope);
        let mut store = new_store(&worker, state);
        let cpu = store.data().cpu.clone();
        let result = guarded(wall_ms, &cpu, async {
            let instance = worker.instantiate(&mut store).await?;
            let exports = indices.load(&mut store, &instance)?;
            let events = match &worker.events {
                Some(events) => Some(events.load(&mut store, &instance)?),
                None => None,
            };
            Ok(exports
                .call_construct(&mut store, class, &id, name)
                .await?
                .map(|()| (exports, events)))
        })
        .await
        .map_err(|e| store.data().with_last_words(e));
        store
            .data()
            .record_call(Some(Instantiation::Object), &result);
        let (exports, events) = result
            .map_err(|e| ObjectError::from(e).context(&format!("constructing {class} {id}")))?;
        Ok(Self {
            worker,
            label: format!("{class}:{}", name.unwrap_or(&id)),
            class: class.to_owned(),
            store,
            exports,
            events,
            _slot: slot,
        })
    }

    /// Runs one event. `alarm` describes the alarm an alarm event fires.
    /// After a [`ObjectError::GuestTrap`] the instance is unusable.
    pub(crate) async fn run(
        &mut self,
        event: Event,
        alarm: Option<&AlarmInfo>,
        path: CallPath,
    ) -> Result<Reply, ObjectError> {
        let wall_ms = self.worker.context.config.limits.wall_ms;
        let started = Instant::now();
        // Described only for a watcher: chat rooms run many events.
        let described = (self.worker.context.telemetry.tail.is_watched()).then(|| event.describe());
        let state = self.store.data_mut();
        state.begin_event(path.request_id.unwrap_or_else(RequestId::random));
        state.hops = path.hops;
        if let Some(object) = &mut state.object {
            object.callers = path.objects;
        }
        self.store.set_epoch_deadline(1);
        let cpu = self.store.data().cpu.clone();
        let (store, exports) = (&mut self.store, &self.exports);
        let result = match event {
            Event::Fetch(request) => {
                guarded(wall_ms, &cpu, exports.call_fetch(&mut *store, &request))
                    .await
                    .map(Reply::Fetch)
            }
            Event::Rpc { method, args } => {
                guarded(wall_ms, &cpu, exports.call_rpc(&mut *store, &method, &args))
                    .await
                    .map(Reply::Rpc)
            }
            other => {
                let Some(events) = &self.events else {
                    return Err(ObjectError::NotDeployed(format!(
                        "{} was built before WebSocket and alarm events: rebuild it with this SDK",
                        self.class
                    )));
                };
                let call = match other {
                    Event::WebSocketMessage { socket, message } => {
                        guarded(
                            wall_ms,
                            &cpu,
                            events.call_websocket_message(&mut *store, socket, &message),
                        )
                        .await
                    }
                    Event::WebSocketClose {
                        socket,
                        code,
                        reason,
                        was_clean,
                    } => {
                        guarded(
                            wall_ms,
                            &cpu,
                            events.call_websocket_close(
                                &mut *store,
                                socket,
                                code,
                                &reason,
                                was_clean,
                            ),
                        )
                        .await
                    }
                    Event::WebSocketError { socket, error } => {
                        guarded(
                            wall_ms,
                            &cpu,
                            events.call_websocket_error(&mut *store, socket, &error),
                        )
                        .await
                    }
                    Event::Alarm { .. } => {
                        let info = alarm.expect("an alarm event comes with its alarm");
                        guarded(wall_ms, &cpu, events.call_alarm(&mut *store, info)).await
                    }
                    Event::Fetch(_) | Event::Rpc { .. } => unreachable!("matched above"),
                };
                call.map(|()| Reply::Done)
            }
        };
        let result = result.map_err(|error| self.store.data().with_last_words(error));
        let state = self.store.data();
        state.record_call(None, &result);
        if let Some(event) = described {
            self.worker
                .context
                .telemetry
                .object_event_finished(ObjectEventRecord {
                    request_id: state.request_id().to_string(),
                    worker: (&self.worker.context.name, self.worker.context.version),
                    object: &self.label,
                    event,
                    failed: result.is_err(),
                    duration: started.elapsed(),
                    logs: state.guest_log().take_collected(),
                });
        }
        result.map_err(ObjectError::from)
    }

    /// What the last event sent on its sockets.
    pub(crate) fn take_outbox(&mut self) -> Vec<Outgoing> {
        self.store
            .data_mut()
            .object
            .as_mut()
            .map(|scope| {
                scope.outbox_bytes = 0;
                std::mem::take(&mut scope.outbox)
            })
            .unwrap_or_default()
    }
}
