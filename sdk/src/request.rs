use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{Error, Headers, Method, Result, Url};

/// An HTTP request: the one a worker receives, or one it sends with
/// [`fetch`](crate::fetch()).
///
/// ```
/// use verge::{Method, Request};
///
/// let req = Request::new(Method::Post, "https://api.example.com/items?limit=5")?
///     .with_json(&serde_json::json!({ "name": "widget" }))?;
/// assert_eq!(req.path(), "/items");
/// assert_eq!(req.query_param("limit").as_deref(), Some("5"));
/// assert_eq!(req.headers().get("content-type"), Some("application/json"));
/// # Ok::<(), verge::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Request {
    method: Method,
    url: Url,
    headers: Headers,
    body: Vec<u8>,
}

impl Request {
    /// A request with no headers and an empty body. `url` must be absolute.
    pub fn new(method: Method, url: &str) -> Result<Self> {
        Ok(Self::from_parts(
            method,
            Url::parse(url)?,
            Headers::new(),
            Vec::new(),
        ))
    }

    /// A `GET` request for `url`.
    pub fn get(url: &str) -> Result<Self> {
        Self::new(Method::Get, url)
    }

    pub(crate) fn from_parts(method: Method, url: Url, headers: Headers, body: Vec<u8>) -> Self {
        Self {
            method,
            url,
            headers,
            body,
        }
    }

    pub(crate) fn into_parts(self) -> (Method, Url, Headers, Vec<u8>) {
        (self.method, self.url, self.headers, self.body)
    }

    /// The request method.
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// The full URL, as the client addressed it.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// The URL path, e.g. `/items/42`.
    pub fn path(&self) -> &str {
        self.url.path()
    }

    /// The first value of the query parameter `name`, percent-decoded.
    pub fn query_param(&self, name: &str) -> Option<String> {
        self.url
            .query_pairs()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.into_owned())
    }

    /// The query string deserialized into `T`; a mismatch is
    /// [`Error::BadRequest`].
    ///
    /// ```
    /// #[derive(serde::Deserialize)]
    /// struct Page { offset: u32, limit: Option<u32> }
    ///
    /// let req = verge::Request::get("https://example.com/?offset=20")?;
    /// let page: Page = req.query()?;
    /// assert_eq!((page.offset, page.limit), (20, None));
    /// # Ok::<(), verge::Error>(())
    /// ```
    pub fn query<T: DeserializeOwned>(&self) -> Result<T> {
        serde_urlencoded::from_str(self.url.query().unwrap_or(""))
            .map_err(|e| Error::BadRequest(format!("query string: {e}")))
    }

    /// The request headers.
    pub fn headers(&self) -> &Headers {
        &self.headers
    }

    /// The request headers, to change them.
    pub fn headers_mut(&mut self) -> &mut Headers {
        &mut self.headers
    }

    /// The first value of header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)
    }

    /// The body bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.body
    }

    /// The body as UTF-8 text; anything else is [`Error::BadRequest`].
    pub fn text(&self) -> Result<&str> {
        std::str::from_utf8(&self.body)
            .map_err(|e| Error::BadRequest(format!("body is not UTF-8: {e}")))
    }

    /// The body parsed as JSON into `T`; a parse error is
    /// [`Error::BadRequest`] naming the line and column.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_slice(&self.body)
            .map_err(|e| Error::BadRequest(format!("body is not the expected JSON: {e}")))
    }

    /// Sets header `name` to `value`, replacing earlier values.
    pub fn with_header(mut self, name: &str, value: &str) -> Result<Self> {
        self.headers.set(name, value)?;
        Ok(self)
    }

    /// Replaces the body.
    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// Replaces the body with `value` as JSON and sets `content-type`.
    pub fn with_json<T: Serialize + ?Sized>(self, value: &T) -> Result<Self> {
        let body = serde_json::to_vec(value)?;
        self.with_body(body)
            .with_header("content-type", "application/json")
    }
}
