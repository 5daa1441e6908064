//! In a cluster, where an object's event runs: on this host when it owns
//! the object (or can take it), else on its owner, forwarded.
//!
//! While an owner that died still holds its lease, nobody may take its
//! objects: calls keep looking (every `RELOCATE_PAUSE`) until the lease
//! runs out and one of them takes the object, or their time is up.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::ObjectSystem;
use super::admin::AdminOp;
use super::error::ObjectError;
use super::id::ObjectKey;
use super::mailbox::{CallPath, Event, Pending, Reply, await_reply};
use crate::cluster::{Cluster, Delivery, Forwarded, Incoming, Owner, RELOCATE_PAUSE};

/// How long an event handed back by an actor that lost its object may
/// take to find the new owner and run there.
const REROUTE_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs `event` on `key`'s owner, wherever that is.
pub(super) async fn call(
    system: &ObjectSystem,
    cluster: &Arc<Cluster>,
    key: ObjectKey,
    name: Option<String>,
    event: Event,
    path: CallPath,
    timeout: Duration,
) -> Result<Reply, ObjectError> {
    let deadline = Instant::now() + timeout;
    let upgrade = Forwarded::upgrade_token(&event);
    // The event as it was sent to a peer, once it was: sent again as it
    // is, or decoded to run here when this host takes the object.
    let mut event = Some(event);
    let mut forwarded: Option<Forwarded> = None;
    loop {
        let owner = cluster.locate(&key).await.map_err(unplaced)?;
        let left = deadline.saturating_duration_since(Instant::now());
        match owner {
            Owner::Me(_) => {
                let event = match (event.take(), forwarded.take()) {
                    (Some(event), _) => event,
                    (None, Some(call)) => call.into_event()?,
                    (None, None) => unreachable!("the event is kept in one form or the other"),
                };
                return await_reply(system.enqueue(&key, name, event, path), left).await;
            }
            Owner::Peer { host, address } => {
                if forwarded.is_none() {
                    let event = event.take().expect("not forwarded yet");
                    forwarded = Some(Forwarded::new(name.clone(), event, &path, timeout)?);
                }
                let call = forwarded.as_ref().expect("just set");
                let delivery = match upgrade {
                    Some(token) => {
                        cluster
                            .forward_upgrade(&address, &key, call, token, left)
                            .await
                    }
                    None => cluster.forward(&host, &address, &key, call, left).await,
                };
                match delivery {
                    Delivery::Answered(result) => return result,
                    Delivery::NotThere(why) => {
                        cluster.forget_owner(&key);
                        if Instant::now() + RELOCATE_PAUSE >= deadline {
                            return Err(ObjectError::Overloaded(format!(
                                "the object's owner could not be reached in time ({why}); retry"
                            )));
                        }
                        tokio::time::sleep(RELOCATE_PAUSE).await;
                    }
                }
            }
        }
    }
}

impl ObjectSystem {
    /// Sends events an actor was given for an object this host turned out
    /// not to own to wherever the object is now.
    pub(super) fn reroute(&self, key: &ObjectKey, batch: Vec<Pending>) {
        let (Some(cluster), Some(system)) = (self.cluster.clone(), self.me.upgrade()) else {
            for pending in batch {
                pending.answer(Err(ObjectError::ShuttingDown));
            }
            return;
        };
        for pending in batch {
            if !matches!(pending.event, Event::Fetch(_) | Event::Rpc { .. }) {
                // Alarms and socket events start on the owner, which has
                // them too.
                pending.answer(Err(ObjectError::Moved));
                continue;
            }
            let (system, cluster, key) = (system.clone(), cluster.clone(), key.clone());
            self.spawn(async move {
                let Pending {
                    event,
                    name,
                    path,
                    reply,
                } = pending;
                let result = call(&system, &cluster, key, name, event, path, REROUTE_TIMEOUT).await;
                let _ = reply.send(result);
            });
        }
    }
}

/// Runs an administrative operation on `key`'s owner, wherever that is.
/// Like a call, it goes to another host only once that host is known to
/// own the object, and again elsewhere only when it did not run there.
pub(super) async fn administer(
    system: &ObjectSystem,
    cluster: &Arc<Cluster>,
    key: &ObjectKey,
    op: AdminOp,
) -> Result<Reply, ObjectError> {
    let deadline = Instant::now() + REROUTE_TIMEOUT;
    loop {
        let owner = cluster.locate(key).await.map_err(unplaced)?;
        match owner {
            Owner::Me(_) => return system.administer_here(key, op).await,
            Owner::Peer { host, address } => {
                let left = deadline.saturating_duration_since(Instant::now());
                match cluster.forward_admin(&host, &address, key, &op, left).await {
                    Delivery::Answered(result) => return result,
                    Delivery::NotThere(why) => {
                        cluster.forget_owner(key);
                        if Instant::now() + RELOCATE_PAUSE >= deadline {
                            return Err(ObjectError::Overloaded(format!(
                                "the object's owner could not be reached in time ({why}); retry"
                            )));
                        }
                        tokio::time::sleep(RELOCATE_PAUSE).await;
                    }
                }
            }
        }
    }
}

impl ObjectSystem {
    /// Runs an event another host of the cluster forwarded, if this host
    /// owns its object (or can take it); `None` when another host does.
    pub(crate) async fn call_forwarded(
        &self,
        call: Incoming,
    ) -> Option<Result<Reply, ObjectError>> {
        if let Err(refused) = self.owned_here(&call.key).await? {
            return Some(Err(refused));
        }
        let answer = self.enqueue(&call.key, call.name, call.event, call.path);
        Some(await_reply(answer, call.timeout).await)
    }

    /// Runs an administrative operation another host forwarded, if this
    /// host owns the object (or can take it); `None` when another does.
    pub(crate) async fn administer_forwarded(
        &self,
        key: &ObjectKey,
        op: AdminOp,
    ) -> Option<Result<Reply, ObjectError>> {
        if let Err(refused) = self.owned_here(key).await? {
            return Some(Err(refused));
        }
        Some(self.administer_here(key, op).await)
    }

    /// For work another host sent here: `Some(Ok)` when this host owns
    /// `key` (taking it if nobody alive does), `None` when another host
    /// does, `Some(Err)` when that cannot be known.
    async fn owned_here(&self, key: &ObjectKey) -> Option<Result<(), ObjectError>> {
        let cluster = self.cluster.as_ref()?;
        // Before any claim: a peer's call for a namespace this host does
        // not know (yet, or at all) must not create an object row.
        if self.namespaces.by_id(&key.namespace).is_none() {
            return Some(Err(ObjectError::NotDeployed(format!(
                "namespace {} does not exist on this host",
                key.namespace
            ))));
        }
        match cluster.locate(key).await {
            Ok(Owner::Me(_)) => Some(Ok(())),
            Ok(Owner::Peer { .. }) => None,
            Err(e) => Some(Err(unplaced(e))),
        }
    }
}

/// Why an object could not be placed: Postgres did not answer, or this
/// host's lease lapsed. Retrying later may work.
fn unplaced(error: anyhow::Error) -> ObjectError {
    ObjectError::Overloaded(format!("cannot place the object: {error:#}"))
}
