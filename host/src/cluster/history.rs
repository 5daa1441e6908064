//! Each object's durable history in Postgres, and the local file rebuilt
//! from it.
//!
//! After an object's batch commits to its local SQLite file, the pages the
//! commit changed (read from the WAL, `objects/storage/wal.rs`) go to
//! `object_changes` as change `seq`, in a statement that also checks,
//! under a lock on the object's row, that this host still holds the epoch
//! it claimed the object under and that `seq` follows the head. Only when
//! that statement has committed do the batch's replies leave. A host that
//! was replaced finds the epoch changed and fails its batch; a takeover
//! that bumps the epoch waits for the lock, so it never misses a change
//! committed before it.
//!
//! Batches of every object on this host go through one [`Shipper`]: what
//! waits while a statement is in flight goes in the next one, so many
//! objects share one Postgres commit (group commit across objects).
//!
//! The local file is a cache. A host that claims an object rebuilds it
//! from the newest snapshot and the changes after it, unless the file it
//! has is known to be at the head already. Compaction writes a new
//! snapshot and drops what it covers.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use futures::TryStreamExt;
use sqlx::{AssertSqlSafe, PgPool, Row};
use tokio::sync::{mpsc, oneshot};

use super::Cluster;
use super::ownership::{Claim, Owner};
use crate::objects::ObjectKey;
use crate::objects::storage::wal::{self, PageSet, WalReader};

/// Why a batch's changes are not durable.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum ShipError {
    /// Another host took the object (or its history moved on without
    /// this host): nothing this host did since may be acknowledged.
    #[error("this host no longer owns the object: another host took it over")]
    Deposed,
    /// Postgres could not be reached or failed; whether the change landed
    /// is unknown.
    #[error("the cluster's database did not confirm the commit: {0}")]
    Unconfirmed(String),
}

/// Changes shipped in one statement at most.
const MAX_GROUP: usize = 512;

/// A snapshot row holds this much of the database file.
const SNAPSHOT_CHUNK_BYTES: usize = 4 << 20;

/// Changes after which the owner writes a new snapshot (compaction), or
/// fewer when they add up to more than the database itself (and more than
/// `SNAPSHOT_MIN_BYTES`). The WAL, checkpointed at each snapshot, stays
/// about that size too.
const SNAPSHOT_EVERY_CHANGES: i64 = 1000;
const SNAPSHOT_MIN_BYTES: u64 = 8 << 20;

/// One object's change waiting for its statement.
struct Shipment {
    key: ObjectKey,
    epoch: i64,
    seq: i64,
    pages: Vec<u8>,
    done: oneshot::Sender<Result<(), ShipError>>,
}

/// The host's queue of changes to make durable.
pub(super) struct Shipper {
    queue: mpsc::UnboundedSender<Shipment>,
}

impl Shipper {
    pub(super) fn start(pool: PgPool, host_id: String) -> Self {
        let (queue, mut waiting) = mpsc::unbounded_channel::<Shipment>();
        tokio::spawn(async move {
            while let Some(first) = waiting.recv().await {
                let mut group = vec![first];
                while group.len() < MAX_GROUP {
                    match waiting.try_recv() {
                        Ok(next) => group.push(next),
                        Err(_) => break,
                    }
                }
                ship_group(&pool, &host_id, group).await;
            }
        });
        Self { queue }
    }

    async fn ship(
        &self,
        key: &ObjectKey,
        epoch: i64,
        seq: i64,
        pages: Vec<u8>,
    ) -> Result<(), ShipError> {
        let (done, confirmed) = oneshot::channel();
        let shipment = Shipment {
            key: key.clone(),
            epoch,
            seq,
            pages,
            done,
        };
        self.queue
            .send(shipment)
            .map_err(|_| ShipError::Unconfirmed("the host is shutting down".into()))?;
        confirmed
            .await
            .unwrap_or_else(|_| Err(ShipError::Unconfirmed("the shipper stopped".into())))
    }
}

/// Appends every shipment of `group` whose object this host still holds
/// at the shipment's epoch, in one statement; answers each.
///
/// `FOR UPDATE` makes a concurrent takeover (which updates the same row)
/// either wait for this statement's commit, or, if it committed first,
/// makes this statement see its new epoch and skip the object.
async fn ship_group(pool: &PgPool, host_id: &str, group: Vec<Shipment>) {
    let mut namespaces = Vec::with_capacity(group.len());
    let mut ids = Vec::with_capacity(group.len());
    let mut epochs = Vec::with_capacity(group.len());
    let mut seqs = Vec::with_capacity(group.len());
    let mut pages = Vec::with_capacity(group.len());
    for shipment in &group {
        namespaces.push(shipment.key.namespace.to_string());
        ids.push(shipment.key.id.to_string());
        epochs.push(shipment.epoch);
        seqs.push(shipment.seq);
        pages.push(shipment.pages.as_slice());
    }
    let shipped = sqlx::query(
        "WITH batch AS (
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::bytea[])
               AS b(namespace, object_id, epoch, seq, pages)
         ), held AS (
             SELECT o.namespace, o.object_id FROM objects o
             JOIN batch b ON b.namespace = o.namespace AND b.object_id = o.object_id
             WHERE o.owner = $6 AND o.epoch = b.epoch AND o.head_seq = b.seq - 1
             FOR UPDATE OF o
         ), appended AS (
             INSERT INTO object_changes (namespace, object_id, seq, epoch, pages)
             SELECT b.namespace, b.object_id, b.seq, b.epoch, b.pages
             FROM batch b JOIN held h ON h.namespace = b.namespace AND h.object_id = b.object_id
             RETURNING namespace, object_id, seq
         )
         UPDATE objects o SET head_seq = a.seq
         FROM appended a
         WHERE o.namespace = a.namespace AND o.object_id = a.object_id
         RETURNING o.namespace, o.object_id",
    )
    .bind(&namespaces)
    .bind(&ids)
    .bind(&epochs)
    .bind(&seqs)
    .bind(&pages)
    .bind(host_id)
    .fetch_all(pool)
    .await;
    match shipped {
        Ok(rows) => {
            let landed: std::collections::HashSet<(String, String)> = rows
                .iter()
                .filter_map(|row| Some((row.try_get(0).ok()?, row.try_get(1).ok()?)))
                .collect();
            for shipment in group {
                let key = (
                    shipment.key.namespace.to_string(),
                    shipment.key.id.to_string(),
                );
                let result = if landed.contains(&key) {
                    Ok(())
                } else {
                    Err(ShipError::Deposed)
                };
                let _ = shipment.done.send(result);
            }
        }
        Err(e) => {
            let error = ShipError::Unconfirmed(format!("{e:#}"));
            for shipment in group {
                let _ = shipment.done.send(Err(error.clone()));
            }
        }
    }
}

/// One object's local file as a replica of its history: the claim it is
/// held under, where its history stands, and the WAL it ships from.
pub(crate) struct Replica {
    cluster: Arc<Cluster>,
    key: ObjectKey,
    epoch: i64,
    /// The newest change shipped (or rebuilt from).
    seq: i64,
    /// The change the newest snapshot is at.
    snapshot_seq: i64,
    /// Bytes of the changes since that snapshot, and of the database after
    /// the newest change: when the first passes the second, a snapshot is
    /// cheaper to rebuild from.
    changed_bytes: u64,
    database_bytes: u64,
    wal: WalReader,
    /// The lease generation the object was claimed in.
    generation: u64,
}

impl Replica {
    /// The object's local file at `path`, brought to the head of its
    /// history under this host's claim (taking the object if nobody alive
    /// holds it); `None` when another host owns it.
    pub(crate) async fn open(
        cluster: &Arc<Cluster>,
        key: &ObjectKey,
        path: &Path,
    ) -> Result<Option<Self>> {
        let generation = cluster.lease_generation();
        let claim = match cluster.locate(key).await? {
            Owner::Me(claim) => claim,
            Owner::Peer { .. } => return Ok(None),
        };
        let snapshot_seq = match claim.file {
            // Closed cleanly at the head since the claim: nothing to fetch.
            Some((seq, snapshot_seq)) if seq == claim.head_seq && path.exists() => snapshot_seq,
            _ => rebuild(cluster.pool(), key, claim, path).await?,
        };
        Ok(Some(Self {
            cluster: cluster.clone(),
            key: key.clone(),
            epoch: claim.epoch,
            seq: claim.head_seq,
            snapshot_seq,
            changed_bytes: 0,
            database_bytes: 0,
            wal: WalReader::new(path),
            generation,
        }))
    }

    /// Whether answers may leave for a batch that changed nothing: this
    /// host's lease still runs and never lapsed since the object was
    /// claimed (a read must not come from a host that may have been
    /// replaced while it was paused).
    pub(crate) fn may_answer(&self) -> bool {
        self.cluster.holds_lease() && self.cluster.lease_generation() == self.generation
    }

    /// Reads what the last commit changed and makes it durable in the
    /// cluster. `Ok(false)` when the commit changed no page.
    pub(crate) async fn ship(&mut self) -> Result<bool, ShipError> {
        let pages = match self.wal.read_committed() {
            Ok(Some(pages)) => pages,
            Ok(None) => {
                return if self.may_answer() {
                    Ok(false)
                } else {
                    Err(ShipError::Unconfirmed(
                        "this host's cluster lease has lapsed".into(),
                    ))
                };
            }
            Err(e) => return Err(ShipError::Unconfirmed(format!("reading the WAL: {e}"))),
        };
        let seq = self.seq + 1;
        let encoded = pages.encode();
        let shipped_bytes = encoded.len() as u64;
        self.cluster
            .shipper
            .ship(&self.key, self.epoch, seq, encoded)
            .await?;
        self.seq = seq;
        self.changed_bytes += shipped_bytes;
        self.database_bytes = u64::from(pages.db_pages) * u64::from(pages.page_size);
        self.cluster.advance_claim(&self.key, seq);
        Ok(true)
    }

    /// Whether enough changes piled up since the last snapshot to write a
    /// new one.
    pub(crate) fn wants_snapshot(&self) -> bool {
        self.seq - self.snapshot_seq >= SNAPSHOT_EVERY_CHANGES
            || self.changed_bytes > self.database_bytes.max(SNAPSHOT_MIN_BYTES)
    }

    /// Starts the WAL over after the owner checkpointed it.
    pub(crate) fn wal_reset(&mut self) {
        self.wal.reset();
    }

    /// Stores `file` (the whole database, checkpointed, at the current
    /// head) as a snapshot, and drops the changes and snapshots it makes
    /// unnecessary: compaction.
    pub(crate) async fn snapshot(&mut self, file: Vec<u8>) -> Result<(), ShipError> {
        let seq = self.seq;
        store_snapshot(self.cluster.pool(), &self.key, self.epoch, seq, seq, &file)
            .await
            .map_err(ship_error)?;
        self.snapshot_seq = seq;
        self.changed_bytes = 0;
        tracing::debug!(object = %self.key, seq, bytes = file.len(), "compacted the object's history");
        Ok(())
    }

    /// Makes `file` (an imported database) the object's next state, as a
    /// snapshot one change past the head.
    pub(crate) async fn replace(&mut self, file: &[u8]) -> Result<(), ShipError> {
        let seq = self.seq + 1;
        store_snapshot(
            self.cluster.pool(),
            &self.key,
            self.epoch,
            self.seq,
            seq,
            file,
        )
        .await
        .map_err(ship_error)?;
        self.seq = seq;
        self.snapshot_seq = seq;
        self.changed_bytes = 0;
        self.cluster.advance_claim(&self.key, seq);
        Ok(())
    }

    /// Whether the object has any history: a change or an import.
    pub(crate) fn has_history(&self) -> bool {
        self.seq > 0
    }

    /// Removes the object from the cluster: its row, history and alarms.
    pub(crate) async fn erase(self) -> Result<(), ShipError> {
        let (namespace, id) = (&*self.key.namespace, self.key.id.to_string());
        let erased = async {
            let mut tx = self.cluster.pool().begin().await?;
            let held = sqlx::query(
                "DELETE FROM objects WHERE namespace = $1 AND object_id = $2 AND epoch = $3
                 RETURNING 1",
            )
            .bind(namespace)
            .bind(&id)
            .bind(self.epoch)
            .fetch_optional(&mut *tx)
            .await?;
            if held.is_none() {
                return Err(ShipError::Deposed.into());
            }
            for table in ["object_changes", "object_snapshots", "alarms"] {
                sqlx::query(AssertSqlSafe(format!(
                    "DELETE FROM {table} WHERE namespace = $1 AND object_id = $2"
                )))
                .bind(namespace)
                .bind(&id)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            anyhow::Ok(())
        }
        .await;
        self.cluster.forget_owner(&self.key);
        erased.map_err(ship_error)
    }

    /// Closes the replica with everything shipped: its file, once the
    /// database is closed, is the object at the head of its history.
    pub(crate) fn keep_file(self) {
        self.cluster
            .keep_file(&self.key, self.seq, self.snapshot_seq);
    }

    /// Gives up the object after a failed commit: what this host holds of
    /// it can no longer be trusted, so the next event claims it again.
    pub(crate) fn abandon(&self) {
        self.cluster.forget_owner(&self.key);
    }
}

/// A failure of a multi-statement history write, as a batch sees it.
fn ship_error(error: anyhow::Error) -> ShipError {
    match error.downcast_ref::<ShipError>() {
        Some(ShipError::Deposed) => ShipError::Deposed,
        _ => ShipError::Unconfirmed(format!("{error:#}")),
    }
}

/// Stores `file` as the object's state at change `seq`, which becomes the
/// head (the head was `head`), and drops the history before it.
async fn store_snapshot(
    pool: &PgPool,
    key: &ObjectKey,
    epoch: i64,
    head: i64,
    seq: i64,
    file: &[u8],
) -> Result<()> {
    let (namespace, id) = (&*key.namespace, key.id.to_string());
    let mut tx = pool.begin().await?;
    // The same fence as a commit: only the owner writes history.
    let held = sqlx::query(
        "UPDATE objects SET head_seq = $5 WHERE namespace = $1 AND object_id = $2
           AND epoch = $3 AND head_seq = $4 RETURNING 1",
    )
    .bind(namespace)
    .bind(&id)
    .bind(epoch)
    .bind(head)
    .bind(seq)
    .fetch_optional(&mut *tx)
    .await?;
    if held.is_none() {
        return Err(ShipError::Deposed.into());
    }
    for (chunk, bytes) in file.chunks(SNAPSHOT_CHUNK_BYTES).enumerate() {
        sqlx::query(
            "INSERT INTO object_snapshots (namespace, object_id, seq, chunk, bytes)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(namespace)
        .bind(&id)
        .bind(seq)
        .bind(chunk as i32)
        .bind(bytes)
        .execute(&mut *tx)
        .await?;
    }
    if file.is_empty() {
        sqlx::query(
            "INSERT INTO object_snapshots (namespace, object_id, seq, chunk, bytes)
             VALUES ($1, $2, $3, 0, '')",
        )
        .bind(namespace)
        .bind(&id)
        .bind(seq)
        .execute(&mut *tx)
        .await?;
    }
    for table in ["object_snapshots", "object_changes"] {
        sqlx::query(AssertSqlSafe(format!(
            "DELETE FROM {table} WHERE namespace = $1 AND object_id = $2 AND seq < $3"
        )))
        .bind(namespace)
        .bind(&id)
        .bind(seq)
        .execute(&mut *tx)
        .await?;
    }
    sqlx::query("DELETE FROM object_changes WHERE namespace = $1 AND object_id = $2 AND seq = $3")
        .bind(namespace)
        .bind(&id)
        .bind(seq)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

/// Writes the object's state at `claim.head_seq` to `path`: the newest
/// snapshot with the changes after it applied. Returns the snapshot's
/// change number (0 without one).
async fn rebuild(pool: &PgPool, key: &ObjectKey, claim: Claim, path: &Path) -> Result<i64> {
    if let Some(dir) = path.parent() {
        tokio::fs::create_dir_all(dir)
            .await
            .with_context(|| format!("creating {}", dir.display()))?;
    }
    if claim.head_seq == 0 {
        // No history yet (a new object): an empty file is its state.
        crate::objects::storage::remove_database_files(path)?;
        return Ok(0);
    }
    let (namespace, id) = (&*key.namespace, key.id.to_string());
    let snapshot_seq: i64 = sqlx::query_scalar(
        "SELECT COALESCE(MAX(seq), 0) FROM object_snapshots
         WHERE namespace = $1 AND object_id = $2 AND seq <= $3",
    )
    .bind(namespace)
    .bind(&id)
    .bind(claim.head_seq)
    .fetch_one(pool)
    .await
    .with_context(|| format!("finding object {key}'s newest snapshot"))?;

    let building = path.with_extension("rebuilding");
    let mut file = Vec::new();
    let mut chunks = sqlx::query(
        "SELECT bytes FROM object_snapshots
         WHERE namespace = $1 AND object_id = $2 AND seq = $3 ORDER BY chunk",
    )
    .bind(namespace)
    .bind(&id)
    .bind(snapshot_seq)
    .fetch(pool);
    while let Some(row) = chunks.try_next().await? {
        let bytes: Vec<u8> = row.try_get(0)?;
        file.extend_from_slice(&bytes);
    }
    drop(chunks);
    tokio::fs::write(&building, &file)
        .await
        .with_context(|| format!("writing {}", building.display()))?;
    drop(file);

    let mut expected = snapshot_seq + 1;
    loop {
        // In slices, so a long history never sits in memory at once.
        let rows = sqlx::query(
            "SELECT seq, pages FROM object_changes
             WHERE namespace = $1 AND object_id = $2 AND seq >= $3 AND seq <= $4
             ORDER BY seq LIMIT 256",
        )
        .bind(namespace)
        .bind(&id)
        .bind(expected)
        .bind(claim.head_seq)
        .fetch_all(pool)
        .await
        .with_context(|| format!("reading object {key}'s changes"))?;
        if rows.is_empty() {
            break;
        }
        // Merged first: a page written by many changes is written once.
        let mut merged: Option<PageSet> = None;
        for row in rows {
            let seq: i64 = row.try_get(0)?;
            anyhow::ensure!(
                seq == expected,
                "object {key}'s history has a gap: change {expected} is missing"
            );
            let encoded: Vec<u8> = row.try_get(1)?;
            let set = PageSet::decode(&encoded).with_context(|| format!("change {seq}"))?;
            match &mut merged {
                Some(merged) => merged.merge(set),
                None => merged = Some(set),
            }
            expected += 1;
        }
        if let Some(set) = merged {
            let target = building.clone();
            tokio::task::spawn_blocking(move || wal::apply(&target, &set))
                .await
                .context("the task applying changes failed")??;
        }
    }
    anyhow::ensure!(
        expected == claim.head_seq + 1,
        "object {key}'s history ends at change {} but its head is {}",
        expected - 1,
        claim.head_seq
    );
    crate::objects::storage::remove_database_files(path)?;
    tokio::fs::rename(&building, path)
        .await
        .with_context(|| format!("moving the rebuilt database to {}", path.display()))?;
    Ok(snapshot_seq)
}
