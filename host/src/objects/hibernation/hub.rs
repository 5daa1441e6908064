//! The registry of hibernatable WebSockets: every accepted socket of
//! every object, with its tags, attachment and outbound queue, and the
//! upgrades on their way through a worker to an object.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message as Frame, Utf8Bytes};
use tokio::sync::mpsc;

use crate::bindings::verge::platform::websocket::{Error as WsError, Message as WsMessage};
use crate::clock::unix_now_ms;
use crate::objects::ObjectKey;

/// The header carrying an upgrade's token from the front door to the object
/// and back.
pub(crate) const UPGRADE_HEADER: http::HeaderName =
    http::HeaderName::from_static("verge-websocket");

/// A socket's id, also its upgrade token: random, so one object cannot
/// guess its way to another's connection.
pub(crate) type SocketId = u64;

/// Per-socket limits Cloudflare documents, kept here too.
const MAX_TAGS: usize = 10;
const MAX_TAG_BYTES: usize = 256;
const MAX_ATTACHMENT_BYTES: usize = 16 * 1024;
/// Bytes waiting to go out to one client, past which the host gives up on
/// it (close 1008): a client that stops reading must not make the host
/// hold every broadcast for it.
const MAX_BACKLOG_BYTES: usize = 16 << 20;

/// Limits on sockets, host-wide.
#[derive(Debug, Clone, Copy)]
pub struct SocketLimits {
    /// Largest message a client may send (bigger ones close with 1009) or
    /// an object may send.
    pub max_message_bytes: usize,
    pub max_per_object: usize,
    /// Sockets open on the whole host; past it new ones close with 1013.
    pub max_total: usize,
    /// Bytes waiting to go out to clients, all sockets together; a socket
    /// whose send would pass it is closed with 1013 rather than the host
    /// buffering without end.
    pub max_buffered_bytes: usize,
}

impl Default for SocketLimits {
    fn default() -> Self {
        Self {
            max_message_bytes: 1 << 20,
            max_per_object: 32_768,
            max_total: 50_000,
            max_buffered_bytes: 1 << 30,
        }
    }
}

/// Every accepted socket of every object, and the upgrades in flight.
pub(crate) struct SocketHub {
    limits: SocketLimits,
    state: Mutex<Hub>,
    /// Bytes waiting to go out, every socket together.
    buffered: Arc<AtomicUsize>,
    /// Connection tasks running, so a shutdown can wait for their close
    /// frames to go out.
    pub(super) connections: AtomicUsize,
}

#[derive(Default)]
struct Hub {
    upgrades: HashMap<SocketId, Upgrade>,
    objects: HashMap<ObjectKey, ObjectSockets>,
    /// Accept order, so sockets list oldest first.
    accepted: u64,
    /// Open sockets, all objects together.
    open: usize,
}

impl Hub {
    /// Marks a socket closed: it no longer counts, lists or receives.
    fn set_closed(&mut self, key: &ObjectKey, id: SocketId) {
        if let Some(sockets) = self.objects.get_mut(key)
            && let Some(socket) = sockets.sockets.get_mut(&id)
            && socket.open
        {
            socket.open = false;
            sockets.open -= 1;
            self.open -= 1;
        }
    }
}

/// An upgrade request on its way through the worker to an object.
#[derive(Default)]
struct Upgrade {
    accepted_by: Option<ObjectKey>,
    /// What the object sent before the client was connected.
    outbound: Option<Queue>,
    /// An object refused it for holding too many sockets already.
    over_limit: bool,
}

#[derive(Default)]
struct ObjectSockets {
    sockets: HashMap<SocketId, Socket>,
    /// How many of them are open.
    open: usize,
    /// A request text and the response the host sends back by itself.
    auto_response: Option<(String, Utf8Bytes)>,
}

struct Socket {
    seq: u64,
    tags: Vec<String>,
    attachment: Option<Vec<u8>>,
    outbound: mpsc::UnboundedSender<Frame>,
    /// Bytes queued in `outbound`, not yet handed to the connection.
    backlog: Arc<SendBacklog>,
    /// False once the client closed or the object closed it: it no longer
    /// lists or receives, but its tags and attachment stay readable until
    /// the close event has run.
    open: bool,
    auto_response_at: Option<i64>,
}

/// A frame the object sent, held until its event commits.
pub(crate) type Outgoing = (SocketId, Frame);

/// A connection the front door may complete.
pub(crate) struct Accepted {
    pub(crate) key: ObjectKey,
    pub(crate) id: SocketId,
    pub(super) outbound: Queue,
}

/// The receiving end of a socket's outbound frames.
pub(super) struct Queue {
    pub(super) frames: mpsc::UnboundedReceiver<Frame>,
    pub(super) backlog: Arc<SendBacklog>,
}

/// Bytes queued for one socket, counted for it and for the host.
pub(super) struct SendBacklog {
    socket: AtomicUsize,
    host: Arc<AtomicUsize>,
}

impl SendBacklog {
    /// Counts `bytes` in, unless the socket or the host has too much
    /// waiting already: then why not, as a close reason.
    fn queue(&self, bytes: usize, host_max: usize) -> Result<(), &'static str> {
        if self.socket.load(Ordering::Acquire) + bytes > MAX_BACKLOG_BYTES {
            return Err("the client does not keep up");
        }
        if self.host.load(Ordering::Acquire) + bytes > host_max {
            return Err("the host has too much waiting to be sent");
        }
        self.socket.fetch_add(bytes, Ordering::AcqRel);
        self.host.fetch_add(bytes, Ordering::AcqRel);
        Ok(())
    }

    /// Counts `bytes` out: they went to the connection.
    pub(super) fn sent(&self, bytes: usize) {
        self.socket.fetch_sub(bytes, Ordering::AcqRel);
        self.host.fetch_sub(bytes, Ordering::AcqRel);
    }
}

impl Drop for SendBacklog {
    /// Whatever was still queued when the socket went is no longer held.
    fn drop(&mut self) {
        self.host
            .fetch_sub(*self.socket.get_mut(), Ordering::AcqRel);
    }
}

impl SocketHub {
    pub(crate) fn new(limits: SocketLimits) -> Self {
        Self {
            limits,
            state: Mutex::default(),
            buffered: Arc::default(),
            connections: AtomicUsize::new(0),
        }
    }

    pub(crate) fn limits(&self) -> SocketLimits {
        self.limits
    }

    fn hub(&self) -> std::sync::MutexGuard<'_, Hub> {
        // Every change below is a single map operation: a panic cannot
        // leave the hub half-updated.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers an upgrade request; returns its token.
    pub(crate) fn register_upgrade(&self) -> SocketId {
        let mut hub = self.hub();
        loop {
            let id = rand::random();
            if let std::collections::hash_map::Entry::Vacant(slot) = hub.upgrades.entry(id) {
                slot.insert(Upgrade::default());
                return id;
            }
        }
    }

    /// The object `key` takes over upgrade `id`.
    pub(crate) fn accept(
        &self,
        key: &ObjectKey,
        id: SocketId,
        tags: Vec<String>,
    ) -> Result<(), WsError> {
        if tags.len() > MAX_TAGS {
            return Err(WsError::Invalid(format!(
                "a socket takes at most {MAX_TAGS} tags"
            )));
        }
        if let Some(tag) = tags.iter().find(|t| t.len() > MAX_TAG_BYTES) {
            return Err(WsError::Invalid(format!(
                "tag {tag:?} is longer than {MAX_TAG_BYTES} bytes"
            )));
        }
        let mut hub = self.hub();
        let hub = &mut *hub;
        let upgrade = hub
            .upgrades
            .get_mut(&id)
            .filter(|u| u.accepted_by.is_none())
            .ok_or(WsError::NotAnUpgrade)?;
        let sockets = hub.objects.entry(key.clone()).or_default();
        if sockets.open >= self.limits.max_per_object {
            upgrade.over_limit = true;
            return Err(WsError::TooMany(self.limits.max_per_object as u32));
        }
        if hub.open >= self.limits.max_total {
            upgrade.over_limit = true;
            return Err(WsError::TooMany(self.limits.max_total as u32));
        }
        let (sender, frames) = mpsc::unbounded_channel();
        let backlog = Arc::new(SendBacklog {
            socket: AtomicUsize::new(0),
            host: self.buffered.clone(),
        });
        upgrade.accepted_by = Some(key.clone());
        upgrade.outbound = Some(Queue {
            frames,
            backlog: backlog.clone(),
        });
        hub.accepted += 1;
        hub.open += 1;
        sockets.open += 1;
        sockets.sockets.insert(
            id,
            Socket {
                seq: hub.accepted,
                tags,
                attachment: None,
                outbound: sender,
                backlog,
                open: true,
                auto_response_at: None,
            },
        );
        Ok(())
    }

    /// Ends upgrade `id`: the connection to serve when an object accepted
    /// it, `None` (and nothing left behind) when none did.
    pub(crate) fn finish_upgrade(&self, id: SocketId) -> Option<Accepted> {
        let upgrade = self.hub().upgrades.remove(&id)?;
        Some(Accepted {
            key: upgrade.accepted_by?,
            id,
            outbound: upgrade.outbound?,
        })
    }

    /// Whether an object refused upgrade `id` for its socket limit.
    pub(crate) fn over_limit(&self, id: SocketId) -> bool {
        self.hub().upgrades.get(&id).is_some_and(|u| u.over_limit)
    }

    /// Forgets an upgrade that will not complete, and the socket an object
    /// may have accepted for it.
    pub(crate) fn abandon_upgrade(&self, id: SocketId) {
        let mut hub = self.hub();
        if let Some(key) = hub.upgrades.remove(&id).and_then(|u| u.accepted_by) {
            remove_socket(&mut hub, &key, id);
        }
    }

    /// The object's open sockets (with `tag`, when given), oldest first.
    pub(crate) fn sockets(&self, key: &ObjectKey, tag: Option<&str>) -> Vec<SocketId> {
        let hub = self.hub();
        let Some(sockets) = hub.objects.get(key) else {
            return Vec::new();
        };
        let mut found: Vec<(u64, SocketId)> = sockets
            .sockets
            .iter()
            .filter(|(_, s)| s.open && tag.is_none_or(|tag| s.tags.iter().any(|t| t == tag)))
            .map(|(id, s)| (s.seq, *id))
            .collect();
        found.sort_unstable();
        found.into_iter().map(|(_, id)| id).collect()
    }

    /// Runs `read` on one of the object's sockets.
    fn with_socket<T>(
        &self,
        key: &ObjectKey,
        id: SocketId,
        read: impl FnOnce(&mut Socket) -> Result<T, WsError>,
    ) -> Result<T, WsError> {
        let mut hub = self.hub();
        let socket = hub
            .objects
            .get_mut(key)
            .and_then(|o| o.sockets.get_mut(&id))
            .ok_or(WsError::Closed)?;
        read(socket)
    }

    pub(crate) fn tags(&self, key: &ObjectKey, id: SocketId) -> Result<Vec<String>, WsError> {
        self.with_socket(key, id, |s| Ok(s.tags.clone()))
    }

    pub(crate) fn set_attachment(
        &self,
        key: &ObjectKey,
        id: SocketId,
        attachment: Vec<u8>,
    ) -> Result<(), WsError> {
        if attachment.len() > MAX_ATTACHMENT_BYTES {
            return Err(WsError::Invalid(format!(
                "an attachment is at most {MAX_ATTACHMENT_BYTES} bytes, this one is {}",
                attachment.len()
            )));
        }
        self.with_socket(key, id, |s| {
            s.attachment = Some(attachment);
            Ok(())
        })
    }

    pub(crate) fn attachment(
        &self,
        key: &ObjectKey,
        id: SocketId,
    ) -> Result<Option<Vec<u8>>, WsError> {
        self.with_socket(key, id, |s| Ok(s.attachment.clone()))
    }

    pub(crate) fn auto_response_timestamp(
        &self,
        key: &ObjectKey,
        id: SocketId,
    ) -> Result<Option<i64>, WsError> {
        self.with_socket(key, id, |s| Ok(s.auto_response_at))
    }

    pub(crate) fn set_auto_response(&self, key: &ObjectKey, pair: Option<(String, String)>) {
        let mut hub = self.hub();
        let sockets = hub.objects.entry(key.clone()).or_default();
        sockets.auto_response = pair.map(|(request, response)| (request, response.into()));
    }

    /// Checks that the object may send `message` on `id`, as a frame.
    pub(crate) fn frame(
        &self,
        key: &ObjectKey,
        id: SocketId,
        message: WsMessage,
    ) -> Result<Frame, WsError> {
        let size = match &message {
            WsMessage::Text(text) => text.len(),
            WsMessage::Binary(bytes) => bytes.len(),
        };
        if size > self.limits.max_message_bytes {
            return Err(WsError::TooLarge(self.limits.max_message_bytes as u32));
        }
        self.with_socket(key, id, |_| Ok(()))?;
        Ok(match message {
            WsMessage::Text(text) => Frame::Text(text.into()),
            WsMessage::Binary(bytes) => Frame::Binary(bytes.into()),
        })
    }

    /// Sends what an object's committed events sent, in order. A close
    /// ends the socket.
    pub(crate) fn deliver(&self, key: &ObjectKey, outgoing: Vec<Outgoing>) {
        let mut hub = self.hub();
        for (id, frame) in outgoing {
            let closing = matches!(frame, Frame::Close(_));
            let Some(socket) = hub
                .objects
                .get_mut(key)
                .and_then(|o| o.sockets.get_mut(&id))
            else {
                continue;
            };
            if socket.open {
                if let Err(reason) = socket
                    .backlog
                    .queue(frame_size(&frame), self.limits.max_buffered_bytes)
                {
                    tracing::warn!(object = %key, socket = id, "closing a WebSocket: {reason}");
                    // 1008 when the client is the cause; 1013 (try again
                    // later) when the host is.
                    let code = if reason.contains("client") {
                        1008
                    } else {
                        1013
                    };
                    let _ = socket.outbound.send(close_frame(code, reason));
                    hub.set_closed(key, id);
                    continue;
                }
                let _ = socket.outbound.send(frame);
            }
            if closing {
                remove_socket(&mut hub, key, id);
            }
        }
    }

    /// The response to `text` when it is the object's auto-response
    /// request (noting when it was sent).
    pub(super) fn auto_response(
        &self,
        key: &ObjectKey,
        id: SocketId,
        text: &str,
    ) -> Option<Utf8Bytes> {
        let mut hub = self.hub();
        let sockets = hub.objects.get_mut(key)?;
        let response = match &sockets.auto_response {
            Some((request, response)) if request == text => response.clone(),
            _ => return None,
        };
        if let Some(socket) = sockets.sockets.get_mut(&id) {
            socket.auto_response_at = Some(unix_now_ms());
        }
        Some(response)
    }

    pub(super) fn mark_closed(&self, key: &ObjectKey, id: SocketId) {
        self.hub().set_closed(key, id);
    }

    /// Forgets a socket (its connection is over).
    pub(crate) fn remove(&self, key: &ObjectKey, id: SocketId) {
        remove_socket(&mut self.hub(), key, id);
    }

    /// Forgets the auto-response of an object that left memory without
    /// sockets: its constructor or its next accept sets it again, and
    /// objects that once had one do not pile up here.
    pub(crate) fn forget_if_idle(&self, key: &ObjectKey) {
        let mut hub = self.hub();
        if hub.objects.get(key).is_some_and(|o| o.sockets.is_empty()) {
            hub.objects.remove(key);
        }
    }

    /// The objects holding open sockets, and how many each holds.
    pub(crate) fn open_by_object(&self) -> Vec<(ObjectKey, usize)> {
        self.hub()
            .objects
            .iter()
            .filter(|(_, sockets)| sockets.open > 0)
            .map(|(key, sockets)| (key.clone(), sockets.open))
            .collect()
    }

    /// Closes every socket of an object (it was deleted).
    pub(crate) fn close_object(&self, key: &ObjectKey, code: u16, reason: &str) {
        let sockets = {
            let mut hub = self.hub();
            let Some(sockets) = hub.objects.remove(key) else {
                return;
            };
            hub.open -= sockets.open;
            sockets
        };
        for socket in sockets.sockets.into_values() {
            let _ = socket.outbound.send(close_frame(code, reason));
        }
    }

    /// Closes every socket of every object in `namespace`.
    pub(crate) fn close_namespace(&self, namespace: &str, code: u16, reason: &str) {
        let keys: Vec<ObjectKey> = self
            .hub()
            .objects
            .keys()
            .filter(|k| &*k.namespace == namespace)
            .cloned()
            .collect();
        for key in keys {
            self.close_object(&key, code, reason);
        }
    }

    /// Closes every socket with 1001 (going away) and waits, up to
    /// `grace`, for the close frames to go out: the host is stopping.
    pub(crate) async fn close_all(&self, grace: Duration) {
        let keys: Vec<ObjectKey> = self.hub().objects.keys().cloned().collect();
        for key in keys {
            self.close_object(&key, 1001, "the host is shutting down");
        }
        let deadline = tokio::time::Instant::now() + grace;
        while self.connections.load(Ordering::Acquire) > 0 && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

fn remove_socket(hub: &mut Hub, key: &ObjectKey, id: SocketId) {
    hub.set_closed(key, id);
    if let Some(sockets) = hub.objects.get_mut(key) {
        sockets.sockets.remove(&id);
        if sockets.sockets.is_empty() && sockets.auto_response.is_none() {
            hub.objects.remove(key);
        }
    }
}

/// The payload bytes of a frame, as backlogs and outboxes count them.
pub(crate) fn frame_size(frame: &Frame) -> usize {
    match frame {
        Frame::Text(text) => text.len(),
        Frame::Binary(bytes) => bytes.len(),
        _ => 0,
    }
}

pub(crate) fn close_frame(code: u16, reason: &str) -> Frame {
    Frame::Close(Some(CloseFrame {
        code,
        reason: reason.into(),
    }))
}

/// Checks a close code and reason an object gave, as browsers do.
pub(crate) fn validate_close(code: u16, reason: &str) -> Result<(), WsError> {
    if code != 1000 && !(3000..=4999).contains(&code) {
        return Err(WsError::Invalid(format!(
            "close code {code} is not allowed: use 1000 or 3000-4999"
        )));
    }
    if reason.len() > 123 {
        return Err(WsError::Invalid(
            "a close reason is at most 123 bytes".into(),
        ));
    }
    Ok(())
}
