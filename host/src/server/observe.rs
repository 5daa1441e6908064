//! The admin API's windows on a running host: `/v1/tail` streams finished
//! requests as they happen (for `verge tail`), `/metrics` is the
//! Prometheus scrape target.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{StatusCode, header};
use tokio::sync::broadcast::error::RecvError;

use super::errors::json_error;
use crate::platform::Platform;
use crate::telemetry::TailFilter;

/// How often an idle tail sends an empty line: a watcher that went away
/// is noticed (and stops costing the host its collected lines) within it.
const HEARTBEAT: Duration = Duration::from_secs(10);

/// `GET /v1/tail?worker=&status=&method=&search=&sampling_rate=`: one JSON
/// event per line, for as long as the client stays.
pub(super) async fn tail(
    State(platform): State<Arc<Platform>>,
    Query(filter): Query<TailFilter>,
) -> Response {
    if let Err(why) = filter.validate() {
        return json_error(StatusCode::BAD_REQUEST, why).into_response();
    }
    // Subscribed before the response head goes out: a client that has
    // the head sees every request that starts afterwards.
    let watching = platform.telemetry().tail.subscribe();
    let lines = futures::stream::unfold((watching, filter), |(mut watching, filter)| async move {
        loop {
            let line = match tokio::time::timeout(HEARTBEAT, watching.events.recv()).await {
                Err(_idle) => Bytes::from_static(b"\n"),
                Ok(Ok(event)) if filter.matches(&event) => {
                    let mut line = serde_json::to_vec(&*event).expect("events serialize");
                    line.push(b'\n');
                    Bytes::from(line)
                }
                Ok(Ok(_)) => continue,
                Ok(Err(RecvError::Lagged(missed))) => {
                    Bytes::from(format!("{{\"missed\":{missed}}}\n"))
                }
                Ok(Err(RecvError::Closed)) => return None,
            };
            return Some((Ok::<_, Infallible>(line), (watching, filter)));
        }
    });
    (
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(lines),
    )
        .into_response()
}

/// `GET /metrics`, in the OpenMetrics text format Prometheus scrapes.
pub(super) async fn metrics(State(platform): State<Arc<Platform>>) -> Response {
    let text = platform.telemetry().metrics.encode(platform.snapshot());
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response()
}
