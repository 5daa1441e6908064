//! `verge:platform/r2`: a worker's R2 buckets, reached by binding name
//! (`[[r2_buckets]]`), and the hand-off of an object's body to the
//! response (`respond-with`).
//!
//! Every bucket call runs as a task of its own that the guest awaits
//! (`on_bucket`), so none of the bucket's work counts as the guest's CPU
//! time.

use std::sync::Arc;

use bytes::Bytes;
use wasmtime::component::Resource;
use wasmtime_wasi::WasiView;

use super::Response;
use super::verge::platform::r2::{
    Conditional, Error, GetOptions, GetResult, Host, HostObjectBody, HttpMetadata, ListOptions,
    ListResult, MultipartOptions, ObjectMeta, PutOptions, Range, UploadedPart,
};
use crate::runtime::HostState;
use crate::storage::r2::{self as store, Bucket, ObjectBody, R2Error, R2Result};

/// The response header naming a body handed off with `respond-with`.
pub(crate) const BODY_HEADER: &str = "verge-r2-body";

/// The most one `object-body.read` returns, whatever the guest asks for:
/// the host holds the chunk until the guest has it.
const MAX_READ_BYTES: u32 = 4 << 20;

/// The most R2 object bodies one request (or one Durable Object instance)
/// may hold open at once: each may be an open file or connection.
/// Cloudflare allows a worker six open connections.
const MAX_OPEN_BODIES: u32 = 32;

/// A body the guest gave up for the response; only this store's response
/// can name it.
pub(crate) struct HandedOff(ObjectBody);

impl From<R2Error> for Error {
    fn from(error: R2Error) -> Self {
        match error {
            R2Error::InvalidKey(why) => Error::InvalidKey(why),
            R2Error::TooLarge(why) => Error::TooLarge(why),
            R2Error::InvalidArgument(why) => Error::InvalidArgument(why),
            R2Error::NoSuchUpload(why) => Error::NoSuchUpload(why),
            other => Error::Storage(other.to_string()),
        }
    }
}

impl From<HttpMetadata> for store::HttpMetadata {
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

impl From<store::HttpMetadata> for HttpMetadata {
    fn from(m: store::HttpMetadata) -> Self {
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

impl From<Conditional> for store::Conditional {
    fn from(c: Conditional) -> Self {
        Self {
            etag_matches: c.etag_matches,
            etag_does_not_match: c.etag_does_not_match,
            uploaded_before: c.uploaded_before,
            uploaded_after: c.uploaded_after,
        }
    }
}

fn metadata(http: Option<HttpMetadata>, custom: Vec<(String, String)>) -> store::WriteMetadata {
    store::WriteMetadata {
        http: http.map(Into::into).unwrap_or_default(),
        custom,
    }
}

fn to_wire(meta: store::ObjectMeta, range: Option<std::ops::Range<u64>>) -> ObjectMeta {
    ObjectMeta {
        key: meta.key,
        version: meta.version,
        size: meta.size,
        etag: meta.etag,
        uploaded: meta.uploaded,
        http_metadata: meta.metadata.http.into(),
        custom_metadata: meta.metadata.custom,
        range: range.map(|r| (r.start, r.end - r.start)),
    }
}

impl HostState {
    /// Runs `work` on the bucket bound as `binding`, as a task of its
    /// own: the guest awaits it, so none of the bucket's work (hashing,
    /// copying bodies, assembling parts) is charged as the guest's CPU
    /// time. The returned future borrows nothing from `self`.
    fn on_bucket<T, F>(
        &self,
        binding: &str,
        work: impl FnOnce(Arc<Bucket>) -> F + Send + 'static,
    ) -> Result<impl Future<Output = Result<T, Error>> + Send + 'static, Error>
    where
        T: Send + 'static,
        F: Future<Output = R2Result<T>> + Send + 'static,
    {
        let worker = self.worker();
        let bound = worker
            .config
            .r2_buckets
            .iter()
            .find(|b| b.binding == binding)
            .ok_or_else(|| Error::UnknownBinding(binding.to_owned()))?;
        let (r2, name) = (worker.r2.clone(), bound.bucket_name.clone());
        let task = async move { work(r2.bucket(&name).await?).await };
        Ok(async move {
            tokio::spawn(task)
                .await
                .map_err(|e| Error::Storage(format!("the bucket's task failed: {e}")))?
                .map_err(Error::from)
        })
    }

    fn r2_object_bytes(&self) -> u64 {
        self.worker().config.limits.r2_object_bytes()
    }

    /// Takes the body the response names in its `verge-r2-body` header
    /// (removing the header) out of this store, to be streamed as the
    /// response's body. A token that names no body this request handed
    /// off is an error: a guest cannot reach another request's objects.
    pub(crate) fn take_response_body(
        &mut self,
        response: &mut Response,
    ) -> Result<Option<ObjectBody>, String> {
        let mut named = None;
        response.headers.retain(|(name, value)| {
            let ours = name.eq_ignore_ascii_case(BODY_HEADER);
            if ours && named.is_none() {
                named = Some(value.clone());
            }
            !ours
        });
        let Some(token) = named else {
            return Ok(None);
        };
        let not_handed_off = || {
            format!(
                "its {BODY_HEADER} header names {token:?}, not a body this request handed off with respond-with"
            )
        };
        let rep = token.trim().parse::<u32>().map_err(|_| not_handed_off())?;
        let body = self
            .ctx()
            .table
            .delete(Resource::<HandedOff>::new_own(rep))
            .map_err(|_| not_handed_off())?;
        self.r2_bodies = self.r2_bodies.saturating_sub(1);
        Ok(Some(body.0))
    }
}

impl Host for HostState {
    async fn get(
        &mut self,
        binding: String,
        key: String,
        options: GetOptions,
    ) -> Result<Option<GetResult>, Error> {
        let range = options.range.map(|range| match range {
            Range::Offset(r) => store::ByteRange::Offset {
                offset: r.offset,
                length: r.length,
            },
            Range::Suffix(n) => store::ByteRange::Suffix(n),
        });
        let only_if = options.only_if.map(store::Conditional::from);
        let get = self.on_bucket(&binding, move |bucket| async move {
            bucket.get(&key, range, only_if.as_ref()).await
        })?;
        let Some(found) = get.await? else {
            return Ok(None);
        };
        let body = match found.body {
            Some(_) if self.r2_bodies >= MAX_OPEN_BODIES => {
                return Err(Error::TooLarge(format!(
                    "{MAX_OPEN_BODIES} object bodies are open already: read or drop one first"
                )));
            }
            Some(body) => {
                let body = self
                    .ctx()
                    .table
                    .push(body)
                    .map_err(|e| Error::Storage(e.to_string()))?;
                self.r2_bodies += 1;
                Some(body)
            }
            None => None,
        };
        Ok(Some(GetResult {
            meta: to_wire(found.meta, found.range),
            body,
        }))
    }

    async fn head(&mut self, binding: String, key: String) -> Result<Option<ObjectMeta>, Error> {
        let head = self.on_bucket(
            &binding,
            move |bucket| async move { bucket.head(&key).await },
        )?;
        Ok(head.await?.map(|meta| to_wire(meta, None)))
    }

    async fn put(
        &mut self,
        binding: String,
        key: String,
        body: Vec<u8>,
        options: PutOptions,
    ) -> Result<Option<ObjectMeta>, Error> {
        let max_bytes = self.r2_object_bytes();
        let options = store::PutOptions {
            metadata: metadata(options.http_metadata, options.custom_metadata),
            only_if: options.only_if.map(Into::into),
            md5: options.md5,
            sha256: options.sha256,
        };
        let put = self.on_bucket(&binding, move |bucket| async move {
            bucket
                .put(&key, Bytes::from(body), options, max_bytes)
                .await
        })?;
        Ok(put.await?.map(|meta| to_wire(meta, None)))
    }

    async fn delete(&mut self, binding: String, keys: Vec<String>) -> Result<(), Error> {
        self.on_bucket(
            &binding,
            move |bucket| async move { bucket.delete(keys).await },
        )?
        .await
    }

    async fn list(&mut self, binding: String, options: ListOptions) -> Result<ListResult, Error> {
        let (http, custom) = (
            options.include_http_metadata,
            options.include_custom_metadata,
        );
        let query = store::ListOptions {
            prefix: options.prefix,
            delimiter: options.delimiter,
            cursor: options.cursor,
            start_after: options.start_after,
            limit: options.limit,
        };
        let page = self
            .on_bucket(
                &binding,
                move |bucket| async move { bucket.list(query).await },
            )?
            .await?;
        Ok(ListResult {
            objects: page
                .objects
                .into_iter()
                .map(|mut meta| {
                    // R2 lists metadata only when asked to.
                    if !http {
                        meta.metadata.http = store::HttpMetadata::default();
                    }
                    if !custom {
                        meta.metadata.custom.clear();
                    }
                    to_wire(meta, None)
                })
                .collect(),
            delimited_prefixes: page.delimited_prefixes,
            truncated: page.truncated,
            cursor: page.cursor,
        })
    }

    async fn create_multipart_upload(
        &mut self,
        binding: String,
        key: String,
        options: MultipartOptions,
    ) -> Result<String, Error> {
        let metadata = metadata(options.http_metadata, options.custom_metadata);
        self.on_bucket(&binding, move |bucket| async move {
            bucket.create_multipart_upload(&key, metadata).await
        })?
        .await
    }

    async fn upload_part(
        &mut self,
        binding: String,
        key: String,
        upload_id: String,
        part_number: u16,
        body: Vec<u8>,
    ) -> Result<UploadedPart, Error> {
        let max_bytes = self.r2_object_bytes();
        let part = self
            .on_bucket(&binding, move |bucket| async move {
                let body = Bytes::from(body);
                bucket
                    .upload_part(&key, &upload_id, part_number, body, max_bytes)
                    .await
            })?
            .await?;
        Ok(UploadedPart {
            part_number: part.part_number,
            etag: part.etag,
        })
    }

    async fn complete_multipart_upload(
        &mut self,
        binding: String,
        key: String,
        upload_id: String,
        parts: Vec<UploadedPart>,
    ) -> Result<ObjectMeta, Error> {
        let max_bytes = self.r2_object_bytes();
        let parts: Vec<store::UploadedPart> = parts
            .into_iter()
            .map(|p| store::UploadedPart {
                part_number: p.part_number,
                etag: p.etag,
            })
            .collect();
        let meta = self
            .on_bucket(&binding, move |bucket| async move {
                bucket
                    .complete_multipart_upload(&key, &upload_id, &parts, max_bytes)
                    .await
            })?
            .await?;
        Ok(to_wire(meta, None))
    }

    async fn abort_multipart_upload(
        &mut self,
        binding: String,
        key: String,
        upload_id: String,
    ) -> Result<(), Error> {
        self.on_bucket(&binding, move |bucket| async move {
            bucket.abort_multipart_upload(&key, &upload_id).await
        })?
        .await
    }

    fn respond_with(&mut self, body: Resource<ObjectBody>) -> String {
        if self.object.is_some() {
            // An object's response goes back to a worker, not to the
            // client, and its store outlives the event: nothing would
            // ever take the body.
            if self.ctx().table.delete(body).is_ok() {
                self.r2_bodies = self.r2_bodies.saturating_sub(1);
            }
            return "unavailable: a Durable Object cannot hand off an R2 body; \
                    return it from the worker instead"
                .into();
        }
        let table = self.ctx().table;
        // Both can only fail on a handle wasmtime already checked, or on a
        // full table; the token then names nothing and the response fails
        // with a clear error.
        let handed = table
            .delete(body)
            .map_err(anyhow::Error::from)
            .and_then(|body| Ok(table.push(HandedOff(body))?));
        match handed {
            Ok(handed) => handed.rep().to_string(),
            Err(e) => format!("unavailable: {e}"),
        }
    }
}

impl HostObjectBody for HostState {
    async fn read(&mut self, body: Resource<ObjectBody>, max_bytes: u32) -> Result<Vec<u8>, Error> {
        let body = self
            .ctx()
            .table
            .get_mut(&body)
            .map_err(|e| Error::Storage(e.to_string()))?;
        Ok(body.read(max_bytes.min(MAX_READ_BYTES) as usize).await?)
    }

    fn remaining(&mut self, body: Resource<ObjectBody>) -> u64 {
        self.ctx().table.get(&body).map_or(0, ObjectBody::remaining)
    }

    fn drop(&mut self, body: Resource<ObjectBody>) -> wasmtime::Result<()> {
        self.ctx().table.delete(body)?;
        self.r2_bodies = self.r2_bodies.saturating_sub(1);
        Ok(())
    }
}
