//! Conversions between the WIT `http-types` records and the `http` crate's
//! types used by axum and reqwest.

use anyhow::{Context, Result, anyhow};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

use super::verge::platform::http_types::Host;
use super::{Method, Response};
use crate::runtime::HostState;

/// The interface only defines types.
impl Host for HostState {}

impl From<&http::Method> for Method {
    fn from(method: &http::Method) -> Self {
        match *method {
            http::Method::GET => Method::Get,
            http::Method::HEAD => Method::Head,
            http::Method::POST => Method::Post,
            http::Method::PUT => Method::Put,
            http::Method::DELETE => Method::Delete,
            http::Method::CONNECT => Method::Connect,
            http::Method::OPTIONS => Method::Options,
            http::Method::TRACE => Method::Trace,
            http::Method::PATCH => Method::Patch,
            ref other => Method::Other(other.as_str().to_owned()),
        }
    }
}

impl TryFrom<&Method> for http::Method {
    type Error = anyhow::Error;

    fn try_from(method: &Method) -> Result<Self> {
        Ok(match method {
            Method::Get => http::Method::GET,
            Method::Head => http::Method::HEAD,
            Method::Post => http::Method::POST,
            Method::Put => http::Method::PUT,
            Method::Delete => http::Method::DELETE,
            Method::Connect => http::Method::CONNECT,
            Method::Options => http::Method::OPTIONS,
            Method::Trace => http::Method::TRACE,
            Method::Patch => http::Method::PATCH,
            Method::Other(other) => http::Method::from_bytes(other.as_bytes())
                .map_err(|_| anyhow!("invalid method {other:?}"))?,
        })
    }
}

/// Header pairs as the guest sees them: lower-case names, text values.
/// Values that are not UTF-8 (rare, and legal only as obsolete text) are
/// passed lossily rather than dropped.
pub(crate) fn headers_to_wire(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(name, value)| {
            let value = match value.to_str() {
                Ok(text) => text.to_owned(),
                Err(_) => String::from_utf8_lossy(value.as_bytes()).into_owned(),
            };
            (name.as_str().to_owned(), value)
        })
        .collect()
}

/// Headers from the guest, validated: a bad name or value is an error that
/// names it.
pub(crate) fn headers_from_wire(pairs: &[(String, String)]) -> Result<HeaderMap> {
    let mut headers = HeaderMap::with_capacity(pairs.len());
    for (name, value) in pairs {
        let name = HeaderName::from_bytes(name.as_bytes())
            .with_context(|| format!("invalid header name {name:?}"))?;
        let value = HeaderValue::from_str(value)
            .with_context(|| format!("invalid value for header `{name}`"))?;
        headers.append(name, value);
    }
    Ok(headers)
}

/// The guest's response as an `http` response, or an error saying what in it
/// is not valid HTTP.
pub(crate) fn response_from_wire(response: Response) -> Result<http::Response<axum::body::Body>> {
    let status = StatusCode::from_u16(response.status)
        .ok()
        .filter(|s| s.as_u16() >= 200)
        .ok_or_else(|| anyhow!("invalid status code {}", response.status))?;
    let mut http_response = http::Response::new(axum::body::Body::from(response.body));
    *http_response.status_mut() = status;
    *http_response.headers_mut() = headers_from_wire(&response.headers)?;
    Ok(http_response)
}
