//! The actor behind one Durable Object.
//!
//! It owns the object's database and, while active, one warm instance. Its
//! loop gives the object the guarantees Cloudflare's do:
//!
//! - **Input gate.** Events run one at a time, in arrival order; an event
//!   never sees another's half-done work.
//! - **Atomic events.** Each event runs inside a savepoint. If it traps or
//!   returns an error, its writes roll back; a trap also discards the
//!   instance, and the next event gets a fresh one.
//! - **Output gate.** A reply leaves only after the transaction holding the
//!   event's writes has committed with `synchronous=FULL`: a client never
//!   sees success for writes a crash could lose.
//! - **Group commit.** Every event already waiting when a batch starts joins
//!   it, and the whole batch shares one commit (one fsync). Under load the
//!   batch grows by itself, which is what lets one object go past the
//!   one-commit-per-request ceiling.
//! - **Sockets and alarms.** What an event sends on its WebSockets leaves
//!   after the commit too, and is dropped if the event fails. An alarm
//!   event takes the alarm out of the database in the event's transaction:
//!   if the handler fails, the alarm comes back, rescheduled with backoff.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, Weak};

use anyhow::{Context, Result, bail};
use tokio::sync::{mpsc, oneshot};
use wasmtime::Store;

use super::{
    Chain, Event, Message, Namespace, ObjectError, ObjectKey, ObjectScope, ObjectSystem, Outgoing,
    Reply,
};
use crate::bindings::exports::verge::platform::{object, object_events};
use crate::runtime::{HostState, InvokeError, LoadedWorker, RequestId, guarded, new_store};
use crate::storage::{DueAlarm, ObjectDb, unix_now_ms};

/// One queued event and where its answer goes.
struct Pending {
    event: Event,
    name: Option<String>,
    callers: Chain,
    reply: oneshot::Sender<Result<Reply, ObjectError>>,
}

/// An instance of the object's class, kept between events.
struct Warm {
    worker: Arc<LoadedWorker>,
    store: Store<HostState>,
    exports: object::Guest,
    /// WebSocket and alarm handlers; components built before them have none.
    events: Option<object_events::Guest>,
    /// The object's share of the instance pool, returned on drop.
    _slot: tokio::sync::OwnedSemaphorePermit,
}

impl Warm {
    /// Instantiates the class and constructs the object.
    async fn start(
        system: &ObjectSystem,
        worker: Arc<LoadedWorker>,
        scope: ObjectScope,
        class: String,
        name: Option<String>,
    ) -> Result<Self, ObjectError> {
        let Some(indices) = worker.object.clone() else {
            return Err(ObjectError::Failed(format!(
                "worker `{}` defines no Durable Object classes",
                worker.context.name
            )));
        };
        let wall_ms = worker.context.config.limits.wall_ms;
        let slot = system
            .instance_slot(std::time::Duration::from_millis(wall_ms))
            .await?;
        let id = scope.key.id.to_string();
        system
            .instances_started
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut store = new_store(
            &worker,
            HostState::for_object(worker.context.clone(), scope),
        );
        let (exports, events) = guarded(wall_ms, async {
            let instance = worker.instantiate(&mut store).await?;
            let exports = indices.load(&mut store, &instance)?;
            let events = match &worker.events {
                Some(events) => Some(events.load(&mut store, &instance)?),
                None => None,
            };
            Ok(exports
                .call_construct(&mut store, &class, &id, name.as_deref())
                .await?
                .map(|()| (exports, events)))
        })
        .await
        .map_err(|e| ObjectError::Failed(format!("constructing {class} {id}: {e}")))?;
        Ok(Self {
            worker,
            store,
            exports,
            events,
            _slot: slot,
        })
    }
}

struct Actor {
    system: Weak<ObjectSystem>,
    key: ObjectKey,
    namespace: Namespace,
    path: PathBuf,
    db: Option<Arc<Mutex<ObjectDb>>>,
    warm: Option<Warm>,
    /// The object's name, once it has been reached by name.
    name: Option<String>,
    /// The alarm the current event is firing, to reschedule if it fails.
    firing: Option<(String, DueAlarm)>,
}

/// Runs the object until it is idle long enough to retire, or deleted.
pub(super) async fn run(
    system: Weak<ObjectSystem>,
    key: ObjectKey,
    namespace: Namespace,
    path: PathBuf,
    mut inbox: mpsc::UnboundedReceiver<Message>,
) {
    let mut actor = Actor {
        system,
        key,
        namespace,
        path,
        db: None,
        warm: None,
        name: None,
        firing: None,
    };
    let mut held: Option<Message> = None;
    loop {
        let Some(system) = actor.system.upgrade() else {
            break;
        };
        let (idle, max_batch) = (system.options().idle_timeout, system.options().max_batch);
        drop(system);
        let message = match held.take() {
            Some(message) => message,
            None => match tokio::time::timeout(idle, inbox.recv()).await {
                Ok(Some(message)) => message,
                Ok(None) => break,
                Err(_idle) => {
                    if actor.retire(&inbox) {
                        break;
                    }
                    continue;
                }
            },
        };
        match message {
            Message::Event {
                event,
                name,
                callers,
                reply,
            } => {
                let mut batch = vec![Pending {
                    event,
                    name,
                    callers,
                    reply,
                }];
                // Everything already waiting joins this batch and its commit.
                while batch.len() < max_batch {
                    match inbox.try_recv() {
                        Ok(Message::Event {
                            event,
                            name,
                            callers,
                            reply,
                        }) => batch.push(Pending {
                            event,
                            name,
                            callers,
                            reply,
                        }),
                        Ok(other) => {
                            held = Some(other);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                actor.process(batch).await;
            }
            Message::Export(reply) => {
                let _ = reply.send(actor.export().await);
            }
            Message::Import(bytes, reply) => {
                let _ = reply.send(actor.import(&bytes).await);
            }
            Message::Evict(done) => {
                actor.hibernate();
                let retired = actor.retire(&inbox);
                let _ = done.send(());
                if retired {
                    break;
                }
            }
            Message::Delete(reply) => {
                let result = actor.delete();
                let _ = reply.send(result);
                actor.leave(inbox);
                return;
            }
        }
    }
    actor.hibernate();
}

impl Actor {
    /// The database, opened on first use (off the runtime's workers:
    /// creating a file and setting up its journal syncs the disk).
    async fn db(&mut self) -> Result<Arc<Mutex<ObjectDb>>> {
        if let Some(db) = &self.db {
            return Ok(db.clone());
        }
        let system = self.system.upgrade().context("the host is shutting down")?;
        let limit = system
            .platform()
            .and_then(|p| p.active(&self.namespace.worker))
            .map_or(
                crate::config::Limits::default().object_storage_bytes(),
                |w| w.context.config.limits.object_storage_bytes(),
            );
        let path = self.path.clone();
        let (db, name) = tokio::task::spawn_blocking(move || -> Result<_> {
            let mut db = ObjectDb::open(&path, limit)?;
            let name = db.meta("name")?;
            Ok((db, name))
        })
        .await
        .context("the task opening the database failed")??;
        self.name = name;
        let db = Arc::new(Mutex::new(db));
        self.db = Some(db.clone());
        Ok(db)
    }

    /// Runs a batch of events in one transaction and releases the replies
    /// only once it has committed.
    async fn process(&mut self, batch: Vec<Pending>) {
        let db = match self.db().await {
            Ok(db) => db,
            Err(e) => return fail_all(batch, format!("cannot open the object's database: {e:#}")),
        };
        if let Err(e) = lock(&db).begin_batch() {
            return fail_all(batch, format!("cannot start a transaction: {e}"));
        }
        let mut outcomes = Vec::with_capacity(batch.len());
        let mut outbox = Vec::new();
        for pending in batch {
            if let Err(e) = self.learn_name(&db, pending.name.as_deref()) {
                outcomes.push((pending.reply, Err(ObjectError::Failed(e.to_string()))));
                continue;
            }
            let began = lock(&db).begin_event();
            let result = match began {
                Ok(()) => self.deliver(&db, pending.event, pending.callers).await,
                Err(e) => Err(ObjectError::Failed(e.to_string())),
            };
            let sent = self.take_outbox();
            if let Err(e) = lock(&db).end_event(result.is_ok()) {
                tracing::error!(object = %self.key, "closing an event's savepoint failed: {e}");
            }
            let result = match result {
                Ok(reply) => {
                    outbox.extend(sent);
                    self.firing = None;
                    Ok(reply)
                }
                Err(e) => self.reschedule_failed_alarm(&db).ok_or(e),
            };
            outcomes.push((pending.reply, result));
        }
        let system = self.system.upgrade();
        let committed = match &system {
            Some(system) if system.faults.take_commit_failure() => {
                Err("injected commit failure".to_owned())
            }
            // The commit waits for fsync, and other objects commit in
            // parallel meanwhile (each has its own file): the wait belongs on
            // the blocking pool, not on one of the runtime's workers.
            Some(system) => {
                let (db, system, key) = (db.clone(), system.clone(), self.key.clone());
                match tokio::task::spawn_blocking(move || commit(&db, &system, &key)).await {
                    Ok(result) => result.map_err(|e| format!("{e:#}")),
                    Err(e) => Err(format!("the commit task failed: {e}")),
                }
            }
            None => Err("the host is shutting down".to_owned()),
        };
        // Before any reply leaves: a client that lists objects after its
        // answer finds this one active, with its name.
        if let Some(system) = &system {
            system.record_activity(&self.key, self.name.as_deref());
        }
        match committed {
            Ok(()) => {
                if let Some(system) = &system {
                    system.sockets.deliver(&self.key, outbox);
                }
                for (reply, result) in outcomes {
                    let _ = reply.send(result);
                }
            }
            Err(e) => {
                lock(&db).rollback_batch();
                if let Some(system) = &system {
                    sync_alarm_index(&db, system, &self.key);
                }
                // The instance may hold state from writes that are gone.
                self.warm = None;
                tracing::error!(object = %self.key, "commit failed: {e}");
                for (reply, _) in outcomes {
                    let _ = reply.send(Err(ObjectError::Failed(format!(
                        "the object's writes could not be committed ({e}); nothing was saved"
                    ))));
                }
            }
        }
    }

    /// Stores the object's name the first time it is reached by name.
    fn learn_name(&mut self, db: &Mutex<ObjectDb>, name: Option<&str>) -> Result<()> {
        if let Some(name) = name
            && self.name.as_deref() != Some(name)
        {
            lock(db).set_meta("name", name)?;
            self.name = Some(name.to_owned());
        }
        Ok(())
    }

    /// Runs one event on the warm instance, starting one if there is none or
    /// a new version was deployed since.
    async fn deliver(
        &mut self,
        db: &Arc<Mutex<ObjectDb>>,
        event: Event,
        callers: Chain,
    ) -> Result<Reply, ObjectError> {
        // Taken first, so that whatever fails from here on (no deployed
        // version, a constructor that traps) counts as a failed attempt.
        let alarm = match &event {
            Event::Alarm { name } => match self.take_alarm(db, name)? {
                Some(info) => Some(info),
                None => return Ok(Reply::Done),
            },
            _ => None,
        };
        let system = self
            .system
            .upgrade()
            .ok_or_else(|| ObjectError::Failed("the host is shutting down".into()))?;
        let worker = system
            .platform()
            .and_then(|p| p.active(&self.namespace.worker))
            .ok_or_else(|| {
                ObjectError::Failed(format!(
                    "worker `{}` is not deployed",
                    self.namespace.worker
                ))
            })?;
        if self
            .warm
            .as_ref()
            .is_none_or(|w| !Arc::ptr_eq(&w.worker, &worker))
        {
            self.warm = None;
            let scope = ObjectScope {
                key: self.key.clone(),
                db: db.clone(),
                callers: Chain::default(),
                outbox: Vec::new(),
                outbox_bytes: 0,
            };
            let class = self.namespace.class.clone();
            self.warm = Some(Warm::start(&system, worker, scope, class, self.name.clone()).await?);
        }
        let warm = self.warm.as_mut().expect("started above");
        let wall_ms = warm.worker.context.config.limits.wall_ms;
        warm.store
            .data_mut()
            .begin_event(RequestId::random(), callers);
        warm.store.set_epoch_deadline(1);
        let (store, exports) = (&mut warm.store, &warm.exports);
        let result = match event {
            Event::Fetch(request) => guarded(wall_ms, exports.call_fetch(&mut *store, &request))
                .await
                .map(Reply::Fetch),
            Event::Rpc { method, args } => {
                guarded(wall_ms, exports.call_rpc(&mut *store, &method, &args))
                    .await
                    .map(Reply::Rpc)
            }
            other => {
                let Some(events) = &warm.events else {
                    return Err(ObjectError::Failed(format!(
                        "{} was built before WebSocket and alarm events: rebuild it with this SDK",
                        self.namespace.class
                    )));
                };
                let call = match other {
                    Event::WebSocketMessage { socket, message } => {
                        guarded(
                            wall_ms,
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
                            events.call_websocket_error(&mut *store, socket, &error),
                        )
                        .await
                    }
                    Event::Alarm { .. } => {
                        let info = alarm.as_ref().expect("taken above");
                        guarded(wall_ms, events.call_alarm(&mut *store, info)).await
                    }
                    Event::Fetch(_) | Event::Rpc { .. } => unreachable!("matched above"),
                };
                call.map(|()| Reply::Done)
            }
        };
        result.map_err(|error| {
            if !matches!(error, InvokeError::Handler(_)) {
                // A trap or a breached limit leaves the instance unusable.
                tracing::error!(object = %self.key, "event failed: {error}");
                self.warm = None;
            }
            ObjectError::Failed(error.to_string())
        })
    }

    /// Takes alarm `name` out of the database to fire it, remembering it
    /// for a retry; `None` when it is no longer due (moved or deleted since
    /// it was scheduled).
    fn take_alarm(
        &mut self,
        db: &Mutex<ObjectDb>,
        name: &str,
    ) -> Result<Option<object_events::AlarmInfo>, ObjectError> {
        let due = lock(db)
            .alarm_take(name, unix_now_ms())
            .map_err(|e| ObjectError::Failed(e.to_string()))?;
        Ok(due.map(|due| {
            self.firing = Some((name.to_owned(), due));
            object_events::AlarmInfo {
                name: name.to_owned(),
                scheduled: due.at_ms,
                retry_count: due.retry,
                is_retry: due.retry > 0,
            }
        }))
    }

    /// What the last event sent on its sockets.
    fn take_outbox(&mut self) -> Vec<Outgoing> {
        self.warm
            .as_mut()
            .and_then(|w| w.store.data_mut().object.as_mut())
            .map(|scope| {
                scope.outbox_bytes = 0;
                std::mem::take(&mut scope.outbox)
            })
            .unwrap_or_default()
    }

    /// After a failed alarm event (its take rolled back), schedules the
    /// next attempt, or drops the alarm once its retries are spent. The
    /// failure is then handled: the scheduler gets `Done`.
    fn reschedule_failed_alarm(&mut self, db: &Mutex<ObjectDb>) -> Option<Reply> {
        let (name, due) = self.firing.take()?;
        let system = self.system.upgrade()?;
        let options = system.options();
        let result = if due.retry >= options.alarm_max_retries {
            tracing::error!(object = %self.key, alarm = name, "alarm failed {} times; dropping it", due.retry + 1);
            lock(db).alarm_delete(&name).map(drop)
        } else {
            let delay = options
                .alarm_retry_base
                .saturating_mul(1 << due.retry.min(20));
            let at = unix_now_ms().saturating_add(delay.as_millis() as i64);
            tracing::warn!(object = %self.key, alarm = name, "alarm failed; retrying in {delay:?}");
            lock(db).alarm_retry(&name, at, due.retry + 1)
        };
        match result {
            Ok(()) => Some(Reply::Done),
            Err(e) => {
                tracing::error!(object = %self.key, alarm = name, "cannot reschedule the alarm: {e}");
                None
            }
        }
    }

    /// A consistent copy of the database file.
    async fn export(&mut self) -> Result<Vec<u8>> {
        if self.db.is_none() && !self.path.exists() {
            bail!("object {} has no data", self.key.id);
        }
        let db = self.db().await?;
        let copy = self.path.with_extension("export.tmp");
        let _ = std::fs::remove_file(&copy);
        lock(&db).export_to(&copy)?;
        let bytes = std::fs::read(&copy).with_context(|| format!("reading {}", copy.display()))?;
        let _ = std::fs::remove_file(&copy);
        Ok(bytes)
    }

    /// Replaces the database with an uploaded SQLite file, checked first.
    async fn import(&mut self, bytes: &[u8]) -> Result<()> {
        if !bytes.starts_with(b"SQLite format 3\0") {
            bail!("not a SQLite database file");
        }
        let incoming = self.path.with_extension("import.tmp");
        if let Some(dir) = incoming.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(&incoming, bytes)
            .with_context(|| format!("writing {}", incoming.display()))?;
        let check: Result<String> = (|| {
            let conn = rusqlite::Connection::open(&incoming)?;
            Ok(conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))?)
        })();
        match check {
            Ok(verdict) if verdict == "ok" => {}
            Ok(verdict) => {
                let _ = std::fs::remove_file(&incoming);
                bail!("the database failed its integrity check: {verdict}");
            }
            Err(e) => {
                let _ = std::fs::remove_file(&incoming);
                return Err(e.context("the file is not a usable SQLite database"));
            }
        }
        self.close();
        remove_database_files(&self.path)?;
        std::fs::rename(&incoming, &self.path)
            .with_context(|| format!("installing {}", self.path.display()))?;
        self.db().await?;
        Ok(())
    }

    /// Removes the object's data, its record, its alarms, and closes its
    /// sockets.
    fn delete(&mut self) -> Result<()> {
        self.close();
        remove_database_files(&self.path)?;
        if let Some(system) = self.system.upgrade() {
            system
                .sockets
                .close_object(&self.key, 1001, "the object was deleted");
            system.alarms.forget(&self.key);
            system
                .activity
                .lock()
                .expect("activity lock")
                .remove(&self.key);
            system
                .control()
                .forget_object(&self.key.namespace, &self.key.id.to_string())?;
        }
        Ok(())
    }

    /// Drops the instance and closes the database.
    fn close(&mut self) {
        self.warm = None;
        self.db = None;
    }

    /// Drops the instance and closes the database in the background:
    /// closing checkpoints the WAL into the database file and syncs it,
    /// which must not hold up this runtime's few threads.
    fn hibernate(&mut self) {
        self.warm = None;
        if let Some(db) = self.db.take() {
            tokio::task::spawn_blocking(move || drop(db));
        }
    }

    /// Leaves the directory if nothing is waiting.
    fn retire(&self, inbox: &mpsc::UnboundedReceiver<Message>) -> bool {
        self.system
            .upgrade()
            .is_none_or(|system| system.retire(&self.key, inbox))
    }

    /// Leaves the directory for good (the object was deleted), handing
    /// anything still queued to a fresh actor.
    fn leave(self, mut inbox: mpsc::UnboundedReceiver<Message>) {
        let Some(system) = self.system.upgrade() else {
            return;
        };
        system
            .actors
            .lock()
            .expect("directory lock")
            .remove(&self.key);
        inbox.close();
        while let Ok(message) = inbox.try_recv() {
            let _ = system.send(&self.key, message);
        }
    }
}

fn lock(db: &Mutex<ObjectDb>) -> std::sync::MutexGuard<'_, ObjectDb> {
    // Only this actor and its instance use the database, one at a time.
    db.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Commits a batch, keeping the alarm index a superset of the object's
/// alarms: new times go in before the commit, the exact set after.
fn commit(db: &Mutex<ObjectDb>, system: &ObjectSystem, key: &ObjectKey) -> Result<()> {
    let mut guard = lock(db);
    if guard.alarms_changed() {
        let alarms = guard.alarm_list()?;
        system
            .control
            .upsert_alarms(&key.namespace, &key.id.to_string(), &alarms)
            .context("recording alarms in the alarm index")?;
    }
    guard.commit_batch()?;
    drop(guard);
    sync_alarm_index(db, system, key);
    Ok(())
}

/// Gives the alarm index and the scheduler the object's alarms, after a
/// batch that changed them committed or rolled back.
fn sync_alarm_index(db: &Mutex<ObjectDb>, system: &ObjectSystem, key: &ObjectKey) {
    let mut guard = lock(db);
    if !guard.take_alarms_changed() {
        return;
    }
    let synced = guard
        .alarm_list()
        .map_err(anyhow::Error::from)
        .and_then(|alarms| {
            system
                .control
                .replace_alarms(&key.namespace, &key.id.to_string(), &alarms)?;
            Ok(alarms)
        });
    match synced {
        Ok(alarms) => system.alarms.replace(key, alarms),
        // The index keeps the superset written before the commit: at
        // worst an alarm event finds nothing to fire.
        Err(e) => tracing::error!(object = %key, "updating the alarm index: {e:#}"),
    }
}

fn fail_all(batch: Vec<Pending>, reason: String) {
    for pending in batch {
        let _ = pending.reply.send(Err(ObjectError::Failed(reason.clone())));
    }
}

/// Removes a database and its WAL and shared-memory files.
fn remove_database_files(path: &std::path::Path) -> Result<()> {
    for suffix in ["", "-wal", "-shm"] {
        let file = PathBuf::from(format!("{}{suffix}", path.display()));
        match std::fs::remove_file(&file) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(e).with_context(|| format!("removing {}", file.display()));
            }
            _ => {}
        }
    }
    Ok(())
}
