use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use super::{EngineArgs, ListenArgs, shutdown_signal};
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
}

pub(super) async fn run(args: ServeArgs) -> Result<()> {
    let server_options = args.listen.server_options(&args.data, None)?;
    let platform = Platform::open(PlatformOptions {
        data_dir: args.data,
        engine: args.engine.engine(),
        objects: args.engine.objects(),
        dev: false,
    })
    .await?;
    for entry in &args.r2_buckets {
        let (name, url) = entry
            .split_once('=')
            .with_context(|| format!("--r2-bucket {entry:?}: write it as NAME=URL"))?;
        platform.r2().locate(name.trim(), url.trim())?;
    }
    let server = Server::start(platform, server_options).await?;
    tracing::info!(
        listen = %server.addr(),
        admin = %server.admin_addr().expect("serve always opens the admin API"),
        "verge serve is ready"
    );
    server.run_until(shutdown_signal()).await
}
