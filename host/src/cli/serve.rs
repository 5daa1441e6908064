use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use tokio::net::TcpListener;

use super::{EngineArgs, ListenArgs, shutdown_signal};
use crate::cluster::{Cluster, ClusterOptions};
use crate::platform::{Platform, PlatformOptions};
use crate::server::Server;

#[derive(Args)]
pub(super) struct ServeArgs {
    /// Where deployments, artifacts and state live.
    #[arg(long, default_value = "verge-data")]
    data: PathBuf,
    #[command(flatten)]
    listen: ListenArgs,
    #[command(flatten)]
    engine: EngineArgs,
    /// Keep an R2 bucket's objects at a URL instead of under --data:
    /// `NAME=s3://bucket/prefix`, `NAME=gs://...`, `NAME=az://...` or
    /// `NAME=file:///dir` (repeatable; comma-separated in the variable).
    /// Credentials come from the store's usual environment variables
    /// (AWS_ACCESS_KEY_ID, ...). Cloud stores need a build with the
    /// `r2-cloud` feature.
    #[arg(
        long = "r2-bucket",
        env = "VERGE_R2_BUCKETS",
        value_delimiter = ',',
        value_name = "NAME=URL"
    )]
    r2_buckets: Vec<String>,
    /// Keep the objects of every R2 bucket without an --r2-bucket of its
    /// own under this URL, bucket NAME at URL/NAME (`file:///dir`,
    /// `s3://bucket/prefix`, ...). In a cluster, every bucket needs a
    /// location all hosts share: this flag, or --r2-bucket.
    #[arg(long = "r2-root", env = "VERGE_R2_ROOT", value_name = "URL")]
    r2_root: Option<String>,
    #[command(flatten)]
    cluster: ClusterArgs,
}

/// Cluster mode: many hosts sharing one PostgreSQL database.
#[derive(Args)]
struct ClusterArgs {
    /// Join the cluster whose hosts share this PostgreSQL database
    /// (`postgres://user:password@host:5432/verge`). Without it the host
    /// runs alone, on its data directory.
    #[arg(
        long = "cluster",
        env = "VERGE_CLUSTER_URL",
        value_name = "POSTGRES_URL"
    )]
    cluster_url: Option<String>,
    /// The secret every host of the cluster shares; peers present it on
    /// the cluster listener (at least 16 characters).
    #[arg(
        long = "cluster-secret",
        env = "VERGE_CLUSTER_SECRET",
        hide_env_values = true
    )]
    cluster_secret: Option<String>,
    /// Where the cluster listener binds: other hosts forward the events
    /// of objects this host owns to it.
    #[arg(long = "cluster-listen", default_value = "127.0.0.1:8789")]
    cluster_listen: SocketAddr,
    /// The URL other hosts reach the cluster listener at [default:
    /// http:// and the bound address, when that is a specific one].
    #[arg(long = "cluster-advertise", value_name = "URL")]
    cluster_advertise: Option<String>,
    /// Seconds a host keeps its objects without renewing its lease: a host
    /// that dies is replaced after at most this long.
    #[arg(long = "cluster-lease-secs", default_value_t = 3.0)]
    cluster_lease_secs: f64,
}

impl ClusterArgs {
    /// Binds the cluster listener and joins the cluster; `None` without
    /// `--cluster`.
    async fn join(self) -> Result<Option<(Arc<Cluster>, TcpListener)>> {
        let Some(url) = self.cluster_url else {
            return Ok(None);
        };
        let secret = self
            .cluster_secret
            .context("--cluster needs --cluster-secret (or VERGE_CLUSTER_SECRET): the secret every host of the cluster shares")?;
        let listener = TcpListener::bind(self.cluster_listen)
            .await
            .with_context(|| {
                format!(
                    "binding the cluster listener on {} (--cluster-listen)",
                    self.cluster_listen
                )
            })?;
        let bound = listener.local_addr()?;
        let address = match self.cluster_advertise {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None if bound.ip().is_unspecified() => anyhow::bail!(
                "--cluster-listen {bound} binds every address: say which one peers use with --cluster-advertise http://HOST:{}",
                bound.port()
            ),
            None => format!("http://{bound}"),
        };
        anyhow::ensure!(
            self.cluster_lease_secs.is_finite() && (0.5..=600.0).contains(&self.cluster_lease_secs),
            "--cluster-lease-secs must be between 0.5 and 600"
        );
        let cluster = Cluster::join(ClusterOptions {
            database_url: url,
            secret,
            address,
            lease: Duration::from_secs_f64(self.cluster_lease_secs),
        })
        .await?;
        Ok(Some((cluster, listener)))
    }
}

pub(super) async fn run(args: ServeArgs) -> Result<()> {
    let server_options = args.listen.server_options(&args.data, None)?;
    let joined = args.cluster.join().await?;
    let platform = Platform::open(PlatformOptions {
        data_dir: args.data,
        engine: args.engine.engine(),
        objects: args.engine.objects(),
        dev: false,
        cluster: joined.as_ref().map(|(cluster, _)| cluster.clone()),
    })
    .await?;
    for entry in &args.r2_buckets {
        let (name, url) = entry
            .split_once('=')
            .with_context(|| format!("--r2-bucket {entry:?}: write it as NAME=URL"))?;
        platform.r2().locate(name.trim(), url.trim())?;
    }
    if let Some(url) = &args.r2_root {
        platform.r2().locate_all(url.trim())?;
    }
    let mut server = Server::start(platform, server_options).await?;
    let cluster = joined.map(|(cluster, listener)| {
        server.serve_peers(listener, cluster.clone());
        cluster
    });
    tracing::info!(
        listen = %server.addr(),
        admin = %server.admin_addr().expect("serve always opens the admin API"),
        cluster = cluster.as_ref().map(|c| c.host_id()),
        "verge serve is ready"
    );
    let served = server.run_until(shutdown_signal()).await;
    if let Some(cluster) = cluster {
        cluster.leave().await;
    }
    served
}
