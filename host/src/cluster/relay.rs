//! WebSockets to objects another host owns.
//!
//! A WebSocket upgrade a worker passes to an object on another host goes
//! there as a WebSocket of its own: `GET /objects/{namespace}/{id}/socket`
//! on the owner's cluster listener, carrying the fetch event. The owner
//! runs the event; when the object accepts, the owner holds that peer
//! connection exactly as it would hold a client's (with hibernation), and
//! this host relays frames between its client and the peer connection.
//! When either end goes away the other is closed: a client whose object's
//! host died sees 1001 and reconnects, reaching the object's new owner.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message as ClientFrame, WebSocket};
use futures::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::CloseFrame as PeerClose;
use tokio_tungstenite::tungstenite::{self, Message as PeerFrame};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::forward::{CALL_HEADER, Delivery, Forwarded, REPLY_HEADER, reply_from_head};
use super::{Cluster, PEER_SECRET_HEADER};
use crate::bindings::Response;
use crate::objects::{ObjectError, ObjectKey, Reply, SocketId, UPGRADE_HEADER};

/// A connection to the owner of an object, for one client's WebSocket.
pub(crate) type PeerSocket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Peer connections made for upgrades still on their way back to the
/// client, by this host's upgrade token.
#[derive(Default)]
pub(super) struct Relays {
    waiting: Mutex<HashMap<SocketId, PeerSocket>>,
}

impl Relays {
    fn waiting(&self) -> MutexGuard<'_, HashMap<SocketId, PeerSocket>> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Cluster {
    /// Runs an upgrade fetch (carrying this host's upgrade `token`) on the
    /// peer that owns `key`. When the object accepts, the answer is its
    /// 101 with `token` in it, and the peer connection waits for the front
    /// door to [take](Self::take_relay) it.
    pub(crate) async fn forward_upgrade(
        &self,
        address: &str,
        key: &ObjectKey,
        call: &Forwarded,
        token: SocketId,
        timeout: Duration,
    ) -> Delivery {
        let address = address.replacen("http://", "ws://", 1);
        let url = format!("{address}/objects/{}/{}/socket", key.namespace, key.id);
        let mut request = match url.into_client_request() {
            Ok(request) => request,
            Err(e) => return Delivery::Answered(Err(ObjectError::Internal(format!("{e}")))),
        };
        let headers = request.headers_mut();
        // Both are visible ASCII: the secret was checked when the host
        // joined, and the call head is base64.
        for (name, value) in [
            (PEER_SECRET_HEADER, self.options.secret.as_str()),
            (CALL_HEADER, call.head()),
        ] {
            headers.insert(name, value.parse().expect("a valid header value"));
        }
        let connected =
            tokio::time::timeout(timeout, tokio_tungstenite::connect_async(request)).await;
        let (head, body, socket) = match connected {
            Err(_) => return Delivery::Answered(Err(ObjectError::Timeout)),
            Ok(Ok((socket, response))) => (
                response.headers().get(REPLY_HEADER).cloned(),
                Vec::new(),
                Some(socket),
            ),
            // The owner answered without upgrading: the object refused.
            Ok(Err(tungstenite::Error::Http(response))) => {
                let head = response.headers().get(REPLY_HEADER).cloned();
                (head, response.into_body().unwrap_or_default(), None)
            }
            Ok(Err(tungstenite::Error::Io(e)))
                if e.kind() == std::io::ErrorKind::ConnectionRefused =>
            {
                return Delivery::NotThere(format!("{e}"));
            }
            Ok(Err(e)) => {
                return Delivery::Answered(Err(ObjectError::Internal(format!(
                    "the object's host {address} did not answer: {e}"
                ))));
            }
        };
        let Some(head) = head else {
            return Delivery::Answered(Err(ObjectError::Internal(format!(
                "the object's host {address} answered without a {REPLY_HEADER} header"
            ))));
        };
        let reply = match reply_from_head(&head, body) {
            Ok(Some(reply)) => reply,
            Ok(None) => return Delivery::NotThere(format!("{address} does not own it")),
            Err(e) => {
                return Delivery::Answered(Err(ObjectError::Internal(format!(
                    "the object's host {address} answered badly: {e:#}"
                ))));
            }
        };
        match (reply, socket) {
            (Ok(Reply::Fetch(response)), Some(socket)) => {
                self.relays.waiting().insert(token, socket);
                Delivery::Answered(Ok(Reply::Fetch(with_token(response, token))))
            }
            (reply, _) => Delivery::Answered(reply),
        }
    }

    /// The peer connection made for upgrade `token`, if any.
    pub(crate) fn take_relay(&self, token: SocketId) -> Option<PeerSocket> {
        self.relays.waiting().remove(&token)
    }
}

/// The object's 101, with this host's upgrade token in place of the
/// owner's: the front door completes the handshake by it.
fn with_token(mut response: Response, token: SocketId) -> Response {
    for (name, value) in &mut response.headers {
        if name.eq_ignore_ascii_case(UPGRADE_HEADER.as_str()) {
            *value = token.to_string();
        }
    }
    response
}

/// Carries frames both ways between a client and the object's host until
/// either closes.
pub(crate) async fn relay(client: WebSocket, peer: PeerSocket) {
    let (mut to_client, mut from_client) = client.split();
    let (mut to_peer, mut from_peer) = peer.split();
    let upstream = async {
        while let Some(Ok(frame)) = from_client.next().await {
            let Some(frame) = to_peer_frame(frame) else {
                continue;
            };
            if to_peer.send(frame).await.is_err() {
                break;
            }
        }
        let _ = to_peer.close().await;
    };
    let downstream = async {
        while let Some(Ok(frame)) = from_peer.next().await {
            let Some(frame) = to_client_frame(frame) else {
                continue;
            };
            if to_client.send(frame).await.is_err() {
                return;
            }
        }
        // The owner went away without a close of its own.
        let _ = to_client
            .send(ClientFrame::Close(Some(CloseFrame {
                code: 1001,
                reason: "the object's host went away; reconnect".into(),
            })))
            .await;
    };
    tokio::select! {
        () = upstream => {}
        () = downstream => {}
    }
}

fn to_peer_frame(frame: ClientFrame) -> Option<PeerFrame> {
    Some(match frame {
        ClientFrame::Text(text) => PeerFrame::Text(text.as_str().into()),
        ClientFrame::Binary(bytes) => PeerFrame::Binary(bytes),
        ClientFrame::Ping(bytes) => PeerFrame::Ping(bytes),
        ClientFrame::Pong(bytes) => PeerFrame::Pong(bytes),
        ClientFrame::Close(frame) => PeerFrame::Close(frame.map(|f| PeerClose {
            code: f.code.into(),
            reason: f.reason.as_str().into(),
        })),
    })
}

fn to_client_frame(frame: PeerFrame) -> Option<ClientFrame> {
    Some(match frame {
        PeerFrame::Text(text) => ClientFrame::Text(text.as_str().into()),
        PeerFrame::Binary(bytes) => ClientFrame::Binary(bytes),
        PeerFrame::Ping(bytes) => ClientFrame::Ping(bytes),
        PeerFrame::Pong(bytes) => ClientFrame::Pong(bytes),
        PeerFrame::Close(frame) => ClientFrame::Close(frame.map(|f| CloseFrame {
            code: f.code.into(),
            reason: f.reason.as_str().into(),
        })),
        PeerFrame::Frame(_) => return None,
    })
}
