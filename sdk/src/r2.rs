//! R2 buckets: objects (files with metadata) in a bucket bound in
//! verge.toml, with the method names workers-rs gives Cloudflare's R2.
//!
//! ```toml
//! [[r2_buckets]]
//! binding = "BUCKET"
//! bucket_name = "assets"
//! ```
//!
//! ```no_run
//! use verge::{Env, Request, Response, Result};
//!
//! fn handle(req: Request, env: Env) -> Result<Response> {
//!     let bucket = env.r2("BUCKET")?;
//!     bucket.put("notes/hello.txt", "hello").execute()?;
//!     // Streamed from storage to the client: the body never passes
//!     // through the worker's memory.
//!     match bucket.get("notes/hello.txt").execute()? {
//!         Some(object) => Response::from_r2(object),
//!         None => Ok(Response::not_found()),
//!     }
//! }
//! ```
//!
//! Bodies are read in chunks ([`ObjectBody`] implements
//! [`std::io::Read`]); bodies to write come from memory, so a file larger
//! than a request body goes up in parts through a [`MultipartUpload`].

use std::collections::BTreeMap;

use crate::__private::bindings::verge::platform::r2 as host;
use crate::{Env, Error, Response, Result};

/// Why an R2 call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum R2Error {
    /// No `[[r2_buckets]]` binding with that name in verge.toml.
    #[error("no R2 bucket is bound as `{0}` in verge.toml")]
    UnknownBinding(String),
    /// The key is empty or longer than 1024 bytes.
    #[error("invalid key: {0}")]
    InvalidKey(String),
    /// The object, part or metadata is larger than allowed.
    #[error("too large: {0}")]
    TooLarge(String),
    /// An argument the bucket cannot use: a range past the end, a bad
    /// part list, a checksum that does not match, a bad cursor.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// No multipart upload with that id for that key.
    #[error("no such upload: {0}")]
    NoSuchUpload(String),
    /// The storage behind the bucket failed.
    #[error("storage failed: {0}")]
    Storage(String),
    /// [`Response::from_r2`] was given an object without a body (from
    /// `head`, or a `get` whose `only_if` failed).
    #[error("the object has no body to respond with")]
    NoBody,
}

impl From<host::Error> for R2Error {
    fn from(error: host::Error) -> Self {
        match error {
            host::Error::UnknownBinding(b) => R2Error::UnknownBinding(b),
            host::Error::InvalidKey(m) => R2Error::InvalidKey(m),
            host::Error::TooLarge(m) => R2Error::TooLarge(m),
            host::Error::InvalidArgument(m) => R2Error::InvalidArgument(m),
            host::Error::NoSuchUpload(m) => R2Error::NoSuchUpload(m),
            host::Error::Storage(m) => R2Error::Storage(m),
        }
    }
}

type R2Result<T> = std::result::Result<T, R2Error>;

impl Env {
    /// The R2 bucket bound as `binding` in verge.toml's `[[r2_buckets]]`.
    /// An unknown binding shows up as [`R2Error::UnknownBinding`] on first
    /// use.
    pub fn r2(&self, binding: &str) -> Result<Bucket> {
        Ok(Bucket {
            binding: binding.to_owned(),
        })
    }
}

/// An R2 bucket, from [`Env::r2`].
#[derive(Debug, Clone)]
pub struct Bucket {
    binding: String,
}

impl Bucket {
    /// Writes `value` under `key`, replacing what was there; finish with
    /// [`PutOptionsBuilder::execute`].
    ///
    /// ```no_run
    /// # fn demo(bucket: verge::Bucket) -> verge::Result<()> {
    /// use verge::HttpMetadata;
    /// let object = bucket
    ///     .put("avatars/ada.png", vec![0x89, b'P', b'N', b'G'])
    ///     .http_metadata(HttpMetadata {
    ///         content_type: Some("image/png".into()),
    ///         ..Default::default()
    ///     })
    ///     .custom_metadata([("owner", "ada")])
    ///     .execute()?
    ///     .expect("no only_if, so the put happens");
    /// assert_eq!(object.size(), 4);
    /// # Ok(()) }
    /// ```
    pub fn put(&self, key: impl Into<String>, value: impl Into<Vec<u8>>) -> PutOptionsBuilder<'_> {
        PutOptionsBuilder {
            bucket: self,
            key: key.into(),
            value: value.into(),
            options: host::PutOptions {
                http_metadata: None,
                custom_metadata: Vec::new(),
                only_if: None,
                md5: None,
                sha256: None,
            },
        }
    }

    /// Reads the object under `key`; finish with
    /// [`GetOptionsBuilder::execute`].
    ///
    /// ```no_run
    /// # fn demo(bucket: verge::Bucket) -> verge::Result<()> {
    /// use verge::Range;
    /// if let Some(mut object) = bucket
    ///     .get("logs/today.txt")
    ///     .range(Range::Suffix { suffix: 100 })
    ///     .execute()?
    /// {
    ///     let tail = object.body().expect("no only_if, so a body").text()?;
    ///     verge::info!("last bytes: {tail}");
    /// }
    /// # Ok(()) }
    /// ```
    pub fn get(&self, key: impl Into<String>) -> GetOptionsBuilder<'_> {
        GetOptionsBuilder {
            bucket: self,
            key: key.into(),
            options: host::GetOptions {
                range: None,
                only_if: None,
            },
        }
    }

    /// The object's metadata without its body, or `None`.
    pub fn head(&self, key: impl AsRef<str>) -> R2Result<Option<Object>> {
        Ok(host::head(&self.binding, key.as_ref())?.map(|meta| Object { meta, body: None }))
    }

    /// Deletes `key`; a missing key is no error.
    pub fn delete(&self, key: impl Into<String>) -> R2Result<()> {
        self.delete_multiple(vec![key.into()])
    }

    /// Deletes every key in `keys` (up to 1000, as R2 allows).
    pub fn delete_multiple(&self, keys: Vec<String>) -> R2Result<()> {
        if keys.len() > 1000 {
            return Err(R2Error::InvalidArgument(format!(
                "{} keys to delete at once, more than 1000",
                keys.len()
            )));
        }
        Ok(host::delete(&self.binding, &keys)?)
    }

    /// Lists keys in byte order; finish with [`ListOptionsBuilder::execute`].
    ///
    /// ```no_run
    /// # fn demo(bucket: verge::Bucket) -> verge::Result<()> {
    /// let mut cursor = None;
    /// loop {
    ///     let mut list = bucket.list().prefix("photos/").delimiter("/").limit(100);
    ///     if let Some(c) = cursor.take() {
    ///         list = list.cursor(c);
    ///     }
    ///     let page = list.execute()?;
    ///     for album in page.delimited_prefixes() {
    ///         verge::info!("album {album}");
    ///     }
    ///     for object in page.objects() {
    ///         verge::info!("{} ({} bytes)", object.key(), object.size());
    ///     }
    ///     match page.cursor() {
    ///         Some(next) if page.truncated() => cursor = Some(next.to_owned()),
    ///         _ => break,
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub fn list(&self) -> ListOptionsBuilder<'_> {
        ListOptionsBuilder {
            bucket: self,
            options: host::ListOptions {
                prefix: None,
                delimiter: None,
                cursor: None,
                start_after: None,
                limit: None,
                include_http_metadata: false,
                include_custom_metadata: false,
            },
        }
    }

    /// Starts a multipart upload to `key`; finish with
    /// [`CreateMultipartUploadBuilder::execute`].
    ///
    /// ```no_run
    /// # fn demo(bucket: verge::Bucket, part_one: Vec<u8>, part_two: Vec<u8>) -> verge::Result<()> {
    /// let upload = bucket.create_multipart_upload("backups/db.tar").execute()?;
    /// // Usually one part per request: keep upload.upload_id() and resume
    /// // with bucket.resume_multipart_upload(key, id).
    /// let one = upload.upload_part(1, part_one)?; // at least 5 MiB
    /// let two = upload.upload_part(2, part_two)?; // the last may be smaller
    /// let object = upload.complete(vec![one, two])?;
    /// verge::info!("stored {} bytes, etag {}", object.size(), object.etag());
    /// # Ok(()) }
    /// ```
    pub fn create_multipart_upload(
        &self,
        key: impl Into<String>,
    ) -> CreateMultipartUploadBuilder<'_> {
        CreateMultipartUploadBuilder {
            bucket: self,
            key: key.into(),
            options: host::MultipartOptions {
                http_metadata: None,
                custom_metadata: Vec::new(),
            },
        }
    }

    /// The upload `upload_id` of `key`, begun in an earlier request. The
    /// id is checked on first use.
    pub fn resume_multipart_upload(
        &self,
        key: impl Into<String>,
        upload_id: impl Into<String>,
    ) -> R2Result<MultipartUpload> {
        Ok(MultipartUpload {
            binding: self.binding.clone(),
            key: key.into(),
            upload_id: upload_id.into(),
        })
    }
}

/// The headers an object is served with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HttpMetadata {
    /// `Content-Type`.
    pub content_type: Option<String>,
    /// `Content-Language`.
    pub content_language: Option<String>,
    /// `Content-Disposition`.
    pub content_disposition: Option<String>,
    /// `Content-Encoding`.
    pub content_encoding: Option<String>,
    /// `Cache-Control`.
    pub cache_control: Option<String>,
    /// `Expires`, in milliseconds since the Unix epoch.
    pub cache_expiry: Option<u64>,
}

impl From<HttpMetadata> for host::HttpMetadata {
    fn from(m: HttpMetadata) -> Self {
        Self {
            content_type: m.content_type,
            content_language: m.content_language,
            content_disposition: m.content_disposition,
            content_encoding: m.content_encoding,
            cache_control: m.cache_control,
            cache_expiry: m.cache_expiry,
        }
    }
}

impl From<host::HttpMetadata> for HttpMetadata {
    fn from(m: host::HttpMetadata) -> Self {
        Self {
            content_type: m.content_type,
            content_language: m.content_language,
            content_disposition: m.content_disposition,
            content_encoding: m.content_encoding,
            cache_control: m.cache_control,
            cache_expiry: m.cache_expiry,
        }
    }
}

/// Conditions an operation runs under (R2's `onlyIf`). Etags may be
/// quoted and comma-separated; `*` matches any. Times are milliseconds
/// since the Unix epoch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Conditional {
    /// Only if the object's etag is one of these.
    pub etag_matches: Option<String>,
    /// Only if the object's etag is none of these.
    pub etag_does_not_match: Option<String>,
    /// Only if the object was uploaded before this time.
    pub uploaded_before: Option<u64>,
    /// Only if the object was uploaded after this time.
    pub uploaded_after: Option<u64>,
}

impl From<Conditional> for host::Conditional {
    fn from(c: Conditional) -> Self {
        Self {
            etag_matches: c.etag_matches,
            etag_does_not_match: c.etag_does_not_match,
            uploaded_before: c.uploaded_before,
            uploaded_after: c.uploaded_after,
        }
    }
}

/// The part of an object a `get` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Range {
    /// `length` bytes from `offset`.
    OffsetWithLength {
        /// The first byte.
        offset: u64,
        /// How many bytes.
        length: u64,
    },
    /// From `offset` to the end.
    OffsetToEnd {
        /// The first byte.
        offset: u64,
    },
    /// The first `length` bytes.
    Prefix {
        /// How many bytes.
        length: u64,
    },
    /// The last `suffix` bytes.
    Suffix {
        /// How many bytes.
        suffix: u64,
    },
}

impl Range {
    /// The range an HTTP `Range` header asks for (`bytes=0-99`,
    /// `bytes=100-`, `bytes=-100`); `None` for anything else, including
    /// several ranges, which a server may answer with the whole object.
    ///
    /// ```
    /// use verge::Range;
    /// assert_eq!(Range::from_header("bytes=0-99"), Some(Range::OffsetWithLength { offset: 0, length: 100 }));
    /// assert_eq!(Range::from_header("bytes=100-"), Some(Range::OffsetToEnd { offset: 100 }));
    /// assert_eq!(Range::from_header("bytes=-5"), Some(Range::Suffix { suffix: 5 }));
    /// assert_eq!(Range::from_header("bytes=5-1"), None);
    /// ```
    pub fn from_header(value: &str) -> Option<Range> {
        let spec = value.trim().strip_prefix("bytes=")?;
        if spec.contains(',') {
            return None;
        }
        let (first, last) = spec.split_once('-')?;
        let (first, last) = (first.trim(), last.trim());
        match (first.is_empty(), last.is_empty()) {
            (true, false) => Some(Range::Suffix {
                suffix: last.parse().ok()?,
            }),
            (false, true) => Some(Range::OffsetToEnd {
                offset: first.parse().ok()?,
            }),
            (false, false) => {
                let (offset, last): (u64, u64) = (first.parse().ok()?, last.parse().ok()?);
                (last >= offset).then(|| Range::OffsetWithLength {
                    offset,
                    length: last - offset + 1,
                })
            }
            (true, true) => None,
        }
    }
}

impl From<Range> for host::Range {
    fn from(range: Range) -> Self {
        let offset = |offset, length| host::Range::Offset(host::OffsetRange { offset, length });
        match range {
            Range::OffsetWithLength { offset: o, length } => offset(o, Some(length)),
            Range::OffsetToEnd { offset: o } => offset(o, None),
            Range::Prefix { length } => offset(0, Some(length)),
            Range::Suffix { suffix } => host::Range::Suffix(suffix),
        }
    }
}

/// Custom metadata from pairs of strings.
fn custom_pairs<K: Into<String>, V: Into<String>>(
    pairs: impl IntoIterator<Item = (K, V)>,
) -> Vec<(String, String)> {
    pairs
        .into_iter()
        .map(|(k, v)| (k.into(), v.into()))
        .collect()
}

/// A `put` being set up, from [`Bucket::put`].
#[must_use = "nothing is written until execute()"]
pub struct PutOptionsBuilder<'a> {
    bucket: &'a Bucket,
    key: String,
    value: Vec<u8>,
    options: host::PutOptions,
}

impl PutOptionsBuilder<'_> {
    /// The headers the object is served with.
    pub fn http_metadata(mut self, metadata: HttpMetadata) -> Self {
        self.options.http_metadata = Some(metadata.into());
        self
    }

    /// Name-value pairs kept with the object (8 KiB in all, with the HTTP
    /// metadata).
    pub fn custom_metadata<K: Into<String>, V: Into<String>>(
        mut self,
        metadata: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        self.options.custom_metadata = custom_pairs(metadata);
        self
    }

    /// Writes only if `condition` holds for the object there now.
    pub fn only_if(mut self, condition: Conditional) -> Self {
        self.options.only_if = Some(condition.into());
        self
    }

    /// Fails the put unless the body's MD5 is this (hex).
    pub fn md5(mut self, hex: impl Into<String>) -> Self {
        self.options.md5 = Some(hex.into());
        self
    }

    /// Fails the put unless the body's SHA-256 is this (hex).
    pub fn sha256(mut self, hex: impl Into<String>) -> Self {
        self.options.sha256 = Some(hex.into());
        self
    }

    /// Writes. `None` when an [`only_if`](Self::only_if) condition failed
    /// and nothing was written.
    pub fn execute(self) -> R2Result<Option<Object>> {
        let written = host::put(&self.bucket.binding, &self.key, &self.value, &self.options)?;
        Ok(written.map(|meta| Object { meta, body: None }))
    }
}

/// A `get` being set up, from [`Bucket::get`].
#[must_use = "nothing is read until execute()"]
pub struct GetOptionsBuilder<'a> {
    bucket: &'a Bucket,
    key: String,
    options: host::GetOptions,
}

impl GetOptionsBuilder<'_> {
    /// Reads only this part of the body.
    pub fn range(mut self, range: Range) -> Self {
        self.options.range = Some(range.into());
        self
    }

    /// Returns the body only if `condition` holds; otherwise the object
    /// comes back without one, as R2 does.
    pub fn only_if(mut self, condition: Conditional) -> Self {
        self.options.only_if = Some(condition.into());
        self
    }

    /// Reads: `None` when no object has the key.
    pub fn execute(self) -> R2Result<Option<Object>> {
        let found = host::get(&self.bucket.binding, &self.key, &self.options)?;
        Ok(found.map(|found| Object {
            meta: found.meta,
            body: found.body.map(ObjectBody),
        }))
    }
}

/// What to include with each listed object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Include {
    /// [`Object::http_metadata`].
    HttpMetadata,
    /// [`Object::custom_metadata`].
    CustomMetadata,
}

/// A listing being set up, from [`Bucket::list`].
#[must_use = "nothing is listed until execute()"]
pub struct ListOptionsBuilder<'a> {
    bucket: &'a Bucket,
    options: host::ListOptions,
}

impl ListOptionsBuilder<'_> {
    /// Only keys starting with `prefix`.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.options.prefix = Some(prefix.into());
        self
    }

    /// Rolls keys with `delimiter` after the prefix up into
    /// [`Objects::delimited_prefixes`], like directories.
    pub fn delimiter(mut self, delimiter: impl Into<String>) -> Self {
        self.options.delimiter = Some(delimiter.into());
        self
    }

    /// Continues where the page with this [`Objects::cursor`] stopped.
    pub fn cursor(mut self, cursor: impl Into<String>) -> Self {
        self.options.cursor = Some(cursor.into());
        self
    }

    /// Only keys after `key`.
    pub fn start_after(mut self, key: impl Into<String>) -> Self {
        self.options.start_after = Some(key.into());
        self
    }

    /// At most `limit` entries (objects and delimited prefixes), 1 to 1000;
    /// 1000 by default.
    pub fn limit(mut self, limit: u32) -> Self {
        self.options.limit = Some(limit);
        self
    }

    /// Metadata to return with each object; none by default, as R2.
    pub fn include(mut self, include: impl IntoIterator<Item = Include>) -> Self {
        for item in include {
            match item {
                Include::HttpMetadata => self.options.include_http_metadata = true,
                Include::CustomMetadata => self.options.include_custom_metadata = true,
            }
        }
        self
    }

    /// Lists one page.
    pub fn execute(self) -> R2Result<Objects> {
        let page = host::list(&self.bucket.binding, &self.options)?;
        Ok(Objects {
            objects: page
                .objects
                .into_iter()
                .map(|meta| Object { meta, body: None })
                .collect(),
            delimited_prefixes: page.delimited_prefixes,
            truncated: page.truncated,
            cursor: page.cursor,
        })
    }
}

/// One page of a listing.
#[derive(Debug)]
pub struct Objects {
    objects: Vec<Object>,
    delimited_prefixes: Vec<String>,
    truncated: bool,
    cursor: Option<String>,
}

impl Objects {
    /// The objects, in key order (without bodies).
    pub fn objects(&self) -> &[Object] {
        &self.objects
    }

    /// The prefixes rolled up by the delimiter, in order.
    pub fn delimited_prefixes(&self) -> &[String] {
        &self.delimited_prefixes
    }

    /// More entries follow.
    pub fn truncated(&self) -> bool {
        self.truncated
    }

    /// Where the next page starts, when [`truncated`](Self::truncated).
    pub fn cursor(&self) -> Option<&str> {
        self.cursor.as_deref()
    }
}

/// A stored object: its metadata, and its body when a `get` read one.
#[derive(Debug)]
pub struct Object {
    meta: host::ObjectMeta,
    body: Option<ObjectBody>,
}

impl Object {
    /// The key.
    pub fn key(&self) -> &str {
        &self.meta.key
    }

    /// A fresh id for every write of the key.
    pub fn version(&self) -> &str {
        &self.meta.version
    }

    /// The whole object's size in bytes (not just a range's).
    pub fn size(&self) -> u64 {
        self.meta.size
    }

    /// The etag, unquoted: hex MD5 for a put, `<hex>-<parts>` for a
    /// multipart upload.
    pub fn etag(&self) -> &str {
        &self.meta.etag
    }

    /// The etag quoted, as the `ETag` header carries it.
    pub fn http_etag(&self) -> String {
        format!("\"{}\"", self.meta.etag)
    }

    /// When it was written, in milliseconds since the Unix epoch.
    pub fn uploaded(&self) -> u64 {
        self.meta.uploaded
    }

    /// The headers it is served with.
    pub fn http_metadata(&self) -> HttpMetadata {
        self.meta.http_metadata.clone().into()
    }

    /// Its custom metadata.
    pub fn custom_metadata(&self) -> BTreeMap<String, String> {
        self.meta.custom_metadata.iter().cloned().collect()
    }

    /// For a ranged `get`: the bytes the body holds, as (offset, length).
    pub fn range(&self) -> Option<(u64, u64)> {
        self.meta.range
    }

    /// Whether it has a body: not when it came from `head`, `list` or a
    /// `get` whose `only_if` failed.
    pub fn has_body(&self) -> bool {
        self.body.is_some()
    }

    /// The body, to read; `None` when this object came from `head`,
    /// `list` or a `get` whose `only_if` failed.
    pub fn body(&mut self) -> Option<&mut ObjectBody> {
        self.body.as_mut()
    }

    /// Takes the body out of the object.
    pub fn into_body(self) -> Option<ObjectBody> {
        self.body
    }
}

/// An object's body, read from storage in chunks as you read it.
///
/// ```no_run
/// # fn demo(bucket: verge::Bucket) -> verge::Result<()> {
/// use std::io::Read;
/// let mut object = bucket.get("big.csv").execute()?.expect("exists");
/// let body = object.body().expect("a get without only_if has a body");
/// let mut chunk = vec![0; 64 * 1024];
/// let mut lines = 0;
/// loop {
///     let n = body.read(&mut chunk).map_err(verge::Error::msg)?;
///     if n == 0 {
///         break;
///     }
///     lines += chunk[..n].iter().filter(|&&b| b == b'\n').count();
/// }
/// verge::info!("{lines} lines");
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct ObjectBody(host::ObjectBody);

/// The most one read asks the host for.
const READ_CHUNK_BYTES: u32 = 1 << 20;

impl ObjectBody {
    /// Bytes not read yet.
    pub fn remaining(&self) -> u64 {
        self.0.remaining()
    }

    /// The rest of the body, in memory.
    pub fn bytes(&mut self) -> R2Result<Vec<u8>> {
        let mut all = Vec::with_capacity(usize::try_from(self.remaining()).unwrap_or(0));
        loop {
            let chunk = self.0.read(READ_CHUNK_BYTES)?;
            if chunk.is_empty() {
                return Ok(all);
            }
            all.extend_from_slice(&chunk);
        }
    }

    /// The rest of the body as UTF-8 text.
    pub fn text(&mut self) -> Result<String> {
        String::from_utf8(self.bytes()?).map_err(|e| Error::msg(format!("body is not UTF-8: {e}")))
    }
}

impl std::io::Read for ObjectBody {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let want = u32::try_from(buf.len())
            .unwrap_or(u32::MAX)
            .min(READ_CHUNK_BYTES);
        let chunk = self
            .0
            .read(want)
            .map_err(|e| std::io::Error::other(R2Error::from(e)))?;
        buf[..chunk.len()].copy_from_slice(&chunk);
        Ok(chunk.len())
    }
}

/// A multipart upload being set up, from [`Bucket::create_multipart_upload`].
#[must_use = "nothing is created until execute()"]
pub struct CreateMultipartUploadBuilder<'a> {
    bucket: &'a Bucket,
    key: String,
    options: host::MultipartOptions,
}

impl CreateMultipartUploadBuilder<'_> {
    /// The headers the finished object is served with.
    pub fn http_metadata(mut self, metadata: HttpMetadata) -> Self {
        self.options.http_metadata = Some(metadata.into());
        self
    }

    /// Custom metadata of the finished object.
    pub fn custom_metadata<K: Into<String>, V: Into<String>>(
        mut self,
        metadata: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        self.options.custom_metadata = custom_pairs(metadata);
        self
    }

    /// Starts the upload.
    pub fn execute(self) -> R2Result<MultipartUpload> {
        let upload_id =
            host::create_multipart_upload(&self.bucket.binding, &self.key, &self.options)?;
        Ok(MultipartUpload {
            binding: self.bucket.binding.clone(),
            key: self.key,
            upload_id,
        })
    }
}

/// An object uploaded in parts, across as many requests as it takes:
/// keep [`upload_id`](Self::upload_id) and come back with
/// [`Bucket::resume_multipart_upload`].
#[derive(Debug, Clone)]
pub struct MultipartUpload {
    binding: String,
    key: String,
    upload_id: String,
}

/// A part as [`MultipartUpload::upload_part`] stored it; hand them all to
/// [`MultipartUpload::complete`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct UploadedPart {
    part_number: u16,
    etag: String,
}

impl UploadedPart {
    /// A part uploaded in an earlier request, as its number and etag.
    pub fn new(part_number: u16, etag: impl Into<String>) -> Self {
        Self {
            part_number,
            etag: etag.into(),
        }
    }

    /// Its number, 1 to 10000.
    pub fn part_number(&self) -> u16 {
        self.part_number
    }

    /// Its etag (hex MD5 of the part).
    pub fn etag(&self) -> &str {
        &self.etag
    }
}

impl MultipartUpload {
    /// The key the object will have.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The upload's id, to resume it in another request.
    pub fn upload_id(&self) -> &str {
        &self.upload_id
    }

    /// Stores part `part_number` (1 to 10000). Every part but the last
    /// must be at least 5 MiB; uploading a number again replaces it.
    pub fn upload_part(&self, part_number: u16, value: impl AsRef<[u8]>) -> R2Result<UploadedPart> {
        let part = host::upload_part(
            &self.binding,
            &self.key,
            &self.upload_id,
            part_number,
            value.as_ref(),
        )?;
        Ok(UploadedPart {
            part_number: part.part_number,
            etag: part.etag,
        })
    }

    /// Joins `parts`, in ascending order, into the object.
    pub fn complete(self, parts: impl IntoIterator<Item = UploadedPart>) -> R2Result<Object> {
        let parts: Vec<host::UploadedPart> = parts
            .into_iter()
            .map(|p| host::UploadedPart {
                part_number: p.part_number,
                etag: p.etag,
            })
            .collect();
        let meta =
            host::complete_multipart_upload(&self.binding, &self.key, &self.upload_id, &parts)?;
        Ok(Object { meta, body: None })
    }

    /// Ends the upload without an object and deletes its parts.
    pub fn abort(self) -> R2Result<()> {
        Ok(host::abort_multipart_upload(
            &self.binding,
            &self.key,
            &self.upload_id,
        )?)
    }
}

impl Response {
    /// A response whose body is `object`'s, streamed by the host from
    /// storage to the client without passing through the worker (as
    /// `new Response(object.body)` on Cloudflare): `200`, or `206` with
    /// `Content-Range` for a ranged `get`, with the object's
    /// `Content-Type`, `ETag` and other HTTP metadata.
    ///
    /// ```no_run
    /// # fn demo(req: verge::Request, bucket: verge::Bucket) -> verge::Result<verge::Response> {
    /// use verge::{Range, Response};
    /// let mut get = bucket.get(req.path().trim_start_matches('/'));
    /// if let Some(range) = req.header("range").and_then(Range::from_header) {
    ///     get = get.range(range);
    /// }
    /// match get.execute()? {
    ///     Some(object) => Response::from_r2(object),
    ///     None => Ok(Response::not_found()),
    /// }
    /// # }
    /// ```
    pub fn from_r2(object: Object) -> Result<Response> {
        let Object { meta, body } = object;
        let body = body.ok_or(R2Error::NoBody)?;
        let mut response = Response::empty().with_status(200);
        let headers = response.headers_mut();
        if let Some((offset, length)) = meta.range {
            let end = (offset + length).max(1) - 1;
            headers.set(
                "content-range",
                &format!("bytes {offset}-{end}/{}", meta.size),
            )?;
        }
        let http = meta.http_metadata;
        for (name, value) in [
            ("content-type", http.content_type),
            ("content-language", http.content_language),
            ("content-disposition", http.content_disposition),
            ("content-encoding", http.content_encoding),
            ("cache-control", http.cache_control),
        ] {
            if let Some(value) = value {
                headers.set(name, &value)?;
            }
        }
        headers.set("etag", &format!("\"{}\"", meta.etag))?;
        headers.set("accept-ranges", "bytes")?;
        headers.set("verge-r2-body", &host::respond_with(body.0))?;
        let status = if meta.range.is_some() { 206 } else { 200 };
        Ok(response.with_status(status))
    }
}
