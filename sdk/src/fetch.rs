use crate::__private::bindings::verge::platform::fetch::{self as host, FetchError as WireError};
use crate::__private::{request_to_wire, response_from_wire};
use crate::{FetchError, Request, Response, Result};

/// Sends `request` to another server and returns its response.
///
/// The destination must be allowed by `allowed_outbound_hosts` in
/// verge.toml, and each call counts against the per-request subrequest
/// limit. The guest blocks until the response has arrived; the host does the
/// I/O asynchronously.
///
/// ```no_run
/// # fn handler() -> verge::Result<verge::Response> {
/// let upstream = verge::fetch(verge::Request::get("https://api.example.com/status")?)?;
/// let status: serde_json::Value = upstream.body_json()?;
/// verge::Response::json(&status)
/// # }
/// ```
pub fn fetch(request: Request) -> Result<Response> {
    match host::fetch(&request_to_wire(request)) {
        Ok(response) => Ok(response_from_wire(response)),
        Err(error) => Err(fetch_error_from_wire(error).into()),
    }
}

fn fetch_error_from_wire(error: WireError) -> FetchError {
    match error {
        WireError::Denied(host) => FetchError::Denied(host),
        WireError::InvalidRequest(why) => FetchError::InvalidRequest(why),
        WireError::TooManySubrequests(limit) => FetchError::TooManySubrequests(limit),
        WireError::Timeout => FetchError::Timeout,
        WireError::Network(why) => FetchError::Network(why),
        WireError::ResponseTooLarge(limit) => FetchError::ResponseTooLarge(limit),
    }
}
