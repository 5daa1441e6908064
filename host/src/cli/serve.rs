use std::path::PathBuf;

use anyhow::Result;
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
    let server = Server::start(platform, server_options).await?;
    tracing::info!(
        listen = %server.addr(),
        admin = %server.admin_addr().expect("serve always opens the admin API"),
        "verge serve is ready"
    );
    server.run_until(shutdown_signal()).await
}
