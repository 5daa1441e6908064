//! Who owns each object: at most one host, recorded in `objects` with a
//! fencing epoch.
//!
//! A host takes an object by compare-and-swap on its row: when nobody
//! owns it, or its owner's lease has passed, the row gets this host and
//! the epoch goes up by one. Every later commit of the object checks that
//! epoch under a row lock (`history.rs`), so a host that was replaced
//! cannot commit, whatever it believes.
//!
//! Each host keeps what it learned: the objects it holds (its claims) and
//! the owners of others (a cache). A cached owner may be stale; the peer
//! then says it does not own the object, and the caller looks again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::{Context, Result};
use sqlx::Row;

use super::Cluster;
use crate::objects::ObjectKey;
use crate::storage::ObjectRecord;

/// How long a caller waits between looking for an object's owner again,
/// while a dead owner's lease runs out.
pub(crate) const RELOCATE_PAUSE: std::time::Duration = std::time::Duration::from_millis(100);

/// Where an object's events run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Owner {
    /// Here, under this epoch, with the history up to `head_seq`.
    Me(Claim),
    /// On the peer with this id, at this address.
    Peer { host: String, address: String },
}

/// This host's hold on an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Claim {
    pub(crate) epoch: i64,
    /// The newest change in the object's history, as this host made it.
    pub(crate) head_seq: i64,
    /// What the local file held when the object was last closed cleanly:
    /// (its change, the newest snapshot's change). A file at the head is
    /// opened as it is, without a rebuild.
    pub(crate) file: Option<(i64, i64)>,
}

/// What this host knows of owners.
#[derive(Default)]
pub(super) struct Ownership {
    known: Mutex<HashMap<ObjectKey, Owner>>,
    /// Claims in flight, one per object: two requests reaching a new
    /// object at once must not each claim it, or the second claim's epoch
    /// would depose the first's holder on this very host.
    claiming: Mutex<HashMap<ObjectKey, Arc<tokio::sync::Mutex<()>>>>,
}

impl Ownership {
    fn known(&self) -> MutexGuard<'_, HashMap<ObjectKey, Owner>> {
        // Plain map operations: nothing can panic halfway through one.
        self.known.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Cluster {
    /// Where `key`'s events run: this host's claim, a known owner, or,
    /// when neither is known, whatever a claim attempt finds.
    pub(crate) async fn locate(&self, key: &ObjectKey) -> Result<Owner> {
        if let Some(owner) = self.owners.known().get(key).cloned() {
            return Ok(owner);
        }
        let turn = {
            let mut claiming = self
                .owners
                .claiming
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            claiming.entry(key.clone()).or_default().clone()
        };
        let _turn = turn.lock().await;
        // Whoever held the turn before may have found the owner.
        if let Some(owner) = self.owners.known().get(key).cloned() {
            return Ok(owner);
        }
        let claimed = self.claim(key).await;
        if let Ok(owner) = &claimed {
            self.owners.known().insert(key.clone(), owner.clone());
        }
        self.owners
            .claiming
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
        claimed
    }

    /// Forgets what this host knew about `key`'s owner: it was wrong, or
    /// this host lost the object.
    pub(crate) fn forget_owner(&self, key: &ObjectKey) {
        self.owners.known().remove(key);
    }

    /// Forgets every claim of this host: its lease lapsed, so others may
    /// hold its objects now.
    pub(crate) fn forget_claims(&self) {
        self.owners
            .known()
            .retain(|_, owner| !matches!(owner, Owner::Me(_)));
    }

    /// Records that `key`'s history now goes up to `head_seq` under this
    /// host's claim.
    pub(crate) fn advance_claim(&self, key: &ObjectKey, head_seq: i64) {
        if let Some(Owner::Me(claim)) = self.owners.known().get_mut(key) {
            claim.head_seq = head_seq;
        }
    }

    /// Records that the local file of `key`, closed, holds change `seq`
    /// (and the newest snapshot is at `snapshot_seq`).
    pub(crate) fn keep_file(&self, key: &ObjectKey, seq: i64, snapshot_seq: i64) {
        if let Some(Owner::Me(claim)) = self.owners.known().get_mut(key) {
            claim.file = Some((seq, snapshot_seq));
        }
    }

    /// Records objects' names and last activity (Unix seconds), as this
    /// host saw them, for `verge objects list` on any host.
    pub(crate) async fn record_activity(&self, records: &[(String, ObjectRecord)]) -> Result<()> {
        let namespaces: Vec<&str> = records.iter().map(|(ns, _)| ns.as_str()).collect();
        let ids: Vec<&str> = records.iter().map(|(_, r)| r.id.as_str()).collect();
        let names: Vec<Option<&str>> = records.iter().map(|(_, r)| r.name.as_deref()).collect();
        let times: Vec<i64> = records.iter().map(|(_, r)| r.last_active).collect();
        sqlx::query(
            "UPDATE objects o SET name = COALESCE(a.name, o.name),
                                  last_active = GREATEST(o.last_active, a.last_active)
             FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bigint[])
               AS a(namespace, object_id, name, last_active)
             WHERE o.namespace = a.namespace AND o.object_id = a.object_id",
        )
        .bind(&namespaces)
        .bind(&ids)
        .bind(&names)
        .bind(&times)
        .execute(&self.pool)
        .await
        .context("recording object activity in the cluster")?;
        Ok(())
    }

    /// Every object of `namespace` with a history, most recently active
    /// first.
    pub(crate) async fn objects(&self, namespace: &str) -> Result<Vec<ObjectRecord>> {
        let rows = sqlx::query(
            "SELECT object_id, name, last_active FROM objects
             WHERE namespace = $1 AND head_seq > 0
             ORDER BY last_active DESC, object_id",
        )
        .bind(namespace)
        .fetch_all(&self.pool)
        .await
        .context("listing the cluster's objects")?;
        rows.iter()
            .map(|row| {
                Ok(ObjectRecord {
                    id: row.try_get("object_id")?,
                    name: row.try_get("name")?,
                    last_active: row.try_get("last_active")?,
                })
            })
            .collect()
    }

    /// Takes `key` if nobody alive owns it (bumping its epoch), or finds
    /// out who does.
    async fn claim(&self, key: &ObjectKey) -> Result<Owner> {
        anyhow::ensure!(
            self.holds_lease(),
            "this host's cluster lease has lapsed (is PostgreSQL reachable?); it takes no objects until it is renewed"
        );
        let (namespace, id) = (&*key.namespace, key.id.to_string());
        // A host claims only objects it holds no claim on, so taking one
        // it already owns (its claim was dropped after a failed commit)
        // bumps the epoch too: whatever it did under the old one is done.
        let claimed = sqlx::query(
            "INSERT INTO objects (namespace, object_id, owner, epoch)
             VALUES ($1, $2, $3, 1)
             ON CONFLICT (namespace, object_id) DO UPDATE
               SET owner = EXCLUDED.owner, epoch = objects.epoch + 1
               WHERE objects.owner IS NULL
                  OR objects.owner = EXCLUDED.owner
                  OR NOT EXISTS (SELECT 1 FROM hosts h
                                 WHERE h.id = objects.owner AND h.lease_expires > now())
             RETURNING epoch, head_seq",
        )
        .bind(namespace)
        .bind(&id)
        .bind(&self.host_id)
        .fetch_optional(&self.pool)
        .await
        .with_context(|| format!("claiming object {key}"))?;
        if let Some(row) = claimed {
            let claim = Claim {
                epoch: row.try_get("epoch")?,
                head_seq: row.try_get("head_seq")?,
                file: None,
            };
            tracing::debug!(object = %key, epoch = claim.epoch, "took the object");
            return Ok(Owner::Me(claim));
        }
        let row = sqlx::query(
            "SELECT o.owner, h.address FROM objects o JOIN hosts h ON h.id = o.owner
             WHERE o.namespace = $1 AND o.object_id = $2",
        )
        .bind(namespace)
        .bind(&id)
        .fetch_optional(&self.pool)
        .await
        .with_context(|| format!("looking up the owner of object {key}"))?
        .with_context(|| format!("object {key} changed owner while it was being claimed"))?;
        Ok(Owner::Peer {
            host: row.try_get("owner")?,
            address: row.try_get("address")?,
        })
    }
}
