//! The actor behind one Durable Object: a task that owns the object's
//! database and, while active, its warm instance, and takes its messages
//! one at a time until it has been idle long enough to retire.
//!
//! Events go to `batch.rs` in batches (the gates); this file says what
//! running one event means: find the active version, start or reuse the
//! warm instance, fire an alarm. Administrative messages (export, import,
//! delete, evict) are ordered with the events, so they never see an
//! event's half-done work.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use anyhow::Context;

use super::alarms::{self, Firing};
use super::batch::{self, Events};
use super::error::ObjectError;
use super::hibernation::Outgoing;
use super::id::ObjectKey;
use super::instance::{ObjectScope, Warm};
use super::mailbox::{Backlog, CallPath, Chain, Event, Inbox, Message, Pending, Reply, take_batch};
use super::namespaces::Namespace;
use super::storage::{EventBudget, ObjectDb, SqlError, SqlErrorKind, lock};
use super::{ObjectSystem, admin};
use crate::cluster::{Replica, ShipError};
use crate::config::Limits;
use crate::runtime::LoadedWorker;

pub(super) struct Actor {
    system: Weak<ObjectSystem>,
    pub(super) key: ObjectKey,
    namespace: Namespace,
    pub(super) path: PathBuf,
    pub(super) db: Option<Arc<Mutex<ObjectDb>>>,
    warm: Option<Warm>,
    /// The object's name, once it has been reached by name.
    name: Option<String>,
    /// The alarm the current event is firing, to reschedule if it fails.
    firing: Option<Firing>,
    /// In a cluster: the database as a replica of the object's history.
    pub(super) replica: Option<Replica>,
    /// In a cluster, set when a batch's changes could not be made durable
    /// there: the local file is no longer what the cluster holds.
    diverged: bool,
}

/// Runs the object until it is idle long enough to retire, or deleted.
pub(super) async fn run(
    system: Weak<ObjectSystem>,
    key: ObjectKey,
    namespace: Namespace,
    path: PathBuf,
    mut inbox: Inbox,
    backlog: Arc<Backlog>,
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
        replica: None,
        diverged: false,
    };
    let mut held: Option<Message> = None;
    loop {
        let Some(system) = actor.system.upgrade() else {
            break;
        };
        let (idle, max_batch) = (system.options.idle_timeout, system.options.max_batch);
        drop(system);
        let message = match held.take() {
            Some(message) => message,
            None => match tokio::time::timeout(idle, inbox.recv()).await {
                Ok(Some(message)) => message,
                Ok(None) => break,
                Err(_idle) => {
                    if actor.retire(&inbox) {
                        actor.count_eviction();
                        break;
                    }
                    continue;
                }
            },
        };
        match message {
            Message::Event(first) => {
                let (batch, next) = take_batch(first, &mut inbox, &backlog, max_batch);
                held = next;
                if batch.is_empty() {
                    continue;
                }
                match actor.db().await {
                    Ok(db) => {
                        batch::run(&db, batch, &mut actor).await;
                        if actor.diverged {
                            actor.discard();
                        }
                    }
                    Err(ObjectError::Moved) => {
                        if let Some(system) = actor.system.upgrade() {
                            system.reroute(&actor.key, batch);
                        }
                    }
                    Err(e) => {
                        let error = e.context("cannot open the object's database");
                        for pending in batch {
                            pending.answer(Err(error.clone()));
                        }
                    }
                }
            }
            Message::Export(reply) => {
                let _ = reply.send(admin::export(&mut actor).await);
            }
            Message::Import(bytes, reply) => {
                let _ = reply.send(admin::import(&mut actor, &bytes).await);
            }
            Message::Evict(done) => {
                actor.hibernate();
                let retired = actor.retire(&inbox);
                let _ = done.send(());
                if retired {
                    actor.count_eviction();
                    break;
                }
            }
            Message::Delete(reply) => {
                let result = admin::delete(&mut actor).await;
                let _ = reply.send(result);
                actor.leave(inbox);
                return;
            }
        }
    }
    actor.hibernate();
}

impl Actor {
    pub(super) fn system(&self) -> Result<Arc<ObjectSystem>, ObjectError> {
        self.system.upgrade().ok_or(ObjectError::ShuttingDown)
    }

    /// The active version of the object's worker.
    fn active_worker(&self, system: &ObjectSystem) -> Result<Arc<LoadedWorker>, ObjectError> {
        system.code.active(&self.namespace.worker).ok_or_else(|| {
            ObjectError::NotDeployed(format!(
                "worker `{}` is not deployed",
                self.namespace.worker
            ))
        })
    }

    /// The database, opened on first use (off the runtime's workers:
    /// creating a file and setting up its journal syncs the disk).
    pub(super) async fn db(&mut self) -> Result<Arc<Mutex<ObjectDb>>, ObjectError> {
        if let Some(db) = &self.db {
            return Ok(db.clone());
        }
        let system = self.system()?;
        system.closing.wait(&self.key).await;
        let limit = self
            .active_worker(&system)
            .map_or(Limits::default(), |w| w.context.config.limits)
            .object_storage_bytes();
        let path = self.path.clone();
        let replica = match &system.cluster {
            // Boxed, as the cluster's other steps below: an actor's task
            // on a single host stays small.
            Some(cluster) => Some(
                Box::pin(Replica::open(cluster, &self.key, &path))
                    .await
                    .map_err(|e| ObjectError::storage(format!("{e:#}")))?
                    .ok_or(ObjectError::Moved)?,
            ),
            None => None,
        };
        let is_replica = replica.is_some();
        let (db, name) = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
            let mut db = if is_replica {
                ObjectDb::open_replica(&path, limit)?
            } else {
                ObjectDb::open(&path, limit)?
            };
            let name = db.meta("name")?;
            Ok((db, name))
        })
        .await
        .context("the task opening the database failed")
        .and_then(|opened| opened)
        .map_err(|e| ObjectError::storage(format!("{e:#}")))?;
        self.name = name;
        let db = Arc::new(Mutex::new(db));
        if replica.is_some() {
            // Taken over from another host: its alarms are this host's to
            // fire now.
            alarms::reindex(&db, &system.control, &system.alarms, &self.key);
        }
        self.replica = replica;
        self.db = Some(db.clone());
        Ok(db)
    }

    /// Runs one event on the warm instance, starting one if there is none
    /// or a new version was deployed since.
    async fn deliver(
        &mut self,
        db: &Arc<Mutex<ObjectDb>>,
        event: Event,
        path: CallPath,
    ) -> Result<Reply, ObjectError> {
        // Taken first, so that whatever fails from here on (no deployed
        // version, a constructor that traps) counts as a failed attempt.
        let alarm = match &event {
            Event::Alarm { name } => match alarms::take(db, name)? {
                Some((info, firing)) => {
                    self.system()?.telemetry().metrics.alarm_fired();
                    self.firing = Some(firing);
                    Some(info)
                }
                None => return Ok(Reply::Done),
            },
            _ => None,
        };
        let system = self.system()?;
        let worker = self.active_worker(&system)?;
        // Before the constructor too: it runs SQL of its own.
        let limits = worker.context.config.limits;
        lock(db).set_budget(EventBudget::new(
            Duration::from_millis(limits.sql_ms),
            Instant::now().checked_add(Duration::from_millis(limits.wall_ms)),
        ));
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
            let warm = Warm::start(
                &system.instances,
                worker,
                scope,
                &self.namespace.class,
                self.name.as_deref(),
            )
            .await?;
            self.warm = Some(warm);
        }
        let warm = self.warm.as_mut().expect("started above");
        let result = warm.run(event, alarm.as_ref(), path).await;
        if let Err(error @ ObjectError::GuestTrap(_)) = &result {
            // A trap or a breached limit leaves the instance unusable.
            tracing::error!(object = %self.key, "event failed: {error}");
            self.warm = None;
        }
        result
    }

    /// Drops the instance and closes the database now.
    pub(super) fn close(&mut self) {
        self.warm = None;
        self.db = None;
        self.replica = None;
    }

    /// Gives up the local copy of an object whose latest changes the
    /// cluster did not confirm: the next event claims the object again
    /// and rebuilds it from the cluster's history.
    fn discard(&mut self) {
        self.diverged = false;
        self.warm = None;
        self.db = None;
        if let Some(replica) = self.replica.take() {
            replica.abandon();
        }
        if let Err(e) = super::storage::remove_database_files(&self.path) {
            tracing::error!(object = %self.key, "removing a diverged replica: {e:#}");
        }
    }

    /// Drops the instance and closes the database in the background:
    /// closing checkpoints the WAL into the database file and syncs it,
    /// which must not hold up this runtime's few threads.
    fn hibernate(&mut self) {
        self.warm = None;
        if let Some(replica) = self.replica.take() {
            replica.keep_file();
        }
        let (Some(db), Some(system)) = (self.db.take(), self.system.upgrade()) else {
            return;
        };
        #[cfg(feature = "test-hooks")]
        let delay = system.faults.close_delay();
        #[cfg(not(feature = "test-hooks"))]
        let delay = Duration::ZERO;
        system
            .closing
            .close_in_background(self.key.clone(), db, delay);
    }

    fn count_eviction(&self) {
        if let Some(system) = self.system.upgrade() {
            system.telemetry().metrics.object_evicted();
        }
    }

    /// Leaves the directory if nothing is waiting.
    fn retire(&self, inbox: &Inbox) -> bool {
        self.system.upgrade().is_none_or(|system| {
            system.directory.retire(&self.key, inbox, || {
                system.sockets.forget_if_idle(&self.key);
            })
        })
    }

    /// Leaves the directory for good (the object was deleted), handing
    /// anything still queued to a fresh actor.
    fn leave(self, mut inbox: Inbox) {
        let Some(system) = self.system.upgrade() else {
            return;
        };
        system.directory.remove(&self.key);
        inbox.close();
        while let Ok(message) = inbox.try_recv() {
            let _ = system.send(&self.key, message);
        }
    }
}

/// Makes a committed batch durable in the cluster, and compacts the
/// object's history now and then.
async fn replicate(replica: &mut Replica, db: &Arc<Mutex<ObjectDb>>) -> Result<(), ShipError> {
    replica.ship().await?;
    if replica.wants_snapshot() {
        let db = db.clone();
        let file = tokio::task::spawn_blocking(move || lock(&db).checkpointed_file())
            .await
            .map_err(|e| ShipError::Unconfirmed(format!("the snapshot task failed: {e}")))?
            .map_err(|e| ShipError::Unconfirmed(format!("reading the database: {e:#}")))?;
        replica.wal_reset();
        replica.snapshot(file).await?;
    }
    Ok(())
}

impl Events for Actor {
    /// Stores the object's name the first time it is reached by name.
    fn prepare(&mut self, db: &Mutex<ObjectDb>, pending: &Pending) -> Result<(), ObjectError> {
        if let Some(name) = pending.name.as_deref()
            && self.name.as_deref() != Some(name)
        {
            lock(db)
                .set_meta("name", name)
                .map_err(ObjectError::storage)?;
            self.name = Some(name.to_owned());
        }
        Ok(())
    }

    async fn run(
        &mut self,
        db: &Arc<Mutex<ObjectDb>>,
        event: Event,
        path: CallPath,
    ) -> (Result<Reply, ObjectError>, Vec<Outgoing>) {
        let result = self.deliver(db, event, path).await;
        if result.is_ok() {
            self.firing = None;
        }
        let sent = self
            .warm
            .as_mut()
            .map(Warm::take_outbox)
            .unwrap_or_default();
        (result, sent)
    }

    fn recover(&mut self, db: &Mutex<ObjectDb>, error: ObjectError) -> Result<Reply, ObjectError> {
        let (Some(firing), Some(system)) = (self.firing.take(), self.system.upgrade()) else {
            return Err(error);
        };
        if alarms::reschedule_failed(db, &self.key, firing, system.options.alarm_retries()) {
            system.telemetry().metrics.alarm_retried();
            Ok(Reply::Done)
        } else {
            Err(error)
        }
    }

    async fn commit(
        &mut self,
        db: &Arc<Mutex<ObjectDb>>,
        events: usize,
    ) -> Result<(), ObjectError> {
        let system = self.system()?;
        let started = Instant::now();
        #[cfg(feature = "test-hooks")]
        if system.faults.take_commit_failure() {
            return Err(ObjectError::Internal("injected commit failure".into()));
        }
        // The commit waits for fsync, and other objects commit in parallel
        // meanwhile (each has its own file): the wait belongs on the
        // blocking pool, not on one of the runtime's workers.
        // In a cluster, the cluster's alarm index gets the batch's alarms
        // first, as the local one does (see `cluster/alarms.rs`).
        let cluster_alarms = match (&system.cluster, &self.replica) {
            (Some(cluster), Some(_)) => {
                let changed = {
                    let mut guard = lock(db);
                    match guard.alarms_changed() {
                        true => Some(guard.alarm_list().map_err(ObjectError::storage)?),
                        false => None,
                    }
                };
                if let Some(alarms) = &changed {
                    Box::pin(cluster.index_alarms(&self.key, alarms, false))
                        .await
                        .map_err(|e| ObjectError::Internal(format!("{e:#}")))?;
                }
                changed.map(|alarms| (cluster.clone(), alarms))
            }
            _ => None,
        };
        let (committing_db, key) = (db.clone(), self.key.clone());
        let committing = system.clone();
        let committed = tokio::task::spawn_blocking(move || {
            alarms::commit_with_index(
                &committing_db,
                &committing.control,
                &committing.alarms,
                &key,
            )
        })
        .await;
        let committed = committed
            .map_err(|e| ObjectError::Internal(format!("the commit task failed: {e}")))?
            .map_err(|e| match e.downcast_ref::<SqlError>() {
                Some(full) if full.kind == SqlErrorKind::Full => {
                    ObjectError::StorageFull(full.to_string())
                }
                _ => ObjectError::Internal(format!("{e:#}")),
            });
        if committed.is_ok()
            && let Some(replica) = &mut self.replica
            && let Err(e) = Box::pin(replicate(replica, db)).await
        {
            // Committed here, but not in the cluster: nothing may be
            // acknowledged, and this copy is no longer the object.
            self.diverged = true;
            system.telemetry().metrics.commit(events, started.elapsed());
            return Err(match e {
                ShipError::Deposed => ObjectError::Internal(e.to_string()),
                ShipError::Unconfirmed(_) => ObjectError::Overloaded(format!(
                    "{e}; whether the writes were saved is unknown (retry once it is back)"
                )),
            });
        }
        system.telemetry().metrics.commit(events, started.elapsed());
        if committed.is_ok()
            && let Some((cluster, alarms)) = cluster_alarms
            && let Err(e) = Box::pin(cluster.index_alarms(&self.key, &alarms, true)).await
        {
            // The index keeps the superset written before the commit.
            tracing::warn!(object = %self.key, "updating the cluster's alarm index: {e:#}");
        }
        committed
    }

    fn settle(&mut self, db: &Mutex<ObjectDb>, committed: Result<Vec<Outgoing>, &ObjectError>) {
        if let Err(error) = &committed {
            // The instance may hold state from writes that are gone.
            self.warm = None;
            tracing::error!(object = %self.key, "commit failed: {error}");
        }
        let Some(system) = self.system.upgrade() else {
            return;
        };
        // Before any reply leaves: a client that lists objects after its
        // answer finds this one active, with its name.
        system.activity.record(&self.key, self.name.as_deref());
        match committed {
            Ok(outbox) => system.sockets.deliver(&self.key, outbox),
            Err(_) => alarms::sync_index(db, &system.control, &system.alarms, &self.key),
        }
    }
}
