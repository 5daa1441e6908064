//! Cluster mode: many hosts, one platform, on PostgreSQL.
//!
//! Without `--cluster` nothing here runs. With it, every host of a cluster
//! shares one Postgres database (schema in `host/migrations/`, applied with
//! sqlx's migrator) and:
//!
//! | file | concept |
//! |---|---|
//! | `membership.rs` | this host's row and lease; who else is alive |
//! | `control_plane.rs` | workers, versions, secrets, namespaces: pushed on change, pulled on NOTIFY |
//! | `ownership.rs` | which host owns an object, under which fencing epoch; claims by compare-and-swap |
//! | `forward.rs` | object events carried to their owner over the cluster listener |
//! | `history.rs` | each object's durable change history: group commit with fencing, rebuild, compaction |
//! | `alarms.rs` | when every object's alarms are due, for the owner and for takeovers |
//! | `relay.rs` | WebSockets relayed to the host that owns their object |
//! | `d1.rs` | D1 databases as objects: their ownership keys, forwarded D1 calls |
//!
//! Postgres is the only thing hosts agree through. Its clock decides
//! leases, its row locks order a commit against a takeover, and a host's
//! local files (control.db, object databases) are caches of what it holds.

mod alarms;
mod control_plane;
mod d1;
mod forward;
mod history;
mod membership;
mod ownership;
mod relay;

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

pub(crate) use control_plane::ControlChange;
pub(crate) use d1::{D1_PATH, PeerDelivery, d1_key};
pub(crate) use forward::{
    Delivery, Forwarded, Incoming, PEER_SECRET_HEADER, REPLY_HEADER, decode_event, encode_reply,
};
pub(crate) use history::{Replica, ShipError};
pub use membership::HostRecord;
use membership::Membership;
use ownership::Ownership;
pub(crate) use ownership::{Owner, RELOCATE_PAUSE};
use relay::Relays;
pub(crate) use relay::relay;

/// How a host joins a cluster.
#[derive(Clone)]
pub struct ClusterOptions {
    /// `postgres://user:password@host:port/database`.
    pub database_url: String,
    /// What peers prove themselves with on the cluster listener; every
    /// host of a cluster has the same one.
    pub secret: String,
    /// The URL peers reach this host's cluster listener at.
    pub address: String,
    /// How long a host owns its objects without renewing its lease. A
    /// host that dies is replaced this long after its last renewal, at
    /// most.
    pub lease: Duration,
}

impl std::fmt::Debug for ClusterOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry a password, and the secret is one.
        f.debug_struct("ClusterOptions")
            .field("address", &self.address)
            .field("lease", &self.lease)
            .finish_non_exhaustive()
    }
}

/// Secrets shorter than this are refused: peers authenticate with it.
pub const MIN_SECRET_LEN: usize = 16;

/// This host's membership of a cluster.
pub struct Cluster {
    pool: PgPool,
    /// Random per process: a restarted host is a new member, and never
    /// mistakes its predecessor's objects for its own.
    host_id: String,
    options: ClusterOptions,
    membership: Membership,
    owners: Ownership,
    shipper: history::Shipper,
    peers: reqwest::Client,
    relays: Relays,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("host_id", &self.host_id)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// Connects to the cluster's database, brings its schema up to date
    /// and registers this host with a fresh lease.
    pub async fn join(options: ClusterOptions) -> Result<Arc<Self>> {
        anyhow::ensure!(
            options.secret.len() >= MIN_SECRET_LEN,
            "the cluster secret must be at least {MIN_SECRET_LEN} characters long"
        );
        anyhow::ensure!(
            options.secret.bytes().all(|b| b.is_ascii_graphic()),
            "the cluster secret must be printable ASCII without spaces (it travels in a header)"
        );
        let pool = PgPoolOptions::new()
            .max_connections(32)
            // While Postgres is away, callers get an error in seconds
            // instead of queueing without end.
            .acquire_timeout(Duration::from_secs(3))
            .connect(&options.database_url)
            .await
            .context("connecting to the cluster's PostgreSQL database")?;
        sqlx::migrate!("./migrations")
            .run(&pool)
            .await
            .context("migrating the cluster's schema")?;
        let host_id = hex::encode(rand::random::<[u8; 8]>());
        let membership = Membership::register(&pool, &host_id, &options).await?;
        let cluster = Arc::new(Self {
            shipper: history::Shipper::start(pool.clone(), host_id.clone()),
            pool,
            host_id,
            membership,
            owners: Ownership::default(),
            relays: Relays::default(),
            peers: reqwest::Client::builder()
                .no_proxy()
                .pool_idle_timeout(Duration::from_secs(30))
                .build()
                .context("building the peer client")?,
            options,
        });
        membership::keep_renewing(&cluster);
        tracing::info!(host = %cluster.host_id, address = %cluster.options.address, "joined the cluster");
        Ok(cluster)
    }

    /// This host's id in the cluster.
    pub fn host_id(&self) -> &str {
        &self.host_id
    }

    pub(crate) fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Whether `secret` is the cluster's, compared in constant time.
    pub(crate) fn accepts(&self, secret: &[u8]) -> bool {
        use subtle::ConstantTimeEq;
        self.options.secret.as_bytes().ct_eq(secret).into()
    }

    /// Leaves the cluster on a clean shutdown: this host's objects are
    /// free for others at once instead of after its lease.
    pub async fn leave(&self) {
        if let Err(e) = membership::leave(&self.pool, &self.host_id).await {
            tracing::warn!("leaving the cluster: {e:#}");
        }
    }
}
