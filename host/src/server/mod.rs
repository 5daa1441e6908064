//! The HTTP side of the host: the front door that serves workers, and the
//! admin API on its own listener.

mod admin;
mod admin_d1;
mod admin_kv;
mod admin_r2;
mod auth;
mod drain;
mod errors;
mod front_door;
mod index;
mod listener;
mod observe;
mod peers;
mod scheduled;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

pub use index::{ExampleRequest, IndexEntry, IndexPage};
pub use listener::ConnectionLimits;

use crate::platform::Platform;

/// Where and how to listen.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    pub listen: SocketAddr,
    /// The admin API: where it listens, and the token it requires.
    pub admin: Option<AdminOptions>,
    /// A page at `/` listing workers, for `verge up`.
    pub index: Option<IndexPage>,
    pub limits: ConnectionLimits,
}

/// The admin API's listener. It always requires a token.
#[derive(Debug, Clone)]
pub struct AdminOptions {
    pub listen: SocketAddr,
    pub token: String,
    /// Host names clients may address it by besides its own address and
    /// `localhost` (anything else is refused, against DNS rebinding).
    pub hosts: Vec<String>,
}

/// A running server. Dropping it does not stop it; call
/// [`Server::shutdown`].
pub struct Server {
    addr: SocketAddr,
    admin_addr: Option<SocketAddr>,
    stop: watch::Sender<bool>,
    tasks: JoinSet<std::io::Result<()>>,
    platform: Arc<Platform>,
}

/// How long a shutdown waits for WebSocket close frames to go out.
const SOCKET_CLOSE_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

impl Server {
    /// Binds the listeners and starts serving.
    pub async fn start(platform: Arc<Platform>, options: ServerOptions) -> Result<Self> {
        if let Some(admin) = &options.admin
            && admin.token.len() < MIN_TOKEN_LEN
        {
            bail!("the admin token must be at least {MIN_TOKEN_LEN} characters long");
        }
        let (stop, stopped) = watch::channel(false);
        let mut tasks = JoinSet::new();

        let listener = bind(options.listen, "--listen").await?;
        let addr = listener.local_addr()?;
        let admin_listener = match &options.admin {
            Some(admin) => Some(bind(admin.listen, "--admin-listen").await?),
            None => None,
        };
        let admin_addr = admin_listener
            .as_ref()
            .map(TcpListener::local_addr)
            .transpose()?;
        // Guests' outbound requests may never reach the host itself.
        platform.protect_listeners(std::iter::once(addr).chain(admin_addr));

        let front = front_door::router(platform.clone(), options.index.map(Arc::new));
        tasks.spawn(listener::serve(
            listener,
            front,
            options.limits,
            stopped.clone(),
        ));
        if let (Some(listener), Some(admin)) = (admin_listener, options.admin) {
            let router = admin::router(platform.clone(), admin);
            tasks.spawn(listener::serve(listener, router, options.limits, stopped));
        }
        Ok(Self {
            addr,
            admin_addr,
            stop,
            tasks,
            platform,
        })
    }

    /// Serves the cluster listener (`verge serve --cluster`) on
    /// `listener`, until the server stops.
    pub fn serve_peers(&mut self, listener: TcpListener, cluster: Arc<crate::cluster::Cluster>) {
        // Guests' outbound requests may not reach it either.
        if let Ok(addr) = listener.local_addr() {
            self.platform.protect_listeners([addr]);
        }
        let router = peers::router(self.platform.clone(), cluster);
        let limits = ConnectionLimits {
            // Peers multiplex many calls over few connections; the
            // per-address cap is for strangers, and peers are not.
            max_connections_per_ip: ConnectionLimits::default().max_connections,
            ..ConnectionLimits::default()
        };
        self.tasks.spawn(listener::serve(
            listener,
            router,
            limits,
            self.stop.subscribe(),
        ));
    }

    /// The front door's bound address (useful after binding port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// Stops accepting connections, lets in-flight requests finish, closes
    /// every WebSocket with 1001 (going away), and returns once both
    /// listeners are closed.
    pub async fn shutdown(mut self) -> Result<()> {
        let _ = self.stop.send(true);
        self.platform
            .objects()
            .sockets()
            .close_all(SOCKET_CLOSE_GRACE)
            .await;
        self.join().await
    }

    /// Serves until `signal` completes (then shuts down gracefully) or a
    /// listener fails.
    pub async fn run_until(mut self, signal: impl Future<Output = ()>) -> Result<()> {
        tokio::select! {
            () = signal => self.shutdown().await,
            Some(result) = self.tasks.join_next() => {
                let _ = self.stop.send(true);
                result.context("server task panicked")?.context("server failed")?;
                self.join().await
            }
        }
    }

    async fn join(&mut self) -> Result<()> {
        while let Some(result) = self.tasks.join_next().await {
            result
                .context("server task panicked")?
                .context("server failed")?;
        }
        Ok(())
    }
}

/// Binds a listener; a taken address names the flag that picks another.
async fn bind(addr: SocketAddr, flag: &str) -> Result<TcpListener> {
    match TcpListener::bind(addr).await {
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => bail!(
            "{addr} is already in use by another process: choose another address with {flag} (port 0 picks a free one)"
        ),
        bound => bound.with_context(|| format!("binding {addr}")),
    }
}

/// The shortest admin token accepted: a guessable one protects nothing.
const MIN_TOKEN_LEN: usize = 16;
