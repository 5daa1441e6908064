//! The front door: every inbound request is routed to a worker and served
//! by a fresh instance of it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::response::{Html, IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use http::{HeaderValue, StatusCode, header};
use http_body_util::BodyExt;

use super::IndexPage;
use super::errors::{invoke_error, text};
use crate::bindings::{self, http_types};
use crate::platform::Platform;
use crate::runtime::{self, LoadedWorker, RequestId};

#[derive(Clone)]
struct FrontDoor {
    platform: Arc<Platform>,
    index: Option<Arc<IndexPage>>,
}

pub fn router(platform: Arc<Platform>, index: Option<Arc<IndexPage>>) -> Router {
    Router::new()
        .fallback(serve)
        .with_state(FrontDoor { platform, index })
}

async fn serve(State(door): State<FrontDoor>, request: Request) -> Response {
    let request_id = RequestId::random();
    let host = request_host(&request);
    let path = request.uri().path().to_owned();
    let mut response = match door.platform.route(&host, &path) {
        // The host becomes part of the URL the guest parses.
        _ if host.parse::<http::uri::Authority>().is_err() => text(
            StatusCode::BAD_REQUEST,
            format!("Invalid Host header {host:?}\n"),
        ),
        Some(worker) => serve_with(&door.platform, &worker, request, &host, request_id).await,
        None => match &door.index {
            Some(index) if path == "/" => Html(index.html().to_owned()).into_response(),
            _ => text(
                StatusCode::NOT_FOUND,
                format!("No worker serves {host}{path}\n"),
            ),
        },
    };
    response.headers_mut().insert(
        "x-verge-request-id",
        HeaderValue::from_str(&request_id.to_string()).expect("hex is a valid header"),
    );
    response
}

async fn serve_with(
    platform: &Platform,
    worker: &LoadedWorker,
    request: Request,
    host: &str,
    request_id: RequestId,
) -> Response {
    let name = &*worker.context.name;
    let limit = worker.context.config.limits.body_bytes();
    let wire = match to_wire(request, host, limit).await {
        Ok(wire) => wire,
        Err(response) => return response,
    };
    match runtime::invoke(worker, wire, request_id).await {
        Ok(response) => http_types::response_from_wire(response).unwrap_or_else(|e| {
            let error = runtime::InvokeError::Handler(format!(
                "the worker returned an invalid response: {e:#}"
            ));
            invoke_error(&error, name, request_id, platform.options().dev)
        }),
        Err(error) => invoke_error(&error, name, request_id, platform.options().dev),
    }
}

/// Reads the body (up to `limit` bytes) and builds the guest's view of the
/// request; a too-large or broken body is answered right here.
async fn to_wire(
    request: Request,
    host: &str,
    limit: usize,
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
        parts.headers.insert("x-real-ip", ip);
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
    let body = match read_body(body, limit).await {
        Ok(Some(bytes)) => bytes,
        Ok(None) => return Err(too_large()),
        Err(e) => {
            return Err(text(
                StatusCode::BAD_REQUEST,
                format!("Could not read the request body: {e}\n"),
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

/// The whole body, or `None` once it grows past `limit` (the rest is then
/// drained).
async fn read_body(mut body: Body, limit: usize) -> Result<Option<Bytes>, axum::Error> {
    let mut bytes = BytesMut::new();
    while let Some(frame) = body.frame().await {
        if let Some(data) = frame?.data_ref() {
            if bytes.len() + data.len() > limit {
                drain(body);
                return Ok(None);
            }
            bytes.extend_from_slice(data);
        }
    }
    Ok(Some(bytes.freeze()))
}

/// How much of a refused body is read and discarded after the 413, and for
/// how long: a client still sending then reads the 413 instead of having
/// its connection reset under it.
const DRAIN_BYTES: usize = 64 << 20;
const DRAIN_TIME: Duration = Duration::from_secs(5);

fn drain(mut body: Body) {
    tokio::spawn(async move {
        let mut seen = 0;
        let _ = tokio::time::timeout(DRAIN_TIME, async {
            while seen < DRAIN_BYTES {
                match body.frame().await {
                    Some(Ok(frame)) => seen += frame.data_ref().map_or(0, Bytes::len),
                    _ => break,
                }
            }
        })
        .await;
    });
}

/// The host the client addressed: the `Host` header (HTTP/1.1) or the URI
/// authority (HTTP/2).
fn request_host(request: &Request<Body>) -> String {
    request
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| request.uri().authority().map(|a| a.as_str()))
        .unwrap_or("localhost")
        .to_owned()
}
