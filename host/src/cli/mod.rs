//! The `verge` command.

mod admin_client;
mod build;
mod cluster;
mod d1;
mod deploy;
mod dev;
mod format;
mod kv;
mod new;
mod objects;
mod project;
mod r2;
mod secret;
mod serve;
mod status;
mod tail;
mod token;
mod up;
mod workers;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::{Args, Parser, Subcommand};

use crate::objects::{ObjectOptions, SocketLimits};
use crate::runtime::EngineOptions;
use crate::server::{AdminOptions, ConnectionLimits, IndexPage, ServerOptions};
use crate::telemetry::{LogFormat, init_logging};

#[derive(Parser)]
#[command(
    name = "verge",
    version,
    about = "Serve WebAssembly workers and Durable Objects, on your own machines"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// How the host writes its log: `human` lines, or one `json` object
    /// per line for a log collector.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value_t,
        env = "VERGE_LOG_FORMAT"
    )]
    log_format: LogFormat,
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
    /// Build the worker's component, as `deploy` would, and print its path.
    Build(build::BuildArgs),
    /// Create a new worker crate.
    New(new::NewArgs),
    /// Manage a deployed worker's secrets.
    #[command(subcommand)]
    Secret(secret::SecretCommand),
    /// List the workers on a host.
    Workers(admin_client::HostArgs),
    /// List a worker's versions, newest first.
    Versions(workers::VersionsArgs),
    /// Serve one of a worker's uploaded versions.
    Activate(workers::ActivateArgs),
    /// Serve the version that was active before the current one (or --to N).
    Rollback(workers::RollbackArgs),
    /// Delete a worker, its versions, secrets and Durable Objects' data.
    Delete(workers::DeleteArgs),
    /// Show a host's health, uptime, workers, objects, WebSockets and alarms.
    Status(status::StatusArgs),
    /// The hosts of a cluster (`verge serve --cluster`).
    #[command(subcommand)]
    Cluster(cluster::ClusterCommand),
    /// List, export, import and delete Durable Objects.
    #[command(subcommand)]
    Objects(objects::ObjectsCommand),
    /// Create, query, export and import D1 databases; apply migrations.
    #[command(subcommand)]
    D1(d1::D1Command),
    /// Stream a host's live request logs, like `wrangler tail`.
    Tail(tail::TailArgs),
    /// KV namespaces and their keys, like `wrangler kv`.
    #[command(subcommand)]
    Kv(kv::KvCommand),
    /// Manage R2 buckets and objects, like `wrangler r2`.
    #[command(subcommand)]
    R2(r2::R2Command),
}

/// The listeners of a host with an admin API (`serve`, `up`).
#[derive(Args, Debug, Clone)]
struct ListenArgs {
    /// The public listener.
    #[arg(long, default_value_t = default_listen())]
    listen: SocketAddr,
    /// The admin API listener.
    #[arg(long, default_value_t = default_admin_listen())]
    admin_listen: SocketAddr,
    /// Bearer token for the admin API; without it, the one kept in the
    /// data directory (`admin-token`), generated on first start.
    #[arg(long, env = "VERGE_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// A host name the admin API answers to besides IP addresses and
    /// `localhost` (repeatable); others are refused, against DNS
    /// rebinding.
    #[arg(long = "admin-host")]
    admin_hosts: Vec<String>,
    #[command(flatten)]
    connections: ConnectionArgs,
}

impl ListenArgs {
    fn server_options(self, data_dir: &Path, index: Option<IndexPage>) -> Result<ServerOptions> {
        Ok(ServerOptions {
            listen: self.listen,
            admin: Some(AdminOptions {
                listen: self.admin_listen,
                token: token::host_token(data_dir, self.admin_token)?,
                hosts: self.admin_hosts,
            }),
            index,
            limits: self.connections.limits(),
        })
    }
}

/// Limits on the connections a host accepts.
#[derive(Args, Debug, Clone, Copy)]
struct ConnectionArgs {
    /// Connections each listener keeps open at once; more are closed at
    /// once (WebSockets count separately, see --max-websockets).
    #[arg(long, default_value_t = ConnectionLimits::default().max_connections)]
    max_connections: usize,
    /// Connections one client address may keep open at once.
    #[arg(long, default_value_t = ConnectionLimits::default().max_connections_per_ip)]
    max_connections_per_ip: usize,
    /// Seconds a client may take to send a request's headers, on a new or
    /// an idle keep-alive connection.
    #[arg(long, default_value_t = ConnectionLimits::default().header_timeout.as_secs_f64())]
    header_timeout_secs: f64,
}

impl ConnectionArgs {
    fn limits(self) -> ConnectionLimits {
        ConnectionLimits {
            max_connections: self.max_connections.max(1),
            max_connections_per_ip: self.max_connections_per_ip.max(1),
            header_timeout: std::time::Duration::from_secs_f64(self.header_timeout_secs.max(0.001)),
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
    /// Requests of one worker that may run at once; more get a 503 with
    /// retry-after, so one stuck worker cannot take every instance slot.
    #[arg(long, default_value_t = EngineOptions::default().max_instances_per_worker)]
    max_instances_per_worker: u32,
    /// The most memory a worker may configure, in MiB.
    #[arg(long, default_value_t = EngineOptions::default().max_memory_mb)]
    max_memory_mb: u64,
    /// What all instances' memory and buffered request bodies may add up
    /// to, in MiB [default: three quarters of the machine's memory].
    #[arg(long)]
    memory_budget_mb: Option<u64>,
    /// Seconds without events after which an object is evicted (its
    /// WebSockets and data stay).
    #[arg(long, default_value_t = ObjectOptions::default().idle_timeout.as_secs_f64())]
    object_idle_secs: f64,
    /// The largest WebSocket message a client may send, in bytes (bigger
    /// ones close the socket with 1009).
    #[arg(long, default_value_t = SocketLimits::default().max_message_bytes)]
    max_websocket_message: usize,
    /// WebSockets one object may hold; more are closed with 1013.
    #[arg(long, default_value_t = SocketLimits::default().max_per_object)]
    max_websockets_per_object: usize,
    /// WebSockets the whole host may hold; more are closed with 1013.
    #[arg(long, default_value_t = SocketLimits::default().max_total)]
    max_websockets: usize,
    /// MiB waiting to go out to WebSocket clients, all together; a socket
    /// whose send would pass it is closed with 1013.
    #[arg(long, default_value_t = SocketLimits::default().max_buffered_bytes >> 20)]
    max_websocket_buffer_mb: usize,
}

impl EngineArgs {
    fn engine(&self) -> EngineOptions {
        let defaults = EngineOptions::default();
        EngineOptions {
            max_instances: self.max_instances,
            max_objects: self.max_objects,
            max_memory_mb: self.max_memory_mb,
            max_instances_per_worker: self.max_instances_per_worker,
            memory_budget_mb: self.memory_budget_mb.unwrap_or(defaults.memory_budget_mb),
        }
    }

    fn objects(&self) -> ObjectOptions {
        ObjectOptions {
            idle_timeout: std::time::Duration::from_secs_f64(self.object_idle_secs.max(0.001)),
            sockets: SocketLimits {
                max_message_bytes: self.max_websocket_message.max(1),
                max_per_object: self.max_websockets_per_object,
                max_total: self.max_websockets,
                max_buffered_bytes: self.max_websocket_buffer_mb << 20,
            },
            ..ObjectOptions::default()
        }
    }
}

/// Lifts the soft limit on open files to the hard one, and returns the
/// limit in force: every connection, WebSocket and open object database is
/// a descriptor, and the usual soft limit (1,024) would stop a host long
/// before its own caps do. Processes started afterwards inherit it.
pub fn raise_open_files_limit() -> libc::rlim_t {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct given.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                tracing::warn!("cannot raise the open-files limit to {}", limit.rlim_max);
                libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
            }
        }
    }
    limit.rlim_cur
}

/// Runs the command line; `main` only sets up logging and the runtime.
pub async fn run() -> Result<()> {
    let cli = Cli::parse();
    let _log = init_logging(cli.log_format);
    raise_open_files_limit();
    match cli.command {
        Command::Up(args) => up::run(args).await,
        Command::Serve(args) => serve::run(args).await,
        Command::Dev(args) => dev::run(args).await,
        Command::Deploy(args) => deploy::run(args).await,
        Command::Build(args) => build::run(args),
        Command::New(args) => new::run(args),
        Command::Secret(command) => secret::run(command).await,
        Command::Workers(args) => workers::list(args).await,
        Command::Versions(args) => workers::versions(args).await,
        Command::Activate(args) => workers::activate(args).await,
        Command::Rollback(args) => workers::rollback(args).await,
        Command::Delete(args) => workers::delete(args).await,
        Command::Status(args) => status::run(args).await,
        Command::Cluster(command) => cluster::run(command).await,
        Command::Objects(command) => objects::run(command).await,
        Command::D1(command) => d1::run(command).await,
        Command::Tail(args) => tail::run(args).await,
        Command::Kv(command) => kv::run(command).await,
        Command::R2(command) => r2::run(command).await,
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

/// Where this source tree's pieces are, for commands that use them (up).
/// Overridable by flags for a relocated binary.
fn source_tree() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}
