//! Outbound HTTP for guests, over the host's shared HTTP client.
//!
//! Every hop, redirects included, is checked against the worker's
//! `allowed_outbound_hosts` and counted against `limits.subrequests`.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use reqwest::Url;

use super::http_types::{headers_from_wire, headers_to_wire};
use super::verge::platform::fetch::{FetchError, Host};
use super::{Request, Response};
use crate::config::OutboundRule;
use crate::runtime::HostState;

/// The host's outbound HTTP client, shared by every worker and built on the
/// first fetch: a host whose workers never fetch never sets up TLS.
#[derive(Clone, Default)]
pub struct OutboundHttp(Arc<OnceLock<Result<reqwest::Client, String>>>);

impl OutboundHttp {
    fn client(&self) -> Result<&reqwest::Client, FetchError> {
        self.0
            .get_or_init(|| {
                reqwest::Client::builder()
                    // Redirects are followed here, hop by hop, so each hop is
                    // checked against the allow-list.
                    .redirect(reqwest::redirect::Policy::none())
                    .user_agent(concat!("verge/", env!("CARGO_PKG_VERSION")))
                    .build()
                    .map_err(|e| format!("the host's HTTP client failed to start: {e}"))
            })
            .as_ref()
            .map_err(|e| FetchError::Network(e.clone()))
    }
}

/// Redirects followed before giving up, as browsers do.
const MAX_REDIRECTS: usize = 10;

impl Host for HostState {
    async fn fetch(&mut self, request: Request) -> Result<Response, FetchError> {
        let mut method = http::Method::try_from(&request.method)
            .map_err(|e| FetchError::InvalidRequest(e.to_string()))?;
        let mut url = Url::parse(&request.url).map_err(|e| {
            FetchError::InvalidRequest(format!("invalid URL {:?}: {e}", request.url))
        })?;
        let headers = headers_from_wire(&request.headers)
            .map_err(|e| FetchError::InvalidRequest(format!("{e:#}")))?;
        let mut body = request.body;

        for _ in 0..=MAX_REDIRECTS {
            self.count_subrequest()?;
            check_allowed(&self.worker().config.allowed_outbound_hosts, &url)?;
            let limits = self.worker().config.limits;
            let response = self
                .worker()
                .http
                .client()?
                .request(method.clone(), url.clone())
                .headers(headers.clone())
                .body(body.clone())
                .timeout(Duration::from_millis(limits.wall_ms))
                .send()
                .await
                .map_err(network_error)?;

            if let Some(next) = redirect_target(&response) {
                // 303, and 301/302 after a POST, turn into a body-less GET.
                let status = response.status().as_u16();
                if status == 303 || (matches!(status, 301 | 302) && method == http::Method::POST) {
                    method = http::Method::GET;
                    body = Vec::new();
                }
                url = next;
                continue;
            }
            return read_response(response, limits.body_bytes()).await;
        }
        Err(FetchError::Network(format!(
            "more than {MAX_REDIRECTS} redirects"
        )))
    }
}

impl HostState {
    fn count_subrequest(&mut self) -> Result<(), FetchError> {
        let limit = self.worker().config.limits.subrequests;
        if self.subrequests >= limit {
            return Err(FetchError::TooManySubrequests(limit));
        }
        self.subrequests += 1;
        Ok(())
    }
}

fn check_allowed(rules: &[OutboundRule], url: &Url) -> Result<(), FetchError> {
    let scheme = url.scheme();
    if scheme != "http" && scheme != "https" {
        return Err(FetchError::InvalidRequest(format!(
            "unsupported URL scheme {scheme:?}: fetch speaks http and https"
        )));
    }
    let host = url
        .host_str()
        .ok_or_else(|| FetchError::InvalidRequest(format!("URL {url} has no host")))?;
    let port = url.port_or_known_default().unwrap_or(80);
    if rules.iter().any(|rule| rule.allows(scheme, host, port)) {
        Ok(())
    } else {
        Err(FetchError::Denied(format!("{scheme}://{host}:{port}")))
    }
}

/// Where a redirect response points, if it is one.
fn redirect_target(response: &reqwest::Response) -> Option<Url> {
    if !response.status().is_redirection() {
        return None;
    }
    let location = response
        .headers()
        .get(http::header::LOCATION)?
        .to_str()
        .ok()?;
    response.url().join(location).ok()
}

async fn read_response(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Response, FetchError> {
    let too_large = || FetchError::ResponseTooLarge(limit as u64);
    if response
        .content_length()
        .is_some_and(|len| len > limit as u64)
    {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(network_error)? {
        if body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Response {
        status: response.status().as_u16(),
        headers: headers_to_wire(response.headers()),
        body,
    })
}

fn network_error(error: reqwest::Error) -> FetchError {
    if error.is_timeout() {
        FetchError::Timeout
    } else {
        // The source chain holds the useful part ("connection refused").
        let mut message = error.to_string();
        let mut source = std::error::Error::source(&error);
        while let Some(cause) = source {
            message = format!("{message}: {cause}");
            source = cause.source();
        }
        FetchError::Network(message)
    }
}
