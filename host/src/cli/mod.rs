//! The `verge` command.

mod admin_client;
mod deploy;
mod dev;
mod new;
mod project;
mod secret;
mod serve;
mod up;

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};

use crate::runtime::EngineOptions;
use crate::server::{IndexPage, ServerOptions};

#[derive(Parser)]
#[command(
    name = "verge",
    version,
    about = "Serve WebAssembly workers and Durable Objects, on your own machines"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build every bundled example and serve them all, with an index at `/`.
    Up(up::UpArgs),
    /// Run the production host.
    Serve(serve::ServeArgs),
    /// Build the worker in this directory, serve it, and rebuild on change.
    Dev(dev::DevArgs),
    /// Build the worker and upload it to a running `verge serve`.
    Deploy(deploy::DeployArgs),
    /// Create a new worker crate.
    New(new::NewArgs),
    /// Manage a deployed worker's secrets.
    #[command(subcommand)]
    Secret(secret::SecretCommand),
    /// List the workers on a host.
    Workers(admin_client::HostArgs),
    /// Serve the previously active version of a worker again.
    Rollback(deploy::RollbackArgs),
}

/// The listeners of a host with an admin API (`serve`, `up`).
#[derive(Args, Debug, Clone)]
struct ListenArgs {
    /// The public listener.
    #[arg(long, default_value_t = default_listen())]
    listen: SocketAddr,
    /// The admin API listener; off a loopback address it requires a token.
    #[arg(long, default_value_t = default_admin_listen())]
    admin_listen: SocketAddr,
    /// Bearer token for the admin API.
    #[arg(long, env = "VERGE_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
}

impl ListenArgs {
    fn server_options(self, index: Option<IndexPage>) -> ServerOptions {
        ServerOptions {
            listen: self.listen,
            admin_listen: Some(self.admin_listen),
            admin_token: self.admin_token,
            index,
        }
    }
}

/// Sizing shared by every command that runs a host.
#[derive(Args, Debug, Clone, Copy)]
struct EngineArgs {
    /// Instances that may run at once; requests beyond get a 503.
    #[arg(long, default_value_t = EngineOptions::default().max_instances)]
    max_instances: u32,
    /// Durable Objects that may be active at once.
    #[arg(long, default_value_t = EngineOptions::default().max_objects)]
    max_objects: u32,
    /// The most memory a worker may configure, in MiB.
    #[arg(long, default_value_t = EngineOptions::default().max_memory_mb)]
    max_memory_mb: u64,
}

impl From<EngineArgs> for EngineOptions {
    fn from(args: EngineArgs) -> Self {
        Self {
            max_instances: args.max_instances,
            max_objects: args.max_objects,
            max_memory_mb: args.max_memory_mb,
        }
    }
}

/// Runs the command line; `main` only sets up logging and the runtime.
pub async fn run() -> Result<()> {
    match Cli::parse().command {
        Command::Up(args) => up::run(args).await,
        Command::Serve(args) => serve::run(args).await,
        Command::Dev(args) => dev::run(args).await,
        Command::Deploy(args) => deploy::run(args).await,
        Command::New(args) => new::run(args),
        Command::Secret(command) => secret::run(command).await,
        Command::Workers(args) => admin_client::list_workers(args).await,
        Command::Rollback(args) => deploy::rollback(args).await,
    }
}

/// Waits for Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing the SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// `127.0.0.1:8787`, where wrangler dev listens too.
fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8787))
}

fn default_admin_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8788))
}

/// Where this source tree's pieces are, for commands that use them (up,
/// new). Overridable by flags for a relocated binary.
fn source_tree() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}
