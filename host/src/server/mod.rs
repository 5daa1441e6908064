//! The HTTP side of the host: the front door that serves workers, and the
//! admin API on its own listener.

mod admin;
mod auth;
mod errors;
mod front_door;
mod index;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

pub use index::{IndexEntry, IndexPage};

use crate::platform::Platform;

/// Where and how to listen.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    pub listen: SocketAddr,
    /// `None` runs without an admin API (as `verge dev` does).
    pub admin_listen: Option<SocketAddr>,
    /// Required for a non-loopback admin address.
    pub admin_token: Option<String>,
    /// A page at `/` listing workers, for `verge up`.
    pub index: Option<IndexPage>,
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
        if let Some(admin) = options.admin_listen
            && !admin.ip().is_loopback()
            && options.admin_token.is_none()
        {
            bail!(
                "refusing to open the admin API on {admin} without a token: \
                 set VERGE_ADMIN_TOKEN, or listen on a loopback address"
            );
        }
        let (stop, stopped) = watch::channel(false);
        let mut tasks = JoinSet::new();

        let listener = bind(options.listen).await?;
        let addr = listener.local_addr()?;
        let front = front_door::router(platform.clone(), options.index.map(Arc::new));
        tasks.spawn(run(listener, front, stopped.clone()));

        let admin_addr = match options.admin_listen {
            Some(admin_listen) => {
                let listener = bind(admin_listen).await?;
                let admin_addr = listener.local_addr()?;
                let admin = admin::router(platform.clone(), options.admin_token);
                tasks.spawn(run(listener, admin, stopped));
                Some(admin_addr)
            }
            None => None,
        };
        Ok(Self {
            addr,
            admin_addr,
            stop,
            tasks,
            platform,
        })
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

async fn bind(addr: SocketAddr) -> Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))
}

async fn run(
    listener: TcpListener,
    router: axum::Router,
    mut stopped: watch::Receiver<bool>,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt;
    // Without TCP_NODELAY a small WebSocket frame or response waits for
    // the client's delayed ACK: tens of milliseconds.
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!("cannot set TCP_NODELAY: {e}");
        }
    });
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        let _ = stopped.wait_for(|stop| *stop).await;
    })
    .await
}
