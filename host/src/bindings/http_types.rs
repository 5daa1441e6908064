//! Conversions between the WIT `http-types` records and the `http` crate's
//! types used by axum and reqwest.

use anyhow::{Context, Result, anyhow};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};

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
        let (name, value) = header_from_wire(name, value)?;
        headers.append(name, value);
    }
    Ok(headers)
}

fn header_from_wire(name: &str, value: &str) -> Result<(HeaderName, HeaderValue)> {
    let name = HeaderName::from_bytes(name.as_bytes())
        .with_context(|| format!("invalid header name {name:?}"))?;
    let value = HeaderValue::from_str(value)
        .with_context(|| format!("invalid value for header `{name}`"))?;
    Ok((name, value))
}

/// Headers that describe the connection or the message's framing: the
/// host decides them, never the guest. A guest-set `content-length` or
/// `transfer-encoding` that disagreed with the body would let a client on
/// a kept-alive connection read the rest as a second, forged response.
/// (Compared as parsed names: checking every response against a list of
/// strings would parse each of them again.)
const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::TRANSFER_ENCODING,
    header::TE,
    header::TRAILER,
    header::UPGRADE,
    header::CONTENT_LENGTH,
];

/// The guest's response as an `http` response, framed by the host, or an
/// error saying what in it is not valid HTTP. For a `head` request the
/// guest's `content-length` stays: it describes the body a GET would get.
pub(crate) fn response_from_wire(
    response: Response,
    head: bool,
) -> Result<http::Response<axum::body::Body>> {
    let status = StatusCode::from_u16(response.status)
        .ok()
        .filter(|s| s.as_u16() >= 200)
        .ok_or_else(|| anyhow!("invalid status code {}", response.status))?;
    let mut headers = HeaderMap::with_capacity(response.headers.len());
    let mut named_by_connection = Vec::new();
    let mut head_length = None;
    for (name, value) in &response.headers {
        let (name, value) = header_from_wire(name, value)?;
        if name == header::CONNECTION {
            named_by_connection.extend(
                value
                    .to_str()
                    .unwrap_or_default()
                    .split(',')
                    .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok()),
            );
        } else if name == header::CONTENT_LENGTH
            && head
            && value.to_str().is_ok_and(|v| v.parse::<u64>().is_ok())
        {
            head_length = Some(value);
        } else if !HOP_BY_HOP.contains(&name) {
            headers.append(name, value);
        }
    }
    for name in named_by_connection {
        headers.remove(name);
    }
    if let Some(length) = head_length {
        headers.insert(header::CONTENT_LENGTH, length);
    }
    let mut http_response = http::Response::new(axum::body::Body::from(response.body));
    *http_response.status_mut() = status;
    *http_response.headers_mut() = headers;
    Ok(http_response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_frames_responses_not_the_guest() {
        let response = Response {
            status: 200,
            headers: vec![
                ("content-length".into(), "2".into()),
                ("transfer-encoding".into(), "chunked".into()),
                ("connection".into(), "keep-alive, x-secret".into()),
                ("x-secret".into(), "1".into()),
                ("x-kept".into(), "yes".into()),
            ],
            body: b"hello".to_vec(),
        };
        let framed = response_from_wire(response, false).unwrap();
        let headers = framed.headers();
        for gone in [
            "content-length",
            "transfer-encoding",
            "connection",
            "x-secret",
        ] {
            assert!(!headers.contains_key(gone), "{gone}");
        }
        assert_eq!(headers["x-kept"], "yes");
    }

    #[test]
    fn a_head_response_keeps_its_length() {
        let response = Response {
            status: 200,
            headers: vec![("content-length".into(), "1234".into())],
            body: Vec::new(),
        };
        let framed = response_from_wire(response, true).unwrap();
        assert_eq!(framed.headers()["content-length"], "1234");
    }
}
