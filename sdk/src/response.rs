use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{Error, Headers, Result};

/// An HTTP response: the one a worker returns, or one [`fetch`](crate::fetch())
/// received.
///
/// ```
/// use verge::Response;
///
/// let res = Response::json(&serde_json::json!({ "ok": true }))?.with_status(201);
/// assert_eq!(res.status(), 201);
/// assert_eq!(res.headers().get("content-type"), Some("application/json"));
///
/// let missing = Response::error("no such item", 404);
/// assert_eq!(missing.body_text()?, "no such item");
/// # Ok::<(), verge::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Response {
    status: u16,
    headers: Headers,
    body: Vec<u8>,
}

impl Response {
    /// A response with `status`, the given `content-type` and body.
    fn with_content(status: u16, content_type: &str, body: Vec<u8>) -> Self {
        let mut headers = Headers::new();
        headers
            .set("content-type", content_type)
            .expect("content types used here are valid header values");
        Self {
            status,
            headers,
            body,
        }
    }

    /// `200 OK` with a `text/plain` body.
    pub fn text(body: impl Into<String>) -> Self {
        Self::with_content(200, "text/plain; charset=utf-8", body.into().into_bytes())
    }

    /// `200 OK` with a `text/html` body.
    pub fn html(body: impl Into<String>) -> Self {
        Self::with_content(200, "text/html; charset=utf-8", body.into().into_bytes())
    }

    /// `200 OK` with `value` serialized as JSON.
    pub fn json<T: Serialize + ?Sized>(value: &T) -> Result<Self> {
        Ok(Self::with_content(
            200,
            "application/json",
            serde_json::to_vec(value)?,
        ))
    }

    /// `200 OK` with a binary body.
    pub fn bytes(body: impl Into<Vec<u8>>) -> Self {
        Self::with_content(200, "application/octet-stream", body.into())
    }

    /// `204 No Content`.
    pub fn empty() -> Self {
        Self {
            status: 204,
            headers: Headers::new(),
            body: Vec::new(),
        }
    }

    /// A plain-text error response with `status`.
    pub fn error(message: impl Into<String>, status: u16) -> Self {
        Self::text(message).with_status(status)
    }

    /// `404 Not Found`.
    pub fn not_found() -> Self {
        Self::error("Not Found", 404)
    }

    /// `302 Found` pointing at `location`.
    pub fn redirect(location: &str) -> Result<Self> {
        let mut res = Self::empty().with_status(302);
        res.headers.set("location", location)?;
        Ok(res)
    }

    pub(crate) fn from_parts(status: u16, headers: Headers, body: Vec<u8>) -> Self {
        Self {
            status,
            headers,
            body,
        }
    }

    pub(crate) fn into_parts(self) -> (u16, Headers, Vec<u8>) {
        (self.status, self.headers, self.body)
    }

    /// Replaces the status code.
    pub fn with_status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }

    /// Sets header `name` to `value`, replacing earlier values.
    pub fn with_header(mut self, name: &str, value: &str) -> Result<Self> {
        self.headers.set(name, value)?;
        Ok(self)
    }

    /// The status code.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The response headers.
    pub fn headers(&self) -> &Headers {
        &self.headers
    }

    /// The response headers, to change them.
    pub fn headers_mut(&mut self) -> &mut Headers {
        &mut self.headers
    }

    /// The body bytes.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// The body as UTF-8 text.
    pub fn body_text(&self) -> Result<&str> {
        std::str::from_utf8(&self.body).map_err(|e| Error::msg(format!("body is not UTF-8: {e}")))
    }

    /// The body parsed as JSON into `T`.
    pub fn body_json<T: DeserializeOwned>(&self) -> Result<T> {
        Ok(serde_json::from_slice(&self.body)?)
    }
}
