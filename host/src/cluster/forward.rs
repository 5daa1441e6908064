//! Object events carried to the host that owns the object.
//!
//! A stub fetch or RPC whose object another host owns goes to that host's
//! cluster listener as `POST /objects/{namespace}/{id}`: what the event
//! is travels base64-encoded JSON in the `verge-call` header, its body
//! (a fetch's request body, an RPC's arguments) as the request body. The
//! answer comes back the same way in `verge-reply`. Peers prove they
//! belong with the cluster secret; anyone else gets a 401.
//!
//! A peer that does not own the object (any more) says so without running
//! the event, and a peer that cannot be reached ran nothing either: the
//! caller then looks for the owner again. Once a peer may have run the
//! event, the caller never sends it twice.

use std::time::Duration;

use anyhow::{Context, Result};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as BASE64;
use http::HeaderMap;
use serde::{Deserialize, Serialize};

use super::Cluster;
use crate::bindings::{Method, Request, Response};
use crate::objects::AdminOp;
use crate::objects::{
    CallPath, Event, ObjectError, ObjectId, ObjectKey, Reply, SocketId, UPGRADE_HEADER,
};

/// The header peers put the cluster secret in.
pub(crate) const PEER_SECRET_HEADER: &str = "verge-cluster-secret";
pub(super) const CALL_HEADER: &str = "verge-call";
pub(crate) const REPLY_HEADER: &str = "verge-reply";

/// What an event is, besides its body.
#[derive(Serialize, Deserialize)]
struct CallHead {
    name: Option<String>,
    /// The call path's objects, as `namespace/id`.
    objects: Vec<String>,
    hops: u32,
    request_id: Option<u64>,
    timeout_ms: u64,
    event: EventHead,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum EventHead {
    Fetch {
        method: String,
        url: String,
        headers: Vec<(String, String)>,
    },
    Rpc {
        method: String,
    },
}

/// What an answer is, besides its body.
#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum ReplyHead {
    Fetch {
        status: u16,
        headers: Vec<(String, String)>,
    },
    Rpc,
    Done,
    Failed {
        error: ObjectError,
    },
    /// The peer does not own the object; it ran nothing.
    NotOwner,
}

/// An event encoded for a peer, kept so it can go to another peer when
/// the first turns out not to own the object.
pub(crate) struct Forwarded {
    head: String,
    body: bytes::Bytes,
}

impl Forwarded {
    /// Encodes an event; only fetches and RPCs travel (WebSocket events
    /// and alarms start on the owner).
    pub(crate) fn new(
        name: Option<String>,
        event: Event,
        path: &CallPath,
        timeout: Duration,
    ) -> Result<Self, ObjectError> {
        let (event, body) = match event {
            Event::Fetch(request) => {
                let method = http::Method::try_from(&request.method)
                    .map_err(|e| ObjectError::Internal(format!("{e:#}")))?;
                let head = EventHead::Fetch {
                    method: method.as_str().to_owned(),
                    url: request.url,
                    headers: request.headers,
                };
                (head, request.body)
            }
            Event::Rpc { method, args } => (EventHead::Rpc { method }, args),
            other => {
                return Err(ObjectError::Internal(format!(
                    "a {} event cannot be forwarded to another host",
                    other.describe()
                )));
            }
        };
        let head = CallHead {
            name,
            objects: path.objects.iter().map(ToString::to_string).collect(),
            hops: path.hops,
            request_id: path.request_id.map(u64::from),
            timeout_ms: timeout.as_millis() as u64,
            event,
        };
        let json = serde_json::to_vec(&head).expect("the head serializes");
        Ok(Self {
            head: BASE64.encode(json),
            body: body.into(),
        })
    }
}

impl Forwarded {
    /// The encoded head, for the `verge-call` header.
    pub(super) fn head(&self) -> &str {
        &self.head
    }

    /// The upgrade token the front door put in a fetch, if it is one.
    pub(crate) fn upgrade_token(event: &Event) -> Option<SocketId> {
        let Event::Fetch(request) = event else {
            return None;
        };
        request
            .headers
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(UPGRADE_HEADER.as_str()))
            .and_then(|(_, value)| value.parse().ok())
    }
}

/// What happened to an event sent to a peer.
pub(crate) enum Delivery {
    Answered(Result<Reply, ObjectError>),
    /// It did not run there: look for the owner again.
    NotThere(String),
}

impl Cluster {
    /// Sends `call` for `key` to its owner `host` at `address`.
    ///
    /// A paused owner accepts the connection and never answers, so the
    /// wait also ends when the owner's lease runs out: the call's outcome
    /// is then unknown, and the next call finds the new owner.
    pub(crate) async fn forward(
        &self,
        host: &str,
        address: &str,
        key: &ObjectKey,
        call: &Forwarded,
        timeout: Duration,
    ) -> Delivery {
        let url = format!("{address}/objects/{}/{}", key.namespace, key.id);
        let request = self
            .peers
            .post(&url)
            .header(CALL_HEADER, &call.head)
            .body(call.body.clone());
        self.deliver(host, address, key, request, timeout).await
    }

    /// Sends an administrative operation on `key` to its owner `host` at
    /// `address`.
    pub(crate) async fn forward_admin(
        &self,
        host: &str,
        address: &str,
        key: &ObjectKey,
        op: &AdminOp,
        timeout: Duration,
    ) -> Delivery {
        let url = format!(
            "{address}/objects/{}/{}/admin/{}",
            key.namespace,
            key.id,
            op.name()
        );
        let body = match op {
            AdminOp::Import(bytes) => bytes.clone(),
            _ => Vec::new(),
        };
        let request = self.peers.post(&url).body(body);
        self.deliver(host, address, key, request, timeout).await
    }

    /// Sends `request` to a peer and reads its reply, giving up when the
    /// peer's lease runs out first.
    async fn deliver(
        &self,
        host: &str,
        address: &str,
        key: &ObjectKey,
        request: reqwest::RequestBuilder,
        timeout: Duration,
    ) -> Delivery {
        let sent = request
            .header(PEER_SECRET_HEADER, &self.options.secret)
            // A little past the operation's own limit: the peer answers a
            // timeout itself.
            .timeout(timeout + Duration::from_secs(1))
            .send();
        let response = tokio::select! {
            sent = sent => sent,
            () = self.lease_lapses(host) => {
                self.forget_owner(key);
                return Delivery::Answered(Err(ObjectError::Overloaded(format!(
                    "the object's host {address} stopped answering and its lease lapsed; \
                     the call may or may not have run"
                ))));
            }
        };
        let response = match response {
            Ok(response) => response,
            // Nothing reached the peer, so nothing ran.
            Err(e) if e.is_connect() => return Delivery::NotThere(format!("{e}")),
            Err(e) if e.is_timeout() => return Delivery::Answered(Err(ObjectError::Timeout)),
            Err(e) => {
                self.forget_owner(key);
                return Delivery::Answered(Err(ObjectError::Internal(format!(
                    "the object's host {address} did not answer: {e}"
                ))));
            }
        };
        match read_reply(response).await {
            Ok(Some(reply)) => Delivery::Answered(reply),
            Ok(None) => Delivery::NotThere(format!("{address} does not own it")),
            Err(e) => Delivery::Answered(Err(ObjectError::Internal(format!(
                "the object's host {address} answered badly: {e:#}"
            )))),
        }
    }

    /// Returns once `host`'s lease has run out (never while Postgres
    /// cannot say).
    pub(super) async fn lease_lapses(&self, host: &str) {
        loop {
            tokio::time::sleep(self.options.lease / 2).await;
            let alive: Result<Option<bool>, _> =
                sqlx::query_scalar("SELECT lease_expires > now() FROM hosts WHERE id = $1")
                    .bind(host)
                    .fetch_optional(&self.pool)
                    .await;
            if let Ok(None | Some(false)) = alive {
                return;
            }
        }
    }
}

/// The reply in a peer's response; `None` when the peer does not own the
/// object.
async fn read_reply(response: reqwest::Response) -> Result<Option<Result<Reply, ObjectError>>> {
    let status = response.status();
    let head = response
        .headers()
        .get(REPLY_HEADER)
        .cloned()
        .with_context(|| format!("no {REPLY_HEADER} header (status {status})"))?;
    let body = response.bytes().await.context("reading the reply body")?;
    reply_from_head(&head, body.to_vec())
}

/// The reply a `verge-reply` head and a body describe; `None` when the
/// peer does not own the object.
pub(super) fn reply_from_head(
    head: &http::HeaderValue,
    body: Vec<u8>,
) -> Result<Option<Result<Reply, ObjectError>>> {
    let head: ReplyHead = decode_head(head.to_str().context("a reply head that is not text")?)?;
    Ok(match head {
        ReplyHead::NotOwner => None,
        ReplyHead::Failed { error } => Some(Err(error)),
        ReplyHead::Done => Some(Ok(Reply::Done)),
        ReplyHead::Rpc => Some(Ok(Reply::Rpc(body))),
        ReplyHead::Fetch { status, headers } => Some(Ok(Reply::Fetch(Response {
            status,
            headers,
            body,
        }))),
    })
}

fn decode_head<T: for<'de> Deserialize<'de>>(text: &str) -> Result<T> {
    let json = BASE64.decode(text).context("the head is not base64")?;
    serde_json::from_slice(&json).context("the head is not what a Verge peer sends")
}

/// A forwarded event as the owner runs it.
pub(crate) struct Incoming {
    pub(crate) key: ObjectKey,
    pub(crate) name: Option<String>,
    pub(crate) event: Event,
    pub(crate) path: CallPath,
    pub(crate) timeout: Duration,
}

/// Decodes a forwarded event for `namespace`/`id` from a peer's request.
pub(crate) fn decode_event(
    namespace: &str,
    id: &str,
    headers: &HeaderMap,
    body: bytes::Bytes,
) -> Result<Incoming> {
    let head = headers
        .get(CALL_HEADER)
        .with_context(|| format!("no {CALL_HEADER} header"))?
        .to_str()
        .context("a call head that is not text")?;
    let (head, event) = decode_call(head, body)?;
    let objects = head
        .objects
        .iter()
        .map(|text| {
            let (namespace, id) = text
                .split_once('/')
                .with_context(|| format!("a call path entry without a namespace: {text:?}"))?;
            object_key(namespace, id)
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Incoming {
        key: object_key(namespace, id)?,
        name: head.name,
        event,
        path: CallPath {
            objects: objects.into(),
            hops: head.hops,
            request_id: head.request_id.map(Into::into),
        },
        timeout: Duration::from_millis(head.timeout_ms),
    })
}

fn decode_call(head: &str, body: bytes::Bytes) -> Result<(CallHead, Event)> {
    let mut head: CallHead = decode_head(head)?;
    let event = match &mut head.event {
        EventHead::Fetch {
            method,
            url,
            headers,
        } => {
            let method = http::Method::from_bytes(method.as_bytes())
                .with_context(|| format!("invalid method {method:?}"))?;
            Event::Fetch(Request {
                method: Method::from(&method),
                url: std::mem::take(url),
                headers: std::mem::take(headers),
                body: body.to_vec(),
            })
        }
        EventHead::Rpc { method } => Event::Rpc {
            method: std::mem::take(method),
            args: body.to_vec(),
        },
    };
    Ok((head, event))
}

impl Forwarded {
    /// The event again, to run here after all.
    pub(crate) fn into_event(self) -> Result<Event, ObjectError> {
        decode_call(&self.head, self.body)
            .map(|(_, event)| event)
            .map_err(|e| ObjectError::Internal(format!("{e:#}")))
    }
}

fn object_key(namespace: &str, id: &str) -> Result<ObjectKey> {
    Ok(ObjectKey {
        namespace: namespace.into(),
        id: ObjectId::parse(id).map_err(anyhow::Error::msg)?,
    })
}

/// The owner's answer to a forwarded event, as a response to the peer:
/// `None` says this host does not own the object.
pub(crate) fn encode_reply(
    reply: Option<Result<Reply, ObjectError>>,
) -> (http::HeaderValue, bytes::Bytes) {
    let (head, body) = match reply {
        None => (ReplyHead::NotOwner, Vec::new()),
        Some(Err(error)) => (ReplyHead::Failed { error }, Vec::new()),
        Some(Ok(Reply::Done)) => (ReplyHead::Done, Vec::new()),
        Some(Ok(Reply::Rpc(bytes))) => (ReplyHead::Rpc, bytes),
        Some(Ok(Reply::Fetch(response))) => (
            ReplyHead::Fetch {
                status: response.status,
                headers: response.headers,
            },
            response.body,
        ),
    };
    let json = serde_json::to_vec(&head).expect("the head serializes");
    let value =
        http::HeaderValue::from_str(&BASE64.encode(json)).expect("base64 is a valid header");
    (value, body.into())
}
