//! One accepted WebSocket connection, served until it ends: client
//! messages become the object's events (or get the host's auto-response),
//! what the object sends goes out, and the end becomes a close or error
//! event.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::extract::ws::{Message as Frame, WebSocket};
use futures::{SinkExt, StreamExt};
use tokio::sync::Semaphore;

use super::hub::{Accepted, Queue, close_frame, frame_size};
use crate::bindings::verge::platform::websocket::Message as WsMessage;
use crate::objects::ObjectSystem;
use crate::objects::mailbox::{CallPath, Event, await_reply};

/// Messages of one connection waiting for the object at once; past this
/// the host stops reading the client (TCP pushes back on it).
const IN_FLIGHT_PER_SOCKET: usize = 64;
/// How long a socket event may wait for the object.
const EVENT_TIMEOUT: Duration = Duration::from_secs(60);

/// How a connection ended.
enum Ending {
    /// The client sent a close frame.
    ClientClosed { code: u16, reason: String },
    /// The object closed it, or it was deleted.
    ObjectClosed,
    /// The connection dropped without a close frame.
    Dropped,
    /// A message over the limit, or a protocol error.
    Failed {
        error: String,
        code: u16,
        reason: &'static str,
    },
}

/// Serves one accepted connection until it ends: client messages become
/// the object's events (answered by the host itself when they match the
/// auto-response), and what the object sends goes out.
pub(crate) async fn serve_connection(
    system: Arc<ObjectSystem>,
    socket: WebSocket,
    accepted: Accepted,
) {
    let Accepted {
        key,
        id,
        outbound: Queue {
            frames: mut outbound,
            backlog,
        },
    } = accepted;
    let hub = system.sockets();
    let _counted = Counted::new(&hub.connections);
    let (mut sink, mut stream) = socket.split();
    let in_flight = Arc::new(Semaphore::new(IN_FLIGHT_PER_SOCKET));
    let ending = loop {
        tokio::select! {
            frame = outbound.recv() => {
                let Some(frame) = frame else { break Ending::ObjectClosed };
                let mut closing = matches!(frame, Frame::Close(_));
                backlog.sent(frame_size(&frame));
                let mut sent = sink.feed(frame).await;
                // Everything else already queued goes out with one flush.
                while sent.is_ok() && !closing {
                    let Ok(frame) = outbound.try_recv() else { break };
                    closing = matches!(frame, Frame::Close(_));
                    backlog.sent(frame_size(&frame));
                    sent = sink.feed(frame).await;
                }
                if sent.is_err() || sink.flush().await.is_err() {
                    break Ending::Dropped;
                }
                if closing {
                    break Ending::ObjectClosed;
                }
            }
            incoming = stream.next() => {
                let message = match incoming {
                    Some(Ok(Frame::Text(text))) => {
                        if let Some(response) = hub.auto_response(&key, id, &text) {
                            if sink.send(Frame::Text(response)).await.is_err() {
                                break Ending::Dropped;
                            }
                            continue;
                        }
                        WsMessage::Text(text.as_str().to_owned())
                    }
                    Some(Ok(Frame::Binary(bytes))) => WsMessage::Binary(bytes.to_vec()),
                    // Pings are answered by the protocol layer.
                    Some(Ok(Frame::Ping(_) | Frame::Pong(_))) => continue,
                    Some(Ok(Frame::Close(frame))) => {
                        let (code, reason) = frame.map_or((1005, String::new()), |f| {
                            (f.code, f.reason.as_str().to_owned())
                        });
                        break Ending::ClientClosed { code, reason };
                    }
                    Some(Err(error)) => break failure(error),
                    None => break Ending::Dropped,
                };
                let Ok(permit) = in_flight.clone().acquire_owned().await else {
                    break Ending::Dropped;
                };
                // Queued now, so messages reach the object in order; the
                // answer is awaited aside, holding a place in the window.
                let event = Event::WebSocketMessage { socket: id, message };
                let answer = system.enqueue(&key, None, event, CallPath::default());
                tokio::spawn(async move {
                    if let Err(e) = await_reply(answer, EVENT_TIMEOUT).await {
                        tracing::warn!(socket = id, "websocket-message failed: {e}");
                    }
                    drop(permit);
                });
            }
        }
    };
    let event = match ending {
        Ending::ObjectClosed => {
            hub.remove(&key, id);
            let _ = sink.close().await;
            return;
        }
        Ending::ClientClosed { code, reason } => {
            // Answer the client's close (the protocol layer queued the reply).
            let _ = sink.close().await;
            Event::WebSocketClose {
                socket: id,
                code,
                reason,
                was_clean: true,
            }
        }
        Ending::Dropped => Event::WebSocketClose {
            socket: id,
            code: 1006,
            reason: String::new(),
            was_clean: false,
        },
        Ending::Failed {
            error,
            code,
            reason,
        } => {
            let _ = sink.send(close_frame(code, reason)).await;
            let _ = sink.close().await;
            Event::WebSocketError { socket: id, error }
        }
    };
    hub.mark_closed(&key, id);
    // Messages still on their way run before the close event.
    let _ = in_flight.acquire_many(IN_FLIGHT_PER_SOCKET as u32).await;
    if let Err(e) = system
        .call(key.clone(), None, event, CallPath::default(), EVENT_TIMEOUT)
        .await
    {
        tracing::warn!(socket = id, "websocket close event failed: {e}");
    }
    hub.remove(&key, id);
}

/// Counts a running connection task for as long as it lives.
struct Counted<'a>(&'a AtomicUsize);

impl<'a> Counted<'a> {
    fn new(counter: &'a AtomicUsize) -> Self {
        counter.fetch_add(1, Ordering::AcqRel);
        Self(counter)
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What a read error means for the client and the object.
fn failure(error: axum::Error) -> Ending {
    use tungstenite::error::{CapacityError, Error};
    let inner = error.into_inner();
    match inner.downcast_ref::<Error>() {
        Some(Error::Capacity(CapacityError::MessageTooLong { size, max_size })) => Ending::Failed {
            error: format!("message of {size} bytes is over the limit of {max_size}"),
            code: 1009,
            reason: "message too big",
        },
        Some(Error::ConnectionClosed | Error::AlreadyClosed | Error::Io(_)) => Ending::Dropped,
        Some(Error::Protocol(tungstenite::error::ProtocolError::ResetWithoutClosingHandshake)) => {
            Ending::Dropped
        }
        _ => Ending::Failed {
            error: format!("protocol error: {inner}"),
            code: 1002,
            reason: "protocol error",
        },
    }
}
