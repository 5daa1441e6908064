//! The front door: every inbound request is routed to a worker and served
//! by a fresh instance of it.
//!
//! A WebSocket upgrade goes through the worker like any request, carrying a
//! token in the `verge-websocket` header; the handshake completes only if
//! an object accepted that token and the answer is 101 with it (see
//! `objects/hibernation/`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, HttpBody as _};
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::response::{Html, IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use http::{HeaderValue, StatusCode, header};
use http_body_util::BodyExt;

use super::IndexPage;
use super::drain::drain;
use super::errors::{ERROR_ID_HEADER, invoke_error, text};
use super::scheduled;
use crate::bindings::{self, http_types};
use crate::objects::{ObjectSystem, SocketId, UPGRADE_HEADER, close_frame, serve_connection};
use crate::platform::Platform;
use crate::runtime::{self, LoadedWorker, RequestId, Reservation};
use crate::storage::r2::ObjectBody;
use crate::telemetry::{RequestRecord, ServedBy, TailLog};

#[derive(Clone)]
struct FrontDoor {
    platform: Arc<Platform>,
    index: Option<Arc<IndexPage>>,
}

pub(super) fn router(platform: Arc<Platform>, index: Option<Arc<IndexPage>>) -> Router {
    Router::new()
        .fallback(serve)
        .with_state(FrontDoor { platform, index })
}

async fn serve(State(door): State<FrontDoor>, request: Request) -> Response {
    let started = Instant::now();
    let request_id = RequestId::random();
    let host = request_host(&request);
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let mut served = Served::default();
    let mut response = match door.platform.route(&host, &path) {
        // The host becomes part of the URL the guest parses.
        _ if host.parse::<http::uri::Authority>().is_err() => text(
            StatusCode::BAD_REQUEST,
            format!("Invalid Host header {host:?}\n"),
        ),
        _ if door.platform.options().dev && path == scheduled::PATH => {
            scheduled::run_now(&door.platform, &host, request.uri().query()).await
        }
        Some(worker) => {
            served.worker = Some(worker.clone());
            serve_with(
                &door.platform,
                &worker,
                request,
                &host,
                request_id,
                &mut served,
            )
            .await
        }
        None => match &door.index {
            Some(index) if path == "/" => Html(index.html().to_owned()).into_response(),
            _ => text(
                StatusCode::NOT_FOUND,
                format!("No worker serves {host}{path}\n"),
            ),
        },
    };
    let request_id = request_id.to_string();
    response.headers_mut().insert(
        "x-verge-request-id",
        HeaderValue::from_str(&request_id).expect("hex is a valid header"),
    );
    let worker = served.worker.as_ref().map(|w| &w.context);
    door.platform.telemetry().request_finished(RequestRecord {
        request_id,
        method: method.as_str(),
        host: &host,
        path: &path,
        status: response.status().as_u16(),
        duration: started.elapsed(),
        served_by: worker.map(|w| ServedBy {
            worker: &w.name,
            version: w.version,
            metrics: &w.metrics,
        }),
        object: served.object,
        error_id: response
            .headers()
            .get(ERROR_ID_HEADER)
            .and_then(|id| id.to_str().ok())
            .map(str::to_owned),
        logs: served.logs,
    });
    response
}

/// What serving a request left to log besides its response.
#[derive(Default)]
struct Served {
    worker: Option<Arc<LoadedWorker>>,
    object: Option<String>,
    logs: Vec<TailLog>,
}

async fn serve_with(
    platform: &Platform,
    worker: &LoadedWorker,
    request: Request,
    host: &str,
    request_id: RequestId,
    served: &mut Served,
) -> Response {
    let name = &*worker.context.name;
    let limit = worker.context.config.limits.body_bytes();
    let (mut parts, body) = request.into_parts();
    let hops = hops(&parts.headers);
    if hops >= MAX_HOPS {
        return text(
            StatusCode::LOOP_DETECTED,
            format!(
                "This request has passed through Verge {hops} times: a worker fetching itself in a loop?\n"
            ),
        );
    }
    let head = parts.method == http::Method::HEAD;
    // Only the front door sets this header.
    parts.headers.remove(UPGRADE_HEADER);
    let upgrade = websocket_upgrade(platform, &mut parts).await;
    let request = Request::from_parts(parts, body);
    // Held until the response is built: the body counts against the
    // host's memory budget for as long as the host holds it.
    let mut reservation = worker.context.memory.reserve();
    let wire = match to_wire(request, host, limit, &mut reservation).await {
        Ok(wire) => wire,
        Err(response) => return response,
    };
    let invocation = runtime::invoke(worker, wire, request_id, hops).await;
    served.object = invocation.object;
    served.logs = invocation.logs;
    let r2_body = invocation.body;
    let invalid = |e: anyhow::Error| {
        let error = runtime::InvokeError::Handler(format!(
            "the worker returned an invalid response: {e:#}"
        ));
        invoke_error(&error, name, request_id, platform.options().dev)
    };
    let hub = platform.objects().sockets();
    match (invocation.result, upgrade) {
        // However the worker answered.
        (_, Some((upgrade, pending))) if hub.over_limit(pending.token) => {
            refuse_over_limit(upgrade)
        }
        (Ok(response), Some((upgrade, pending))) => {
            complete_upgrade(platform, upgrade, &pending, response).unwrap_or_else(invalid)
        }
        (Ok(response), None) => http_types::response_from_wire(response, head)
            .map(|response| with_r2_body(response, r2_body, head))
            .unwrap_or_else(invalid),
        (Err(error), _) => invoke_error(&error, name, request_id, platform.options().dev),
    }
}

/// The response with an R2 object's body (handed off by the worker) as
/// its body, streamed from storage, and its length.
fn with_r2_body(mut response: Response, body: Option<ObjectBody>, head: bool) -> Response {
    let Some(body) = body else {
        return response;
    };
    response
        .headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(body.remaining()));
    if !head {
        *response.body_mut() = body.into_http_body();
    }
    response
}

/// An upgrade registered with the socket hub. Dropping it forgets the
/// upgrade (and any socket an object accepted for it) unless the handshake
/// took it over: on every early return, and when the client leaves while
/// the worker runs.
struct PendingUpgrade {
    system: Arc<ObjectSystem>,
    token: SocketId,
}

impl Drop for PendingUpgrade {
    fn drop(&mut self) {
        self.system.sockets().abandon_upgrade(self.token);
        if let Some(cluster) = self.system.cluster() {
            cluster.take_relay(self.token);
        }
    }
}

/// Completes the handshake only to close with 1013 (try again later): the
/// object holds the most sockets allowed. A WebSocket client understands
/// the code where it would see a failed handshake.
fn refuse_over_limit(upgrade: WebSocketUpgrade) -> Response {
    upgrade.on_upgrade(|mut socket| async move {
        use futures::SinkExt;
        let frame = close_frame(1013, "this object holds the most WebSockets allowed");
        let _ = socket.send(frame).await;
        let _ = socket.close().await;
    })
}

/// A WebSocket upgrade request, registered with the hub and its token
/// added to the request for the worker; `None` for any other request.
async fn websocket_upgrade(
    platform: &Platform,
    parts: &mut http::request::Parts,
) -> Option<(WebSocketUpgrade, PendingUpgrade)> {
    let upgrade = WebSocketUpgrade::from_request_parts(parts, &())
        .await
        .ok()?;
    let system = platform.objects().clone();
    let token = system.sockets().register_upgrade();
    let value = HeaderValue::from_str(&token.to_string()).expect("digits are a valid header");
    parts.headers.insert(UPGRADE_HEADER, value);
    Some((upgrade, PendingUpgrade { system, token }))
}

/// Read and write buffer of one WebSocket connection: enough for the
/// usual message in one read, small enough for tens of thousands of idle
/// sockets.
const SOCKET_BUFFER_BYTES: usize = 8 * 1024;

/// Completes the handshake when an object accepted the upgrade and the
/// worker answered 101 with its token; otherwise the worker's answer goes
/// back as a plain response.
fn complete_upgrade(
    platform: &Platform,
    upgrade: WebSocketUpgrade,
    pending: &PendingUpgrade,
    response: bindings::Response,
) -> anyhow::Result<Response> {
    let (hub, token) = (platform.objects().sockets(), pending.token);
    let answered_token = response
        .headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(UPGRADE_HEADER.as_str()))
        .and_then(|(_, value)| value.parse::<SocketId>().ok());
    if response.status != 101 || answered_token != Some(token) {
        return http_types::response_from_wire(response, false);
    }
    // An object on another host of the cluster accepted it.
    if let Some(peer) = platform.cluster().and_then(|c| c.take_relay(token)) {
        return Ok(upgrade
            .max_message_size(hub.limits().max_message_bytes)
            .on_upgrade(move |socket| crate::cluster::relay(socket, peer)));
    }
    let Some(accepted) = hub.finish_upgrade(token) else {
        anyhow::bail!("it answered 101 without accepting the WebSocket (state.accept_websocket)");
    };
    let limit = hub.limits().max_message_bytes;
    let system = platform.objects().clone();
    let (failed_system, key, id) = (system.clone(), accepted.key.clone(), accepted.id);
    Ok(upgrade
        .max_message_size(limit)
        .max_frame_size(limit)
        // tungstenite's defaults (128 KiB each, the read buffer kept
        // resident) would cost a hibernated socket over 300 KiB.
        .read_buffer_size(SOCKET_BUFFER_BYTES)
        .write_buffer_size(SOCKET_BUFFER_BYTES)
        .on_failed_upgrade(move |error| {
            tracing::debug!("a WebSocket handshake failed: {error}");
            failed_system.sockets().remove(&key, id);
        })
        .on_upgrade(move |socket| serve_connection(system, socket, accepted)))
}

/// Requests that have passed through this many Verge hosts are refused: a
/// worker fetching itself (through any name that leads back here) would
/// otherwise recurse without end.
const MAX_HOPS: u32 = 16;

/// How many Verge hosts a request has passed through, from its loop header.
fn hops(headers: &http::HeaderMap) -> u32 {
    headers
        .get_all(bindings::LOOP_HEADER)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter(|entry| entry.split(';').next().map(str::trim) == Some(bindings::LOOP_TOKEN))
        .count() as u32
}

/// The client's address, as the guest reads it.
const REAL_IP: http::HeaderName = http::HeaderName::from_static("x-real-ip");

/// How long a client may take to send a whole request body: a slow sender
/// holds an instance slot's worth of nothing.
const BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// Reads the body (up to `limit` bytes, each byte taken from the host's
/// memory budget) and builds the guest's view of the request; a too-large,
/// too-slow or broken body is answered right here.
async fn to_wire(
    request: Request,
    host: &str,
    limit: usize,
    reservation: &mut Reservation,
) -> Result<bindings::Request, Response> {
    let too_large = || {
        text(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("Request body larger than this worker's limit of {limit} bytes\n"),
        )
    };
    let (mut parts, body) = request.into_parts();
    // The client's address, as Cloudflare gives it in CF-Connecting-IP;
    // whatever the client sent under this name is replaced.
    if let Some(ConnectInfo(peer)) = parts.extensions.get::<ConnectInfo<SocketAddr>>() {
        let ip = HeaderValue::from_str(&peer.ip().to_string()).expect("an IP is a valid header");
        parts.headers.insert(REAL_IP, ip);
    }
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        drain(body);
        return Err(too_large());
    }
    // Most requests have no body: no timer, nothing to read.
    let read = if body.is_end_stream() {
        Ok(Ok(BodyRead::Read(Bytes::new())))
    } else {
        tokio::time::timeout(BODY_TIMEOUT, read_body(body, limit, reservation)).await
    };
    let body = match read {
        Ok(Ok(BodyRead::Read(bytes))) => bytes,
        Ok(Ok(BodyRead::TooLarge)) => return Err(too_large()),
        Ok(Ok(BodyRead::NoMemory)) => {
            let mut busy = text(
                StatusCode::SERVICE_UNAVAILABLE,
                "The host's memory budget is used up; retry shortly\n".into(),
            );
            busy.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            return Err(busy);
        }
        Ok(Err(e)) => {
            return Err(text(
                StatusCode::BAD_REQUEST,
                format!("Could not read the request body: {e}\n"),
            ));
        }
        Err(_) => {
            return Err(text(
                StatusCode::REQUEST_TIMEOUT,
                format!("The request body did not arrive within {BODY_TIMEOUT:?}\n"),
            ));
        }
    };
    let path_and_query = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    Ok(bindings::Request {
        method: (&parts.method).into(),
        url: format!("http://{host}{path_and_query}"),
        headers: http_types::headers_to_wire(&parts.headers),
        body: body.into(),
    })
}

/// What reading a request body came to.
enum BodyRead {
    Read(Bytes),
    /// Past the worker's limit (the rest is drained).
    TooLarge,
    /// Past the host's memory budget.
    NoMemory,
}

async fn read_body(
    mut body: Body,
    limit: usize,
    reservation: &mut Reservation,
) -> Result<BodyRead, axum::Error> {
    let mut bytes = BytesMut::new();
    while let Some(frame) = body.frame().await {
        if let Some(data) = frame?.data_ref() {
            if bytes.len() + data.len() > limit {
                drain(body);
                return Ok(BodyRead::TooLarge);
            }
            if !reservation.grow(data.len()) {
                return Ok(BodyRead::NoMemory);
            }
            bytes.extend_from_slice(data);
        }
    }
    Ok(BodyRead::Read(bytes.freeze()))
}

/// The host the client addressed: the `Host` header (HTTP/1.1) or the URI
/// authority (HTTP/2).
fn request_host(request: &Request) -> String {
    request
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| request.uri().authority().map(|a| a.as_str()))
        .unwrap_or("localhost")
        .to_owned()
}
