//! How failures become responses: JSON errors for the admin API, plain-text
//! pages with an error id for the front door.

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};

use crate::runtime::{InvokeError, RequestId};

/// The header an error response carries its error id in.
pub(super) const ERROR_ID_HEADER: &str = "x-verge-error-id";

/// `{"error": message}` with `status`.
pub(super) fn json_error(status: StatusCode, message: impl Into<String>) -> impl IntoResponse {
    (status, Json(serde_json::json!({ "error": message.into() })))
}

/// A plain-text response from the front door itself (not from a guest).
pub(super) fn text(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}

/// Turns a failed invocation into a response, and logs it under a fresh
/// error id that the response also carries.
///
/// Limit breaches follow Cloudflare's lead: 503 for CPU and memory (the
/// request was fine, the worker was not), 504 for the wall clock. Traps and
/// handler errors are 500s; their message reaches the client only in
/// development mode.
pub(super) fn invoke_error(
    error: &InvokeError,
    worker: &str,
    request_id: RequestId,
    dev: bool,
) -> Response {
    let error_id = crate::telemetry::new_error_id();
    let (status, summary) = match error {
        InvokeError::CpuLimit(_) | InvokeError::MemoryLimit(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("Worker exceeded a resource limit: {error}"),
        ),
        InvokeError::Timeout { .. } => (
            StatusCode::GATEWAY_TIMEOUT,
            format!("Worker timed out: {error}"),
        ),
        InvokeError::AtCapacity => (
            StatusCode::SERVICE_UNAVAILABLE,
            "The host is at capacity; retry shortly".to_owned(),
        ),
        InvokeError::WorkerBusy { .. }
        | InvokeError::HostMemory(_)
        | InvokeError::ObjectOverloaded(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("Overloaded; retry shortly: {error}"),
        ),
        InvokeError::Trap(_) | InvokeError::Handler(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "Worker threw an exception".to_owned(),
        ),
    };
    // One line per failure (the trap's backtrace is escaped into it), so
    // a grep for the error id finds everything.
    let detail = error.to_string();
    match error {
        InvokeError::Trap(_) | InvokeError::Handler(_) => {
            tracing::error!(worker, %request_id, error_id, error = ?detail, "request failed");
        }
        _ => tracing::warn!(worker, %request_id, error_id, error = ?detail, "request failed"),
    }
    let mut body = format!("{summary} (error id {error_id}, request id {request_id})\n");
    if dev && matches!(error, InvokeError::Trap(_) | InvokeError::Handler(_)) {
        body.push_str(&format!("\n{error}\n"));
    }
    let mut response = text(status, body);
    if error.is_overload() {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response.headers_mut().insert(
        ERROR_ID_HEADER,
        HeaderValue::from_str(&error_id).expect("hex is a valid header"),
    );
    response
}
