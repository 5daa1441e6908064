//! WebSockets with hibernation: an object accepts a socket, the host holds
//! the connection, and the object may sleep in between messages.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::__private::bindings::verge::platform::websocket as host;
use crate::{Error, Request, Response, Result, State};

/// The header that carries an upgrade from the host to the object and back.
const UPGRADE_HEADER: &str = "verge-websocket";

/// One WebSocket connection held by the host for this object.
///
/// It is a handle: cheap to copy, and valid across hibernation (the same
/// socket reaches a later instance of the object with the same handle).
///
/// ```no_run
/// use verge::{Env, Request, Response, Result, State, WebSocket, WebSocketMessage};
///
/// pub struct Echo { state: State }
///
/// #[verge::durable_object]
/// impl Echo {
///     fn new(state: State, _env: Env) -> Self {
///         Self { state }
///     }
///
///     fn fetch(&mut self, req: Request) -> Result<Response> {
///         let ws = WebSocket::upgrade(&req)?;
///         self.state.accept_websocket(&ws, &["echo"])?;
///         Ok(Response::websocket(&ws))
///     }
///
///     fn websocket_message(&mut self, ws: WebSocket, message: WebSocketMessage) -> Result<()> {
///         if let WebSocketMessage::Text(text) = message {
///             ws.send_text(&format!("echo: {text}"))?;
///         }
///         Ok(())
///     }
/// }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WebSocket {
    id: u64,
}

/// A message from a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebSocketMessage {
    /// A text frame.
    Text(String),
    /// A binary frame.
    Binary(Vec<u8>),
}

/// Why a WebSocket call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebSocketError {
    /// The request is not a WebSocket upgrade, or it did not come through
    /// the host's front door.
    #[error("not a WebSocket upgrade request")]
    NotAnUpgrade,
    /// The object holds the most sockets the host allows.
    #[error("this object already holds {0} WebSockets, the most allowed")]
    TooMany(u32),
    /// The socket is closed.
    #[error("the WebSocket is closed")]
    Closed,
    /// The message is over the host's limit (bytes).
    #[error("message over the limit of {0} bytes")]
    TooLarge(u32),
    /// Called outside a Durable Object.
    #[error("WebSockets can only be accepted by a Durable Object")]
    Unavailable,
    /// An argument the host refused: a close code, a tag, an attachment.
    #[error("{0}")]
    Invalid(String),
}

impl From<host::Error> for Error {
    fn from(error: host::Error) -> Self {
        Error::WebSocket(match error {
            host::Error::NotAnUpgrade => WebSocketError::NotAnUpgrade,
            host::Error::TooMany(n) => WebSocketError::TooMany(n),
            host::Error::Closed => WebSocketError::Closed,
            host::Error::TooLarge(n) => WebSocketError::TooLarge(n),
            host::Error::Unavailable => WebSocketError::Unavailable,
            host::Error::Invalid(why) => WebSocketError::Invalid(why),
        })
    }
}

impl WebSocket {
    /// The WebSocket a request asks to open, to accept with
    /// [`State::accept_websocket`] and answer with [`Response::websocket`].
    /// A request that is not an upgrade gives [`WebSocketError::NotAnUpgrade`]
    /// (a 426 is the usual answer).
    pub fn upgrade(request: &Request) -> Result<Self> {
        request
            .headers()
            .get(UPGRADE_HEADER)
            .and_then(|token| token.parse().ok())
            .map(|id| Self { id })
            .ok_or(Error::WebSocket(WebSocketError::NotAnUpgrade))
    }

    pub(crate) fn from_id(id: u64) -> Self {
        Self { id }
    }

    /// Sends a text message once the current event's writes are durable.
    pub fn send_text(&self, text: &str) -> Result<()> {
        Ok(host::send(self.id, &host::Message::Text(text.to_owned()))?)
    }

    /// Sends a binary message once the current event's writes are durable.
    pub fn send_binary(&self, bytes: &[u8]) -> Result<()> {
        Ok(host::send(self.id, &host::Message::Binary(bytes.to_vec()))?)
    }

    /// Sends `value` as a JSON text message.
    pub fn send_json<T: Serialize + ?Sized>(&self, value: &T) -> Result<()> {
        self.send_text(&serde_json::to_string(value)?)
    }

    /// Closes the socket with `code` (1000, or 3000 to 4999) and `reason`
    /// (at most 123 bytes). Closing a closed socket does nothing.
    pub fn close(&self, code: u16, reason: &str) -> Result<()> {
        Ok(host::close(self.id, code, reason)?)
    }

    /// Keeps `value` with the socket, across hibernation (up to 16 KiB of
    /// JSON).
    pub fn serialize_attachment<T: Serialize + ?Sized>(&self, value: &T) -> Result<()> {
        Ok(host::set_attachment(self.id, &serde_json::to_vec(value)?)?)
    }

    /// The value kept with [`serialize_attachment`](Self::serialize_attachment).
    pub fn deserialize_attachment<T: DeserializeOwned>(&self) -> Result<Option<T>> {
        host::attachment(self.id)?
            .map(|bytes| serde_json::from_slice(&bytes).map_err(Error::from))
            .transpose()
    }

    /// When the host last answered this socket's auto-response request, in
    /// milliseconds since the Unix epoch.
    pub fn auto_response_timestamp(&self) -> Result<Option<i64>> {
        Ok(host::auto_response_timestamp(self.id)?)
    }

    /// The socket's id, stable for the life of the connection.
    pub fn id(&self) -> u64 {
        self.id
    }
}

impl State {
    /// Takes over the WebSocket of `ws`'s request: from now on the host
    /// holds the connection, and its messages arrive as
    /// `websocket_message` events, also after the object was evicted.
    /// `tags` (at most 10) select sockets in [`get_websockets`](Self::get_websockets).
    pub fn accept_websocket(&self, ws: &WebSocket, tags: &[&str]) -> Result<()> {
        let tags: Vec<String> = tags.iter().map(|t| (*t).to_owned()).collect();
        Ok(host::accept(ws.id, &tags)?)
    }

    /// The object's open sockets, those tagged `tag` when given, oldest
    /// first.
    pub fn get_websockets(&self, tag: Option<&str>) -> Vec<WebSocket> {
        host::sockets(tag)
            .into_iter()
            .map(WebSocket::from_id)
            .collect()
    }

    /// The tags `ws` was accepted with.
    pub fn get_tags(&self, ws: &WebSocket) -> Result<Vec<String>> {
        Ok(host::tags(ws.id)?)
    }

    /// Makes the host answer the text message `request` with `response` by
    /// itself, without waking the object (a keep-alive ping, say).
    pub fn set_websocket_auto_response(&self, request: &str, response: &str) {
        host::set_auto_response(Some((request, response)));
    }

    /// Stops answering the auto-response request.
    pub fn clear_websocket_auto_response(&self) {
        host::set_auto_response(None);
    }
}

impl Response {
    /// The answer that completes `ws`'s upgrade (status 101), once the
    /// object accepted it with [`State::accept_websocket`].
    pub fn websocket(ws: &WebSocket) -> Response {
        Response::empty()
            .with_status(101)
            .with_header(UPGRADE_HEADER, &ws.id.to_string())
            .expect("digits are a valid header value")
    }
}
