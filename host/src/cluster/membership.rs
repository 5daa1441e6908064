//! This host's row in `hosts` and its lease.
//!
//! A lease is a time in Postgres's clock until which the host owns its
//! objects; the host renews it three times per lease. Others may take
//! its objects once it has passed. The host itself must stop answering
//! for them a little *before* it passes by its own reckoning: it counts
//! from when it sent the renewal that succeeded, so a host that was paused
//! (SIGSTOP, a long GC-like stall, a frozen VM) knows on waking that it may
//! have been replaced, before it answers anything.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::Serialize;
use sqlx::PgPool;

use super::{Cluster, ClusterOptions};

/// What this host knows about its own lease.
pub(super) struct Membership {
    lease: Duration,
    /// When the newest successful renewal was sent.
    renewed: Mutex<Instant>,
    /// Counts the times the lease lapsed. What this host held before a
    /// lapse it may have lost meanwhile, even once the lease is renewed:
    /// a replica opened in an earlier generation answers nothing more.
    generation: AtomicU64,
}

/// One host of the cluster, as `verge cluster status` lists it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct HostRecord {
    pub id: String,
    pub address: String,
    /// Seconds since its lease was last renewed.
    pub lease_age_secs: f64,
    /// Whether its lease is still running.
    pub alive: bool,
    /// Objects it owns.
    pub objects: i64,
    /// Whether this is the host that answered.
    #[sqlx(skip)]
    pub this_host: bool,
}

/// The part of the lease a host gives up early, for the time between
/// deciding to answer and the answer leaving, and for clocks that run at
/// slightly different rates.
const SAFETY_MARGIN: f64 = 0.2;

impl Membership {
    /// Adds this host to `hosts` with a lease starting now.
    pub(super) async fn register(
        pool: &PgPool,
        host_id: &str,
        options: &ClusterOptions,
    ) -> Result<Self> {
        let sent = Instant::now();
        sqlx::query(
            "INSERT INTO hosts (id, address, lease_expires)
             VALUES ($1, $2, now() + make_interval(secs => $3))",
        )
        .bind(host_id)
        .bind(&options.address)
        .bind(options.lease.as_secs_f64())
        .execute(pool)
        .await
        .context("registering this host in the cluster")?;
        Ok(Self {
            lease: options.lease,
            renewed: Mutex::new(sent),
            generation: AtomicU64::new(0),
        })
    }

    /// Whether this host may still answer for its objects.
    pub(super) fn holds_lease(&self) -> bool {
        let renewed = *self.renewed.lock().unwrap_or_else(|p| p.into_inner());
        renewed.elapsed() < self.lease.mul_f64(1.0 - SAFETY_MARGIN)
    }

    fn renewed(&self, sent: Instant) {
        let mut renewed = self.renewed.lock().unwrap_or_else(|p| p.into_inner());
        *renewed = (*renewed).max(sent);
    }
}

/// Renews this host's lease three times per lease, for as long as the
/// cluster lives.
pub(super) fn keep_renewing(cluster: &Arc<Cluster>) {
    let weak = Arc::downgrade(cluster);
    let every = cluster.options.lease / 3;
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        let mut held = true;
        loop {
            tick.tick().await;
            let Some(cluster) = weak.upgrade() else { break };
            // Checked before renewing: a host that slept through its lease
            // must let go of its objects even if the renewal works.
            let holds = cluster.membership.holds_lease();
            if held && !holds {
                cluster.membership.generation.fetch_add(1, Ordering::SeqCst);
                cluster.forget_claims();
                tracing::warn!(
                    "this host's cluster lease lapsed: it lets go of its objects, which other hosts may have taken"
                );
            }
            held = holds;
            let sent = Instant::now();
            match renew(&cluster).await {
                Ok(()) => {
                    cluster.membership.renewed(sent);
                    if failing {
                        tracing::info!("renewing this host's cluster lease works again");
                    }
                    failing = false;
                }
                Err(e) => {
                    if !failing {
                        tracing::warn!("cannot renew this host's cluster lease: {e:#}");
                    }
                    failing = true;
                }
            }
        }
    });
}

/// Extends the lease; puts the row back if it is gone (an operator
/// removed it, or the host was away so long it was cleaned up).
async fn renew(cluster: &Cluster) -> Result<()> {
    let lease = cluster.options.lease.as_secs_f64();
    sqlx::query(
        "INSERT INTO hosts (id, address, lease_expires)
         VALUES ($1, $2, now() + make_interval(secs => $3))
         ON CONFLICT (id) DO UPDATE
           SET renewed_at = now(), lease_expires = EXCLUDED.lease_expires",
    )
    .bind(&cluster.host_id)
    .bind(&cluster.options.address)
    .bind(lease)
    .execute(&cluster.pool)
    .await?;
    // Hosts gone for a day are history; their objects' rows stay (owned
    // by nobody alive, so the next host to reach one takes it).
    sqlx::query("DELETE FROM hosts WHERE lease_expires < now() - interval '1 day'")
        .execute(&cluster.pool)
        .await?;
    Ok(())
}

/// Ends this host's lease now and hands back its objects.
pub(super) async fn leave(pool: &PgPool, host_id: &str) -> Result<()> {
    let mut tx = pool.begin().await?;
    sqlx::query("UPDATE objects SET owner = NULL WHERE owner = $1")
        .bind(host_id)
        .execute(&mut *tx)
        .await?;
    sqlx::query("UPDATE hosts SET lease_expires = now() WHERE id = $1")
        .bind(host_id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

impl Cluster {
    /// Every host that has been a member in the last day, the living first.
    pub async fn hosts(&self) -> Result<Vec<HostRecord>> {
        let mut hosts: Vec<HostRecord> = sqlx::query_as(
            "SELECT h.id, h.address,
                    EXTRACT(EPOCH FROM now() - h.renewed_at)::float8 AS lease_age_secs,
                    h.lease_expires > now() AS alive,
                    (SELECT count(*) FROM objects o WHERE o.owner = h.id) AS objects
             FROM hosts h
             ORDER BY alive DESC, h.started_at",
        )
        .fetch_all(&self.pool)
        .await
        .context("listing the cluster's hosts")?;
        for host in &mut hosts {
            host.this_host = host.id == self.host_id;
        }
        Ok(hosts)
    }

    /// Whether this host may still answer for the objects it owns.
    pub(crate) fn holds_lease(&self) -> bool {
        self.membership.holds_lease()
    }

    /// Records that the cron trigger `cron` of `worker` runs for
    /// `scheduled_ms`, unless a host of the cluster did already; returns
    /// whether this host is the one to run it.
    pub(crate) async fn claim_cron_run(
        &self,
        worker: &str,
        cron: &str,
        scheduled_ms: i64,
    ) -> Result<bool> {
        let claimed = sqlx::query(
            "INSERT INTO cron_runs (worker, cron, scheduled_ms) VALUES ($1, $2, $3)
             ON CONFLICT (worker, cron) DO UPDATE SET scheduled_ms = EXCLUDED.scheduled_ms
             WHERE cron_runs.scheduled_ms < EXCLUDED.scheduled_ms
             RETURNING 1",
        )
        .bind(worker)
        .bind(cron)
        .bind(scheduled_ms)
        .fetch_optional(&self.pool)
        .await
        .context("claiming a cron run in the cluster")?;
        Ok(claimed.is_some())
    }

    /// The lease generation now (see [`Membership`]).
    pub(crate) fn lease_generation(&self) -> u64 {
        self.membership.generation.load(Ordering::SeqCst)
    }
}
