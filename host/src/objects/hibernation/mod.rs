//! WebSockets accepted through the hibernation API.
//!
//! The host, not the object's instance, owns every accepted socket: the
//! [`SocketHub`] keeps each one's tags, attachment and outbound queue, and a
//! task per connection reads the client. So an object can be evicted (its
//! instance dropped, its database closed) or redeployed while its sockets
//! stay open; a message from a client is an event like any other, which
//! wakes the object with a fresh instance of the active version.
//!
//! How a socket gets here: the front door sees an upgrade request, registers
//! it under a random token and passes the token to the worker in the
//! `verge-websocket` header. The worker forwards the request to an object,
//! which claims the token with `accept` and answers 101 with the same
//! header. Only then does the front door complete the handshake and hand the
//! connection to [`serve_connection`].

mod connection;
mod hub;

pub(crate) use connection::serve_connection;
pub use hub::SocketLimits;
pub(crate) use hub::{
    Outgoing, SocketHub, SocketId, UPGRADE_HEADER, close_frame, frame_size, validate_close,
};
