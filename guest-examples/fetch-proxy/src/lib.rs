//! Fetches `?url=` on the client's behalf, through the host's allow-list
//! (`allowed_outbound_hosts` in verge.toml).
//!
//! Try `/proxy?url=https://example.com/` under `verge up`. A URL the
//! allow-list does not name, or one that leads back to the host itself
//! (`http://127.0.0.1:8787/hello`), is refused with a 403 saying why.

use serde_json::json;
use verge::{Env, Error, FetchError, Request, Response, Result};

#[verge::worker]
fn fetch(req: Request, _env: Env) -> Result<Response> {
    let Some(target) = req.query_param("url") else {
        return Err(Error::BadRequest("pass the URL to fetch as ?url=".into()));
    };
    let upstream = Request::get(&target).map_err(|e| Error::BadRequest(e.to_string()))?;
    match verge::fetch(upstream) {
        Ok(response) => {
            let content_type = response
                .headers()
                .get("content-type")
                .unwrap_or("application/octet-stream")
                .to_owned();
            Ok(Response::bytes(response.body().to_vec())
                .with_status(response.status())
                .with_header("content-type", &content_type)?
                .with_header("x-proxied-url", &target)?)
        }
        Err(Error::Fetch(error)) => {
            verge::warn!("fetch of {target} failed: {error}");
            let status = match error {
                FetchError::Denied(_) => 403,
                FetchError::Timeout => 504,
                _ => 502,
            };
            Ok(Response::json(&json!({ "error": error.to_string() }))?.with_status(status))
        }
        Err(other) => Err(other),
    }
}
