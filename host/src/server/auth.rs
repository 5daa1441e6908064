//! What stands in front of the admin API: the `Host` it is addressed by
//! must be one it answers to (against DNS rebinding: a page on an
//! attacker's domain cannot reach it through a victim's browser), and the
//! bearer token must match.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{StatusCode, header};
use subtle::ConstantTimeEq;

use super::errors::json_error;

/// What a request to the admin API must present.
#[derive(Clone)]
pub(super) struct AdminGate {
    token: Arc<str>,
    /// Names (lower case) the API may be addressed by besides IP
    /// addresses.
    hosts: Arc<[String]>,
}

impl AdminGate {
    pub(super) fn new(token: &str, extra_hosts: &[String]) -> Self {
        let hosts = ["localhost".to_owned()]
            .into_iter()
            .chain(extra_hosts.iter().map(|h| h.to_ascii_lowercase()))
            .collect();
        Self {
            token: token.into(),
            hosts,
        }
    }

    /// Whether `host` (a `Host` header: a name or an address, maybe with a
    /// port) is one the API answers to. An IP address cannot be rebound;
    /// a name must be listed.
    fn allows_host(&self, host: &str) -> bool {
        let Ok(authority) = host.parse::<http::uri::Authority>() else {
            return false;
        };
        let name = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        name.parse::<std::net::IpAddr>().is_ok()
            || self.hosts.iter().any(|h| h.eq_ignore_ascii_case(name))
    }
}

/// Refuses requests addressed to a name the API does not answer to, and
/// requests whose `Authorization: Bearer` token is missing or wrong.
pub(super) async fn check(State(gate): State<AdminGate>, request: Request, next: Next) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| request.uri().authority().map(|a| a.as_str()))
        .unwrap_or_default();
    if !gate.allows_host(host) {
        return json_error(
            StatusCode::MISDIRECTED_REQUEST,
            format!(
                "the admin API does not answer to {host:?}: address it by IP, as localhost, or add the name with --admin-host"
            ),
        )
        .into_response();
    }
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match presented {
        Some(presented) if bool::from(presented.as_bytes().ct_eq(gate.token.as_bytes())) => {
            next.run(request).await
        }
        Some(_) => unauthorized("invalid admin token"),
        None => unauthorized(
            "missing admin token: send `Authorization: Bearer <token>` (VERGE_ADMIN_TOKEN, or the admin-token file in the host's data directory)",
        ),
    }
}

fn unauthorized(message: &str) -> Response {
    let mut response = json_error(StatusCode::UNAUTHORIZED, message).into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        http::HeaderValue::from_static("Bearer"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_addresses_and_listed_names_pass() {
        let gate = AdminGate::new("token", &["admin.internal".into()]);
        for good in [
            "127.0.0.1:8788",
            "localhost:8788",
            "LOCALHOST",
            "[::1]:8788",
            "10.0.0.5:8788",
            "admin.internal:8788",
        ] {
            assert!(gate.allows_host(good), "{good}");
        }
        for bad in [
            "evil.example:8788",
            "",
            "127.0.0.1.evil.example",
            "localhost.evil",
        ] {
            assert!(!gate.allows_host(bad), "{bad}");
        }
    }
}
