//! Accepting connections, with the limits a server facing the open network
//! needs and `axum::serve` does not offer: caps on open connections, in
//! all and from one address (so one client cannot take them all), a
//! deadline for a request's headers (which also ends idle keep-alive
//! connections and slowloris clients), and a graceful stop.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tower::ServiceExt;

/// How a listener treats its connections.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Connections open at once; one more is closed as soon as it is
    /// accepted, until others end.
    pub max_connections: usize,
    /// Connections one client address may keep open at once.
    pub max_connections_per_ip: usize,
    /// How long a client may take to send a request's headers, counted
    /// from when the connection is ready for it: a new connection, or an
    /// idle keep-alive one.
    pub header_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            max_connections_per_ip: 1_000,
            header_timeout: Duration::from_secs(10),
        }
    }
}

/// How long a stop waits for requests in flight before closing their
/// connections anyway.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// Serves `router` on `listener` until `stopped` turns true.
pub(super) async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    mut stopped: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let stop = async move {
        let _ = stopped.wait_for(|stop| *stop).await;
    };
    tokio::pin!(stop);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let per_ip = Arc::new(PerAddress::default());
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(limits.header_timeout);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                // Out of descriptors, or a connection reset before accept:
                // the listener itself is fine. Back off a moment.
                Err(e) => {
                    tracing::warn!("accepting a connection failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::debug!(%peer, "refusing a connection: {} are open", limits.max_connections);
            drop(stream);
            continue;
        };
        let Some(from_peer) = per_ip.take(peer.ip(), limits.max_connections_per_ip) else {
            tracing::debug!(%peer, "refusing a connection: {} are open from that address", limits.max_connections_per_ip);
            drop(stream);
            continue;
        };
        // Without TCP_NODELAY a small WebSocket frame or response waits
        // for the client's delayed ACK: tens of milliseconds.
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!("cannot set TCP_NODELAY: {e}");
        }
        let router = router.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            router.clone().oneshot(request)
        });
        let (builder, watcher) = (builder.clone(), graceful.watcher());
        let header_timeout = limits.header_timeout;
        tokio::spawn(async move {
            // hyper's header timeout starts once it reads; a client that
            // connects and sends nothing would otherwise hold its slot.
            // (Readiness may be reported spuriously; a peeked byte may not.)
            let first_bytes =
                tokio::time::timeout(header_timeout, stream.peek(&mut [0u8; 1])).await;
            if matches!(first_bytes, Ok(Ok(1..))) {
                let connection = builder
                    .serve_connection_with_upgrades(TokioIo::new(stream), service)
                    .into_owned();
                if let Err(e) = watcher.watch(connection).await {
                    tracing::debug!(%peer, "connection ended: {e}");
                }
            } else {
                tracing::debug!(%peer, "closing a connection that sent nothing");
            }
            drop((slot, from_peer));
        });
    }
    drop(listener);
    if tokio::time::timeout(STOP_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("requests still running after {STOP_GRACE:?}; closing their connections");
    }
    Ok(())
}

/// Open connections per client address.
#[derive(Default)]
struct PerAddress(Mutex<HashMap<IpAddr, usize>>);

/// One connection counted for its address until dropped.
struct FromAddress {
    counts: Arc<PerAddress>,
    ip: IpAddr,
}

impl PerAddress {
    /// Counts one more connection from `ip`, unless it has `max` already.
    fn take(self: &Arc<Self>, ip: IpAddr, max: usize) -> Option<FromAddress> {
        let mut counts = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let count = counts.entry(ip).or_default();
        if *count >= max {
            return None;
        }
        *count += 1;
        Some(FromAddress {
            counts: self.clone(),
            ip,
        })
    }
}

impl Drop for FromAddress {
    fn drop(&mut self) {
        let mut counts = self.counts.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = counts.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}
