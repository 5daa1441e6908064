//! # verge — write Verge workers in Rust
//!
//! A Verge worker is a Rust crate compiled to a WebAssembly component. The
//! host runs a fresh instance of it for every request, so nothing leaks from
//! one request to the next. This crate is everything the guest side needs:
//! [`Request`] and [`Response`], a small [`Router`], [`Env`] for vars and
//! secrets, outbound [`fetch`], and logging macros ([`info!`] and friends);
//! the storage workers share — KV namespaces ([`KvStore`]), D1 databases
//! ([`D1Database`]) and R2 buckets ([`Bucket`]); cron triggers
//! ([`macro@scheduled`], [`ScheduledEvent`]); and for Durable Objects
//! ([`durable_object`]), their [`Storage`] (SQL and key-value), hibernating
//! [`WebSocket`]s and alarms ([`AlarmInfo`]).
//!
//! You write no WIT: the contract (`verge:platform`) is compiled into this
//! crate, and [`#[verge::worker]`](macro@worker) exports your handler.
//!
//! ```no_run
//! use verge::{Env, Request, Response, Result};
//!
//! #[verge::worker]
//! fn fetch(req: Request, env: Env) -> Result<Response> {
//!     let greeting = env.var("GREETING").unwrap_or_else(|_| "hello".into());
//!     Response::json(&serde_json::json!({ "message": greeting, "path": req.path() }))
//! }
//! ```
//!
//! The package is `verge-sdk` (`verge-sdk = "0.1.0"` in Cargo.toml); the
//! library is `verge`, as above.
//!
//! Build with `cargo build --release --target wasm32-wasip2` (or
//! `cargo component build --release`), then serve with `verge dev` or upload
//! with `verge deploy`.
//!
//! Guest code is synchronous: calls such as [`fetch`] block the guest while
//! the host does the I/O asynchronously, so they never block a host thread.

// Lets the generated bindings and the macros name this crate `::verge`, also
// from inside it.
#![warn(missing_docs)]

extern crate self as verge;

mod alarm;
mod d1;
mod env;
mod error;
mod fetch;
mod headers;
mod kv;
pub mod log;
mod method;
mod object;
mod r2;
mod request;
mod response;
mod router;
mod scheduled;
mod storage;
mod websocket;

#[doc(hidden)]
pub mod __private;

pub use alarm::{AlarmInfo, ScheduledTime};
pub use d1::{D1Database, D1Error, D1ExecResult, D1Meta, D1PreparedStatement, D1Result};
pub use env::Env;
pub use error::{Error, FetchError, Result};
pub use fetch::fetch;
pub use headers::Headers;
pub use kv::{GetBuilder, Key, KvError, KvStore, ListBuilder, ListResponse, PutBuilder};
pub use method::Method;
pub use object::{DurableObjectClass, ObjectError, ObjectId, ObjectNamespace, State, Stub};
pub use r2::{
    Bucket, Conditional, CreateMultipartUploadBuilder, GetOptionsBuilder, HttpMetadata, Include,
    ListOptionsBuilder, MultipartUpload, Object, ObjectBody, Objects, PutOptionsBuilder, R2Error,
    Range, UploadedPart,
};
pub use request::Request;
pub use response::Response;
pub use router::{RouteContext, Router};
pub use scheduled::ScheduledEvent;
pub use storage::{
    IntoParams, ListOptions, SqlCursor, SqlError, SqlErrorKind, SqlStorage, SqlValue, Storage,
};
pub use url::Url;
pub use websocket::{WebSocket, WebSocketError, WebSocketMessage};

/// Exports a function as the worker's fetch handler.
///
/// The function takes a [`Request`] and an [`Env`] and returns
/// [`Result<Response>`](Result). An `Err` becomes a 500 that the host logs
/// under an error id, except [`Error::BadRequest`], which becomes a 400 whose
/// body is the message.
///
/// ```no_run
/// use verge::{Env, Request, Response, Result};
///
/// #[verge::worker]
/// fn fetch(_req: Request, _env: Env) -> Result<Response> {
///     Ok(Response::text("hello"))
/// }
/// ```
pub use verge_macros::worker;

/// Exports a function as the worker's scheduled handler, which the host
/// runs at the times `[triggers] crons` in verge.toml name.
///
/// The function takes a [`ScheduledEvent`] and an [`Env`] and returns
/// [`Result<()>`](Result). Each run gets a fresh instance under the
/// worker's limits, as a request does; an `Err` or a panic is logged with
/// an error id.
///
/// ```no_run
/// use verge::{Env, Result, ScheduledEvent};
///
/// #[verge::scheduled]
/// fn scheduled(event: ScheduledEvent, _env: Env) -> Result<()> {
///     verge::info!("cron {} ran", event.cron());
///     Ok(())
/// }
/// ```
pub use verge_macros::scheduled;

/// Defines a Durable Object class from an `impl` block.
///
/// The block needs `fn new(state: State, env: Env) -> Self` (or
/// `-> Result<Self>`, to set up a schema with `?`); it may have
/// `fn fetch(&mut self, req: Request) -> Result<Response>` for HTTP, and any
/// number of methods marked `#[rpc]`, callable from other workers and
/// objects through a generated client (`<Class>Client`). RPC parameters and
/// results are serde types, sent as JSON.
///
/// Methods with these names and signatures handle the object's other
/// events; each is optional:
///
/// - `fn websocket_message(&mut self, ws: WebSocket, message: WebSocketMessage) -> Result<()>`
/// - `fn websocket_close(&mut self, ws: WebSocket, code: u16, reason: String, was_clean: bool) -> Result<()>`
/// - `fn websocket_error(&mut self, ws: WebSocket, error: String) -> Result<()>`
/// - `fn alarm(&mut self, info: AlarmInfo) -> Result<()>`
///
/// See [`WebSocket`] and [`AlarmInfo`] for examples.
///
/// ```no_run
/// use verge::{Env, Request, Response, Result, State};
///
/// pub struct Counter { state: State }
///
/// #[verge::durable_object]
/// impl Counter {
///     fn new(state: State, _env: Env) -> Self {
///         Self { state }
///     }
///
///     #[rpc]
///     fn increment(&mut self, by: i64) -> Result<i64> {
///         let storage = self.state.storage();
///         let value = storage.get::<i64>("value")?.unwrap_or(0) + by;
///         storage.put("value", &value)?;
///         Ok(value)
///     }
///
///     fn fetch(&mut self, _req: Request) -> Result<Response> {
///         Ok(Response::text(self.increment(1)?.to_string()))
///     }
/// }
///
/// // Elsewhere, in a worker or another object:
/// # fn demo(env: Env) -> Result<()> {
/// let counter = env.durable_object("COUNTER")?.get_by_name("home")?.typed::<Counter>();
/// let now = counter.increment(5)?;
/// # Ok(()) }
/// ```
pub use verge_macros::durable_object;
