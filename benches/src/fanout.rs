//! The WebSocket load client of the chat-room benches: joins many sockets
//! to one room, then broadcasts through the room and times every delivery.
//!
//! It speaks the chat-room protocol (guest-examples/chat-room, and
//! benches/peers/workerd/chat.js): a socket joins with
//! `GET /chat/<room>?name=<name>`, sends `{"message": "..."}`, and receives
//! `{"type": "history" | "join" | "message" | "leave", ...}`.

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use serde::de::IgnoredAny;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::{Instant as Deadline, timeout_at};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async_with_config};

use crate::samples::Samples;

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Handshakes in flight at once while joining: enough to join quickly, few
/// enough that no listen backlog overflows.
const CONCURRENT_HANDSHAKES: usize = 64;

/// The client's read buffer per socket. tungstenite zeroes the whole buffer
/// before every read (128 KiB by default): a small one keeps the client's
/// CPU and memory out of the server's way on a shared machine. Frames larger
/// than this still arrive whole.
const READ_BUFFER_BYTES: usize = 8 * 1024;

/// What the room sends, as far as the bench reads it.
#[derive(Deserialize)]
struct Event<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    /// Who is online, on joins: only the count matters.
    #[serde(default)]
    online: Vec<IgnoredAny>,
    #[serde(default, borrow)]
    message: Option<Cow<'a, str>>,
}

/// Sockets joined to one room, each having seen every join.
pub struct Room {
    sockets: Vec<Socket>,
}

impl Room {
    /// Connects `count` sockets to `room` on `addr` (`host:port`), named
    /// `bench0`, `bench1`..., and waits until every socket has seen the join
    /// that lists all of them: only then are the join broadcasts drained.
    pub async fn join(addr: &str, room: &str, count: usize, timeout: Duration) -> Result<Self> {
        let deadline = Deadline::now() + timeout;
        let handshakes = Arc::new(Semaphore::new(CONCURRENT_HANDSHAKES));
        let mut joining = JoinSet::new();
        for n in 0..count {
            let url = format!("ws://{addr}/chat/{room}?name=bench{n}");
            let handshakes = handshakes.clone();
            joining.spawn(async move {
                let permit = handshakes.acquire_owned().await?;
                let config = WebSocketConfig::default().read_buffer_size(READ_BUFFER_BYTES);
                // No Nagle: a broadcast's send time is when it leaves.
                let connected = connect_async_with_config(&url, Some(config), true).await;
                let (socket, _) = connected.with_context(|| {
                    format!("connecting {url} (is the open-files limit, `ulimit -n`, above the socket count?)")
                })?;
                drop(permit);
                timeout_at(deadline, until_everyone_joined(socket, count))
                    .await
                    .with_context(|| format!("{url} did not see all {count} joins in {timeout:?}"))?
            });
        }
        let mut sockets = Vec::with_capacity(count);
        while let Some(joined) = joining.join_next().await {
            sockets.push(joined??);
        }
        Ok(Self { sockets })
    }

    /// Sends `ping` on every socket and waits for each `pong`: the sockets
    /// are open, and the host answers them (the chat room sets `ping` →
    /// `pong` as its auto-response, so the object stays asleep).
    pub async fn ping_all(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Deadline::now() + timeout;
        for socket in &mut self.sockets {
            socket.send(Message::text("ping")).await?;
        }
        for socket in &mut self.sockets {
            timeout_at(deadline, async {
                while text(socket).await? != "pong" {}
                anyhow::Ok(())
            })
            .await
            .context("no pong in time")??;
        }
        Ok(())
    }

    /// Sends `plan.count` messages through the room and receives every
    /// broadcast on every socket. The sockets stay open: closing them would
    /// make the room broadcast leaves.
    pub async fn broadcast(&mut self, plan: &Broadcasts) -> Result<Fanout> {
        let sockets = self.sockets.len();
        anyhow::ensure!(
            (1..=sockets).contains(&plan.senders),
            "{} senders for {sockets} sockets",
            plan.senders
        );
        let progress = Arc::new(Progress {
            delivered: (0..plan.count).map(|_| AtomicUsize::new(0)).collect(),
            sockets,
            window: Semaphore::new(plan.window),
        });
        let deadline = Deadline::now() + plan.timeout;
        let clock = Instant::now();
        let (mut sinks, streams): (Vec<_>, Vec<_>) =
            self.sockets.drain(..).map(StreamExt::split).unzip();
        let mut receiving = JoinSet::new();
        for (socket, stream) in streams.into_iter().enumerate() {
            let receiver = Receiver {
                socket,
                stream,
                latencies: Vec::with_capacity(plan.count),
                last: clock,
            };
            receiving.spawn(receiver.run(plan.count, progress.clone(), clock, deadline));
        }
        let senders = &mut sinks[..plan.senders];
        if let Ok(sent) = timeout_at(deadline, send(senders, plan.count, &progress, clock)).await {
            sent?;
        }
        // Else deliveries that never came kept the window shut until the
        // deadline: the shortfall shows as lost deliveries.

        let mut receivers = Vec::with_capacity(sockets);
        while let Some(receiver) = receiving.join_next().await {
            receivers.push(receiver??);
        }
        receivers.sort_by_key(|r| r.socket);
        let mut latencies = Vec::with_capacity(sockets * plan.count);
        let mut last_delivery = clock;
        for (receiver, sink) in receivers.into_iter().zip(sinks) {
            latencies.extend(receiver.latencies);
            last_delivery = last_delivery.max(receiver.last);
            let socket = receiver
                .stream
                .reunite(sink)
                .map_err(|_| anyhow::anyhow!("a socket's halves do not match"))?;
            self.sockets.push(socket);
        }
        Ok(Fanout {
            sockets,
            broadcasts: plan.count,
            delivered: latencies.len(),
            elapsed: last_delivery - clock,
            latency: latencies.into_iter().collect(),
        })
    }
}

/// How a fan-out run sends.
pub struct Broadcasts {
    /// Messages sent in all; each is broadcast to every socket.
    pub count: usize,
    /// Sockets the messages are sent from, in turn.
    pub senders: usize,
    /// Broadcasts sent and not yet delivered to every socket, at most.
    pub window: usize,
    /// When to stop waiting for deliveries that did not come.
    pub timeout: Duration,
}

/// What one fan-out run measured.
pub struct Fanout {
    pub sockets: usize,
    pub broadcasts: usize,
    /// Broadcasts received, over all sockets.
    pub delivered: usize,
    /// From the start of sending to the last delivery.
    pub elapsed: Duration,
    /// Send → receive, per delivery.
    pub latency: Samples,
}

impl Fanout {
    /// Every broadcast on every socket.
    pub fn expected(&self) -> usize {
        self.sockets * self.broadcasts
    }

    pub fn lost(&self) -> usize {
        self.expected() - self.delivered
    }

    pub fn deliveries_per_sec(&self) -> f64 {
        self.delivered as f64 / self.elapsed.as_secs_f64()
    }
}

/// Deliveries per broadcast, and the send window they reopen.
struct Progress {
    delivered: Vec<AtomicUsize>,
    sockets: usize,
    window: Semaphore,
}

impl Progress {
    fn delivered(&self, broadcast: usize) {
        if self.delivered[broadcast].fetch_add(1, Ordering::AcqRel) + 1 == self.sockets {
            self.window.add_permits(1);
        }
    }
}

/// Sends `count` messages from `senders` in turn, each carrying its
/// broadcast number and its send time on `clock`, as `"<n>:<ns>"`.
async fn send(
    senders: &mut [SplitSink<Socket, Message>],
    count: usize,
    progress: &Progress,
    clock: Instant,
) -> Result<()> {
    for broadcast in 0..count {
        // A permit per broadcast, returned when its last delivery arrives.
        progress.window.acquire().await?.forget();
        let sent = clock.elapsed().as_nanos();
        let text = serde_json::json!({ "message": format!("{broadcast}:{sent}") }).to_string();
        let sender = broadcast % senders.len();
        senders[sender].send(Message::text(text)).await?;
    }
    Ok(())
}

/// One socket's receiving half during a fan-out, and what it received.
struct Receiver {
    /// The socket's place in the room, to reunite it with its sending half.
    socket: usize,
    stream: SplitStream<Socket>,
    /// Send → receive of each delivery.
    latencies: Vec<Duration>,
    /// When the last delivery arrived.
    last: Instant,
}

impl Receiver {
    /// Receives broadcasts until all `count` came or the deadline passed.
    async fn run(
        mut self,
        count: usize,
        progress: Arc<Progress>,
        clock: Instant,
        deadline: Deadline,
    ) -> Result<Self> {
        while self.latencies.len() < count {
            let Ok(Some(frame)) = timeout_at(deadline, self.stream.next()).await else {
                break;
            };
            let Message::Text(text) = frame? else {
                continue;
            };
            let received = clock.elapsed();
            let event: Event = serde_json::from_str(&text)?;
            if event.kind != "message" {
                continue;
            }
            let (broadcast, sent) = event
                .message
                .as_deref()
                .and_then(|m| m.split_once(':'))
                .with_context(|| format!("not a bench message: {text}"))?;
            progress.delivered(broadcast.parse()?);
            self.latencies
                .push(received.saturating_sub(Duration::from_nanos(sent.parse()?)));
            self.last = Instant::now();
        }
        Ok(self)
    }
}

/// Reads until the join that lists `everyone`, and gives the socket back.
async fn until_everyone_joined(mut socket: Socket, everyone: usize) -> Result<Socket> {
    loop {
        let text = text(&mut socket).await?;
        let event: Event = serde_json::from_str(&text)?;
        if event.kind == "join" && event.online.len() == everyone {
            return Ok(socket);
        }
    }
}

/// The next text message on `socket`.
async fn text(socket: &mut Socket) -> Result<String> {
    loop {
        match socket.next().await.context("the socket closed")?? {
            Message::Text(text) => return Ok(text.to_string()),
            Message::Close(frame) => bail!("the server closed the socket: {frame:?}"),
            _ => continue,
        }
    }
}
