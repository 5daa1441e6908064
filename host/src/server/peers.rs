//! The cluster listener: where the other hosts of a cluster send the
//! events of objects this host owns (`cluster/forward.rs` is the other
//! end), and the calls of D1 databases it owns (`cluster/d1.rs`). Every
//! request must carry the cluster secret.

use std::sync::Arc;

use axum::Router;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;

use crate::bindings::Request as WireRequest;
use crate::cluster::{
    Cluster, D1_PATH, PEER_SECRET_HEADER, REPLY_HEADER, decode_event, encode_reply,
};
use crate::objects::{
    AdminOp, Event, ObjectId, ObjectKey, Reply, UPGRADE_HEADER, serve_connection,
};
use crate::platform::Platform;
use crate::storage::d1::D1Request;

/// The largest event body a peer may send: past the largest request body
/// a worker may accept, and a forwarded RPC's arguments.
const MAX_EVENT_BYTES: usize = 256 << 20;

pub(super) fn router(platform: Arc<Platform>, cluster: Arc<Cluster>) -> Router {
    Router::new()
        .route("/objects/{namespace}/{id}", post(forwarded))
        .route("/objects/{namespace}/{id}/socket", get(forwarded_socket))
        .route(
            "/objects/{namespace}/{id}/admin/{op}",
            post(forwarded_admin),
        )
        .route(D1_PATH, post(forwarded_d1))
        .layer(DefaultBodyLimit::max(MAX_EVENT_BYTES))
        .layer(middleware::from_fn_with_state(cluster, authenticate))
        .with_state(platform)
}

/// Refuses anyone without the cluster secret, before reading a body.
async fn authenticate(
    State(cluster): State<Arc<Cluster>>,
    request: Request,
    next: Next,
) -> Response {
    let presented = request
        .headers()
        .get(PEER_SECRET_HEADER)
        .map(|value| value.as_bytes());
    if !presented.is_some_and(|secret| cluster.accepts(secret)) {
        return (
            StatusCode::UNAUTHORIZED,
            "this is a Verge cluster listener: peers must present the cluster secret\n",
        )
            .into_response();
    }
    next.run(request).await
}

async fn forwarded(
    State(platform): State<Arc<Platform>>,
    Path((namespace, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let call = match decode_event(&namespace, &id, &headers, body) {
        Ok(call) => call,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("{e:#}\n")).into_response(),
    };
    let reply = platform.objects().call_forwarded(call).await;
    let (head, body) = encode_reply(reply);
    ([(REPLY_HEADER, head)], body).into_response()
}

/// An export, import or delete of an object here, from another host's
/// admin API.
async fn forwarded_admin(
    State(platform): State<Arc<Platform>>,
    Path((namespace, id, op)): Path<(String, String, String)>,
    body: Bytes,
) -> Response {
    let Some(op) = AdminOp::from_name(&op, body.to_vec()) else {
        return (StatusCode::NOT_FOUND, "no such operation\n").into_response();
    };
    let Ok(id) = ObjectId::parse(&id) else {
        return (StatusCode::BAD_REQUEST, "not an object id\n").into_response();
    };
    let key = ObjectKey {
        namespace: namespace.into(),
        id,
    };
    let reply = platform.objects().administer_forwarded(&key, op).await;
    let (head, body) = encode_reply(reply);
    ([(REPLY_HEADER, head)], body).into_response()
}

/// A D1 call a peer forwarded to this host, the database's owner (else
/// the answer says it is not).
async fn forwarded_d1(State(platform): State<Arc<Platform>>, body: Bytes) -> Response {
    let request: D1Request = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                format!("not a D1 call a Verge peer sends: {e}\n"),
            )
                .into_response();
        }
    };
    let reply = platform.d1().serve_forwarded(request).await;
    axum::Json(reply).into_response()
}

/// A WebSocket upgrade a worker on another host passed to an object here:
/// the event runs with an upgrade token of this host's, and when the
/// object accepts, the peer's connection becomes the object's socket.
async fn forwarded_socket(
    State(platform): State<Arc<Platform>>,
    Path((namespace, id)): Path<(String, String)>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    let mut call = match decode_event(&namespace, &id, &headers, Bytes::new()) {
        Ok(call) => call,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("{e:#}\n")).into_response(),
    };
    let Event::Fetch(request) = &mut call.event else {
        return (StatusCode::BAD_REQUEST, "only a fetch upgrades\n").into_response();
    };
    let system = platform.objects().clone();
    let hub = system.sockets();
    let token = hub.register_upgrade();
    set_upgrade_token(request, token);
    let reply = system.call_forwarded(call).await;
    let accepted = match &reply {
        Some(Ok(Reply::Fetch(response))) if response.status == 101 => hub.finish_upgrade(token),
        _ => None,
    };
    let (head, body) = encode_reply(reply);
    let Some(accepted) = accepted else {
        hub.abandon_upgrade(token);
        return ([(REPLY_HEADER, head)], body).into_response();
    };
    let limit = hub.limits().max_message_bytes;
    let mut response = upgrade
        .max_message_size(limit)
        .max_frame_size(limit)
        .on_upgrade(move |socket| serve_connection(system, socket, accepted));
    response.headers_mut().insert(REPLY_HEADER, head);
    response
}

/// Puts this host's upgrade token in a forwarded fetch, in place of the
/// calling host's.
fn set_upgrade_token(request: &mut WireRequest, token: u64) {
    request
        .headers
        .retain(|(name, _)| !name.eq_ignore_ascii_case(UPGRADE_HEADER.as_str()));
    request
        .headers
        .push((UPGRADE_HEADER.as_str().to_owned(), token.to_string()));
}
