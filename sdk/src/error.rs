use std::fmt;

/// The result type of every fallible SDK call and of handlers.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in a worker.
///
/// Handlers return it with `?`; the host turns it into a response (see
/// [`Error::status`]).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The client sent something the worker cannot use: a body that is not
    /// the expected JSON, a bad query string. Becomes a 400 whose body is the
    /// message.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// A URL could not be parsed.
    #[error("invalid URL: {0}")]
    Url(#[from] url::ParseError),
    /// A value could not be converted to or from JSON.
    #[error("JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// An outbound [`fetch`](crate::fetch()) failed.
    #[error("fetch failed: {0}")]
    Fetch(#[from] FetchError),
    /// [`Env::var`](crate::Env::var) or [`Env::secret`](crate::Env::secret)
    /// named something that is not set.
    #[error("`{0}` is not set in [vars] or secrets")]
    MissingBinding(String),
    /// A storage call failed.
    #[error("storage: {0}")]
    Sql(#[from] crate::SqlError),
    /// A KV namespace call failed.
    #[error("KV: {0}")]
    Kv(#[from] crate::KvError),
    /// A D1 database call failed.
    #[error("D1: {0}")]
    D1(#[from] crate::D1Error),
    /// An R2 bucket call failed.
    #[error("R2: {0}")]
    R2(#[from] crate::R2Error),
    /// A call to a Durable Object failed.
    #[error(transparent)]
    Object(#[from] crate::ObjectError),
    /// A WebSocket call failed.
    #[error("websocket: {0}")]
    WebSocket(#[from] crate::WebSocketError),
    /// An RPC call could not be encoded, decoded or dispatched.
    #[error("rpc: {0}")]
    Rpc(String),
    /// A header name or value is not valid HTTP.
    #[error("invalid header: {0}")]
    InvalidHeader(String),
    /// Anything else, with a message for the log.
    #[error("{0}")]
    Message(String),
}

impl Error {
    /// An error carrying just a message, for the log.
    pub fn msg(message: impl fmt::Display) -> Self {
        Error::Message(message.to_string())
    }

    /// The HTTP status this error becomes when a handler returns it.
    pub fn status(&self) -> u16 {
        match self {
            Error::BadRequest(_) => 400,
            Error::WebSocket(crate::WebSocketError::NotAnUpgrade) => 426,
            _ => 500,
        }
    }
}

impl From<String> for Error {
    fn from(message: String) -> Self {
        Error::Message(message)
    }
}

impl From<&str> for Error {
    fn from(message: &str) -> Self {
        Error::Message(message.to_owned())
    }
}

/// Why an outbound [`fetch`](crate::fetch()) failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    /// The host is not listed in `allowed_outbound_hosts` in verge.toml.
    #[error("`{0}` is not in allowed_outbound_hosts")]
    Denied(String),
    /// The request could not be sent as given.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// This request already made as many subrequests as its limit allows.
    #[error("too many subrequests (limit {0})")]
    TooManySubrequests(u32),
    /// No response arrived in time.
    #[error("timed out")]
    Timeout,
    /// Connecting, sending or receiving failed.
    #[error("network error: {0}")]
    Network(String),
    /// The response body was larger than the body limit.
    #[error("response body larger than {0} bytes")]
    ResponseTooLarge(u64),
}
