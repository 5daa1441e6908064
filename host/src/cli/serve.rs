use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use super::{EngineArgs, default_admin_listen, default_listen, shutdown_signal};
use crate::platform::{Platform, PlatformOptions};
use crate::server::{Server, ServerOptions};

#[derive(Args)]
pub struct ServeArgs {
    /// Where deployments, artifacts and state live.
    #[arg(long, default_value = "verge-data")]
    data: PathBuf,
    /// The public listener.
    #[arg(long, default_value_t = default_listen())]
    listen: SocketAddr,
    /// The admin API listener; off a loopback address it requires
    /// VERGE_ADMIN_TOKEN.
    #[arg(long, default_value_t = default_admin_listen())]
    admin_listen: SocketAddr,
    /// Bearer token for the admin API.
    #[arg(long, env = "VERGE_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    #[command(flatten)]
    engine: EngineArgs,
}

pub async fn run(args: ServeArgs) -> Result<()> {
    let platform = Platform::open(PlatformOptions {
        data_dir: args.data,
        engine: args.engine.into(),
        dev: false,
    })
    .await?;
    let server = Server::start(
        platform,
        ServerOptions {
            listen: args.listen,
            admin_listen: Some(args.admin_listen),
            admin_token: args.admin_token,
            index: None,
        },
    )
    .await?;
    tracing::info!(
        listen = %server.addr(),
        admin = %server.admin_addr().expect("serve always opens the admin API"),
        "verge serve is ready"
    );
    server.run_until(shutdown_signal()).await
}
