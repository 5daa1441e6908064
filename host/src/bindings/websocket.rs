//! `verge:platform/websocket`: the hibernation API. The sockets themselves
//! live in the host-wide hub (`objects/hibernation/`); sends and closes wait
//! in the event's outbox until it commits.

use super::verge::platform::websocket::{Error, Host, Message, Socket};
use crate::objects::{ObjectKey, SocketHub, close_frame, frame_size, validate_close};
use crate::runtime::HostState;

/// What one event may send in all, summed over its sockets: a 2 KiB
/// message to 32,768 sockets fits; a guest cannot make the host buffer
/// gigabytes before its commit.
const MAX_EVENT_SEND_BYTES: usize = 64 << 20;

impl HostState {
    /// The socket hub and the current object, or `unavailable` outside
    /// an object.
    fn hub(&self) -> Result<(&SocketHub, &ObjectKey), Error> {
        let scope = self.object.as_ref().ok_or(Error::Unavailable)?;
        Ok((self.worker().objects.sockets(), &scope.key))
    }

    /// Holds a frame until the event commits.
    fn stage(&mut self, ws: Socket, frame: axum::extract::ws::Message) -> Result<(), Error> {
        let scope = self.object.as_mut().ok_or(Error::Unavailable)?;
        let size = frame_size(&frame);
        if scope.outbox_bytes + size > MAX_EVENT_SEND_BYTES {
            return Err(Error::Invalid(format!(
                "one event may send at most {} MiB over its WebSockets: the host holds it all until the commit",
                MAX_EVENT_SEND_BYTES >> 20
            )));
        }
        scope.outbox_bytes += size;
        scope.outbox.push((ws, frame));
        Ok(())
    }
}

impl Host for HostState {
    fn accept(&mut self, upgrade: Socket, tags: Vec<String>) -> Result<(), Error> {
        let (hub, key) = self.hub()?;
        hub.accept(key, upgrade, tags)
    }

    fn sockets(&mut self, tag: Option<String>) -> Vec<Socket> {
        match self.hub() {
            Ok((hub, key)) => hub.sockets(key, tag.as_deref()),
            Err(_) => Vec::new(),
        }
    }

    fn tags(&mut self, ws: Socket) -> Result<Vec<String>, Error> {
        let (hub, key) = self.hub()?;
        hub.tags(key, ws)
    }

    fn send(&mut self, ws: Socket, message: Message) -> Result<(), Error> {
        let (hub, key) = self.hub()?;
        let frame = hub.frame(key, ws, message)?;
        self.stage(ws, frame)
    }

    fn close(&mut self, ws: Socket, code: u16, reason: String) -> Result<(), Error> {
        validate_close(code, &reason)?;
        self.stage(ws, close_frame(code, &reason))
    }

    fn set_attachment(&mut self, ws: Socket, attachment: Vec<u8>) -> Result<(), Error> {
        let (hub, key) = self.hub()?;
        hub.set_attachment(key, ws, attachment)
    }

    fn attachment(&mut self, ws: Socket) -> Result<Option<Vec<u8>>, Error> {
        let (hub, key) = self.hub()?;
        hub.attachment(key, ws)
    }

    fn set_auto_response(&mut self, pair: Option<(String, String)>) {
        if let Ok((hub, key)) = self.hub() {
            hub.set_auto_response(key, pair);
        }
    }

    fn auto_response_timestamp(&mut self, ws: Socket) -> Result<Option<i64>, Error> {
        let (hub, key) = self.hub()?;
        hub.auto_response_timestamp(key, ws)
    }
}
