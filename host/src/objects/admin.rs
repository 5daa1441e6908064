//! Operations on objects from outside: list a namespace's objects, export,
//! import and delete one, evict, and remove a deleted namespace. Those on
//! one object run through its actor, ordered with its events.

use std::collections::{HashMap, HashSet};

use anyhow::Context;
use rusqlite::OptionalExtension;
use tokio::sync::oneshot;

use super::ObjectSystem;
use super::actor::Actor;
use super::alarms;
use super::error::ObjectError;
use super::id::{ObjectId, ObjectKey};
use super::mailbox::{Message, Reply};
use super::namespaces::Namespace;
use super::storage::{lock, remove_database_files};
use crate::clock::unix_now_ms;
use crate::cluster::Replica;
use crate::files::{rename_synced, write_synced};
use crate::storage::ObjectRecord;

/// An operation on one object from outside, as it travels to the host
/// that owns the object in a cluster.
pub(crate) enum AdminOp {
    Export,
    Import(Vec<u8>),
    Delete,
}

impl AdminOp {
    /// Its name in the cluster listener's path.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Self::Export => "export",
            Self::Import(_) => "import",
            Self::Delete => "delete",
        }
    }

    /// The operation a peer named, with the request body it sent.
    pub(crate) fn from_name(name: &str, body: Vec<u8>) -> Option<Self> {
        match name {
            "export" => Some(Self::Export),
            "import" => Some(Self::Import(body)),
            "delete" => Some(Self::Delete),
            _ => None,
        }
    }
}

fn unexpected(reply: &Reply) -> ObjectError {
    ObjectError::Internal(format!("an unexpected answer to an export: {reply:?}"))
}

/// One object, as `verge objects list` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct ObjectSummary {
    id: String,
    /// Known when the object was reached by name.
    name: Option<String>,
    size_bytes: u64,
    /// Unix seconds; 0 when the host has not seen it active.
    last_active: i64,
}

/// The object system's counters, for `GET /v1/status`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ObjectStats {
    /// Objects with an actor in memory.
    pub active: usize,
    /// Object instances started since the host started (each wake-up of an
    /// evicted object is one).
    pub instances_started: u64,
    /// WebSockets open, every object together.
    pub websockets_open: usize,
    /// Of those, the ones whose object is not in memory: the host holds
    /// them and wakes the object when a message arrives.
    pub websockets_hibernated: usize,
    pub alarms_scheduled: usize,
    /// Alarms whose time has come: firing now, or waiting for a retry.
    pub alarms_due: usize,
}

impl ObjectSystem {
    /// Counters of what objects hold right now.
    pub fn stats(&self) -> ObjectStats {
        // The hub and the directory are read one after the other, never
        // one inside the other: an actor retiring holds the directory's
        // lock while it takes the hub's.
        let sockets = self.sockets.open_by_object();
        let in_memory: HashSet<ObjectKey> =
            self.directory.keys_where(|_| true).into_iter().collect();
        let (alarms_scheduled, alarms_due) = self.alarms.counts(unix_now_ms());
        ObjectStats {
            active: self.active_count(),
            instances_started: self.instances_started(),
            websockets_open: sockets.iter().map(|(_, open)| open).sum(),
            websockets_hibernated: sockets
                .iter()
                .filter(|(key, _)| !in_memory.contains(key))
                .map(|(_, open)| open)
                .sum(),
            alarms_scheduled,
            alarms_due,
        }
    }

    /// A consistent copy of an object's database, as SQLite file bytes.
    pub async fn export(&self, key: &ObjectKey) -> Result<Vec<u8>, ObjectError> {
        match self.run_admin(key, AdminOp::Export).await? {
            Reply::Rpc(bytes) => Ok(bytes),
            other => Err(unexpected(&other)),
        }
    }

    /// Replaces an object's database with SQLite file bytes, after checking
    /// them; the object's next event sees the new data.
    pub async fn import(&self, key: &ObjectKey, bytes: Vec<u8>) -> Result<(), ObjectError> {
        self.run_admin(key, AdminOp::Import(bytes)).await.map(drop)
    }

    /// Removes an object and all its data.
    pub async fn delete(&self, key: &ObjectKey) -> Result<(), ObjectError> {
        self.run_admin(key, AdminOp::Delete).await.map(drop)
    }

    /// Runs `op` on the object, on whichever host of a cluster owns it.
    async fn run_admin(&self, key: &ObjectKey, op: AdminOp) -> Result<Reply, ObjectError> {
        match &self.cluster {
            Some(cluster) => super::routing::administer(self, cluster, key, op).await,
            None => self.administer_here(key, op).await,
        }
    }

    /// Runs `op` through the object's actor on this host.
    pub(super) async fn administer_here(
        &self,
        key: &ObjectKey,
        op: AdminOp,
    ) -> Result<Reply, ObjectError> {
        match op {
            AdminOp::Export => self.administer(key, Message::Export).await.map(Reply::Rpc),
            AdminOp::Import(bytes) => self
                .administer(key, |reply| Message::Import(bytes, reply))
                .await
                .map(|()| Reply::Done),
            AdminOp::Delete => self
                .administer(key, Message::Delete)
                .await
                .map(|()| Reply::Done),
        }
    }

    /// Sends an administrative message to the object's actor and waits for
    /// its answer.
    async fn administer<T>(
        &self,
        key: &ObjectKey,
        message: impl FnOnce(oneshot::Sender<Result<T, ObjectError>>) -> Message,
    ) -> Result<T, ObjectError> {
        let (reply, answer) = oneshot::channel();
        self.send(key, message(reply))?;
        answer
            .await
            .map_err(|_| ObjectError::Internal("the object stopped before answering".into()))?
    }

    /// Every object of a namespace that has data, most recently active
    /// first.
    pub(crate) async fn list(&self, namespace: &Namespace) -> anyhow::Result<Vec<ObjectSummary>> {
        if let Some(cluster) = &self.cluster {
            self.share_activity().await?;
            return self.list_in_cluster(cluster, namespace).await;
        }
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

    /// A cluster's objects of `namespace`: every object with a history,
    /// whichever host holds it. Sizes are known for the objects this host
    /// holds; the others show 0.
    async fn list_in_cluster(
        &self,
        cluster: &crate::cluster::Cluster,
        namespace: &Namespace,
    ) -> anyhow::Result<Vec<ObjectSummary>> {
        let dir = self.root.join(&*namespace.id);
        let records = cluster.objects(&namespace.id).await?;
        Ok(records
            .into_iter()
            .map(|record| {
                let path = dir.join(format!("{}.sqlite", record.id));
                let size_bytes = ["", "-wal"]
                    .iter()
                    .filter_map(|suffix| {
                        std::fs::metadata(format!("{}{suffix}", path.display())).ok()
                    })
                    .map(|m| m.len())
                    .sum();
                ObjectSummary {
                    id: record.id,
                    name: record.name,
                    size_bytes,
                    last_active: record.last_active,
                }
            })
            .collect())
    }

    /// Evicts every active object (a test and operations knob): instances
    /// dropped, databases closed. Hibernated state survives.
    pub async fn evict_all(&self) {
        self.evict_where(|_| true).await;
    }

    /// Evicts the active objects `which` picks, waiting for each to close.
    async fn evict_where(&self, which: impl Fn(&ObjectKey) -> bool) {
        for key in self.directory.keys_where(which) {
            let (done, wait) = oneshot::channel();
            if self.directory.send_existing(&key, Message::Evict(done)) {
                let _ = wait.await;
            }
        }
    }

    /// Stops every actor of a deleted namespace and removes its files.
    pub(crate) async fn delete_namespace(&self, namespace: &str) -> anyhow::Result<()> {
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

/// A consistent copy of the actor's database file.
pub(super) async fn export(actor: &mut Actor) -> Result<Vec<u8>, ObjectError> {
    if !has_data(actor).await? {
        return Err(ObjectError::NoData(format!(
            "object {} has no data",
            actor.key.id
        )));
    }
    let db = actor.db().await?;
    let copy = actor.path.with_extension("export.tmp");
    let _ = std::fs::remove_file(&copy);
    lock(&db).export_to(&copy).map_err(ObjectError::storage)?;
    let bytes = std::fs::read(&copy)
        .with_context(|| format!("reading {}", copy.display()))
        .map_err(|e| ObjectError::storage(format!("{e:#}")));
    let _ = std::fs::remove_file(&copy);
    bytes
}

/// Replaces the actor's database with an uploaded SQLite file, checked
/// first.
pub(super) async fn import(actor: &mut Actor, bytes: &[u8]) -> Result<(), ObjectError> {
    let invalid = |why: String| ObjectError::InvalidImport(why);
    let io = |e: anyhow::Error| ObjectError::storage(format!("{e:#}"));
    if !bytes.starts_with(b"SQLite format 3\0") {
        return Err(invalid("not a SQLite database file".into()));
    }
    let incoming = actor.path.with_extension("import.tmp");
    if let Some(dir) = incoming.parent() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating {}", dir.display()))
            .map_err(io)?;
    }
    let system = actor.system()?;
    if system.cluster.is_some() {
        // Claims the object: the import becomes its history's next state.
        actor.db().await?;
    }
    system.closing.wait(&actor.key).await;
    write_synced(&incoming, bytes).map_err(io)?;
    if let Err(why) = check_import(&incoming) {
        let _ = std::fs::remove_file(&incoming);
        return Err(invalid(why));
    }
    if let Some(replica) = &mut actor.replica
        && let Err(e) = replica.replace(bytes).await
    {
        let _ = std::fs::remove_file(&incoming);
        return Err(ObjectError::Internal(e.to_string()));
    }
    actor.close();
    remove_database_files(&actor.path).map_err(io)?;
    rename_synced(&incoming, &actor.path).map_err(io)?;
    let db = actor.db().await?;
    // The new database's alarms, in the index and on the schedule.
    alarms::reindex(&db, &system.control, &system.alarms, &actor.key);
    Ok(())
}

/// Why an uploaded database may not become an object's, if it may not.
fn check_import(path: &std::path::Path) -> Result<(), String> {
    let unusable = |e: rusqlite::Error| format!("the file is not a usable SQLite database: {e}");
    let conn = rusqlite::Connection::open(path).map_err(unusable)?;
    let verdict: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .map_err(unusable)?;
    if verdict != "ok" {
        return Err(format!(
            "the database failed its integrity check: {verdict}"
        ));
    }
    // Verge's own tables must be plain tables: a view or a trigger there
    // would run inside the host's own statements.
    let intruder: Option<String> = conn
        .query_row(
            "SELECT type || ' ' || name FROM sqlite_master
             WHERE (substr(name, 1, 7) = '_verge_' AND type NOT IN ('table', 'index'))
                OR (type = 'trigger' AND substr(tbl_name, 1, 7) = '_verge_')",
            [],
            |r| r.get(0),
        )
        .optional()
        .map_err(unusable)?;
    match intruder {
        Some(what) => Err(format!(
            "the database defines {what} on Verge's internal tables"
        )),
        None => Ok(()),
    }
}

/// Whether the object has a database, open or on disk (in a cluster: a
/// history, which opening its database finds).
async fn has_data(actor: &mut Actor) -> Result<bool, ObjectError> {
    if actor.system()?.cluster.is_some() {
        actor.db().await?;
        return Ok(actor.replica.as_ref().is_some_and(Replica::has_history));
    }
    Ok(actor.db.is_some() || actor.path.exists())
}

/// Removes the object's data, its record and its alarms, and closes its
/// sockets. An object with none of these does not exist: saying so tells
/// whoever mistyped its name or id, where a silent success would not.
pub(super) async fn delete(actor: &mut Actor) -> Result<(), ObjectError> {
    let io = |e: anyhow::Error| ObjectError::storage(format!("{e:#}"));
    let system = actor.system()?;
    if !has_data(actor).await? && system.sockets.sockets(&actor.key, None).is_empty() {
        return Err(ObjectError::NoData(format!(
            "object {} does not exist",
            actor.key.id
        )));
    }
    let replica = actor.replica.take();
    actor.close();
    system.closing.wait(&actor.key).await;
    remove_database_files(&actor.path).map_err(io)?;
    if let Some(replica) = replica {
        replica
            .erase()
            .await
            .map_err(|e| ObjectError::Internal(e.to_string()))?;
    }
    system
        .sockets
        .close_object(&actor.key, 1001, "the object was deleted");
    system.alarms.forget(&actor.key);
    system.activity.forget(&actor.key);
    system
        .control
        .forget_object(&actor.key.namespace, &actor.key.id.to_string())
        .map_err(io)?;
    Ok(())
}
