//! Outbound HTTP for guests.
//!
//! Every hop, redirects included, is checked twice: its URL against the
//! worker's `allowed_outbound_hosts`, and the address the connection goes
//! to against the address guard (`guard.rs`: never the host itself, and
//! private addresses only when a rule names them). Each hop counts against
//! `limits.subrequests`; a redirect to another origin drops the
//! credentials (`Authorization`, `Cookie`, `Proxy-Authorization`).
//!
//! Redirects are followed here rather than by reqwest's redirect policy:
//! reqwest hands a resolver the host name alone, so the check that needs
//! the port too (the host's own listeners) must know which port each hop
//! goes to. Each (scheme, port) gets a client whose resolver knows it, and
//! each hop picks its client.

mod guard;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::Url;

pub(crate) use guard::AddressGuard;
use guard::{GuardedResolver, Refused};

use super::http_types::{headers_from_wire, headers_to_wire};
use super::verge::platform::fetch::{FetchError, Host};
use super::{Request, Response};
use crate::config::OutboundRule;
use crate::runtime::HostState;

/// Redirects followed before giving up, as browsers do.
const MAX_REDIRECTS: usize = 10;

/// The header that counts how many times a request has passed through a
/// Verge host (RFC 8586): the front door refuses one that has looped.
pub(crate) const LOOP_HEADER: http::HeaderName = http::HeaderName::from_static("cdn-loop");
/// This host's entry in [`LOOP_HEADER`].
pub(crate) const LOOP_TOKEN: &str = "verge";

/// One worker version's outbound HTTP: its rules, and a client per
/// (scheme, port), built on first use so a worker that never fetches never
/// sets up TLS.
pub(crate) struct OutboundHttp {
    rules: Arc<[OutboundRule]>,
    guard: Arc<AddressGuard>,
    clients: Mutex<HashMap<(&'static str, u16), reqwest::Client>>,
}

impl OutboundHttp {
    pub(crate) fn new(rules: &[OutboundRule], guard: Arc<AddressGuard>) -> Self {
        Self {
            rules: rules.into(),
            guard,
            clients: Mutex::default(),
        }
    }

    fn client(&self, scheme: &'static str, port: u16) -> Result<reqwest::Client, FetchError> {
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(client) = clients.get(&(scheme, port)) {
            return Ok(client.clone());
        }
        let resolver = GuardedResolver {
            guard: self.guard.clone(),
            rules: self.rules.clone(),
            scheme,
            port,
        };
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(Arc::new(resolver))
            // Proxies from the environment would bypass the guard.
            .no_proxy()
            .user_agent(concat!("verge/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| {
                FetchError::Network(format!("the host's HTTP client failed to start: {e}"))
            })?;
        clients.insert((scheme, port), client.clone());
        Ok(client)
    }

    /// Checks one hop: the URL against the rules and, when its host is an
    /// address, the address against the guard (a name's addresses are
    /// checked when it resolves).
    fn check(&self, url: &Url) -> Result<(&'static str, u16), FetchError> {
        let scheme = match url.scheme() {
            "http" => "http",
            "https" => "https",
            other => {
                return Err(FetchError::InvalidRequest(format!(
                    "unsupported URL scheme {other:?}: fetch speaks http and https"
                )));
            }
        };
        let host = url
            .host()
            .ok_or_else(|| FetchError::InvalidRequest(format!("URL {url} has no host")))?;
        let port = url.port_or_known_default().unwrap_or(80);
        if !self
            .rules
            .iter()
            .any(|rule| rule.allows(scheme, &host, port))
        {
            return Err(FetchError::Denied(format!("{scheme}://{host}:{port}")));
        }
        let address = match host {
            url::Host::Ipv4(ip) => Some(ip.into()),
            url::Host::Ipv6(ip) => Some(ip.into()),
            url::Host::Domain(_) => None,
        };
        if let Some(ip) = address {
            self.guard
                .check(&self.rules, scheme, ip, port)
                .map_err(|Refused(why)| FetchError::Denied(why))?;
        }
        Ok((scheme, port))
    }
}

impl Host for HostState {
    async fn fetch(&mut self, request: Request) -> Result<Response, FetchError> {
        let mut method = http::Method::try_from(&request.method)
            .map_err(|e| FetchError::InvalidRequest(e.to_string()))?;
        let mut url = Url::parse(&request.url).map_err(|e| {
            FetchError::InvalidRequest(format!("invalid URL {:?}: {e}", request.url))
        })?;
        let mut headers = headers_from_wire(&request.headers)
            .map_err(|e| FetchError::InvalidRequest(format!("{e:#}")))?;
        // Set by the host, whatever the guest wrote: the request has
        // passed through one more Verge host.
        headers.insert(LOOP_HEADER, self.loop_header_value());
        let mut body = request.body;

        for _ in 0..=MAX_REDIRECTS {
            self.count_subrequest()?;
            let http = &self.worker().http;
            let (scheme, port) = http.check(&url)?;
            let limits = self.worker().config.limits;
            let response = http
                .client(scheme, port)?
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
                if next.origin() != url.origin() {
                    for credential in [
                        http::header::AUTHORIZATION,
                        http::header::COOKIE,
                        http::header::PROXY_AUTHORIZATION,
                    ] {
                        headers.remove(credential);
                    }
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
        return FetchError::Timeout;
    }
    // The source chain holds the useful part ("connection refused"), or
    // the guard's refusal of where a name resolved to.
    let mut message = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        if let Some(Refused(why)) = cause.downcast_ref::<Refused>() {
            return FetchError::Denied(why.clone());
        }
        message = format!("{message}: {cause}");
        source = cause.source();
    }
    FetchError::Network(message)
}
