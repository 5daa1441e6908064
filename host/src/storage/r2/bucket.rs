//! One bucket: bodies in a blob store (`object_store`), metadata in the
//! bucket's index. A write stores the body under a fresh version name
//! first and then points the key at it in one index transaction, so a
//! reader sees the old object or the new one, never half of either; the
//! replaced blob is deleted afterwards.

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use md5::{Digest, Md5};
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};

use super::body::ObjectBody;
use super::cluster_index::ClusterIndex;
use super::index::{Index, IndexPage, IndexQuery, PartRecord, Replaced};
use super::meta::{ByteRange, Conditional, ObjectMeta, WriteMetadata};
use super::{MAX_KEY_BYTES, R2Error, R2Result};

/// Blob-store chunks a streamed write is cut into.
const WRITE_CHUNK_BYTES: usize = 8 << 20;

/// What a `get` found.
pub(crate) struct Found {
    pub(crate) meta: ObjectMeta,
    /// The bytes `body` holds, for a ranged read.
    pub(crate) range: Option<Range<u64>>,
    /// None when an `only_if` condition failed.
    pub(crate) body: Option<ObjectBody>,
}

/// How a single `put` writes.
#[derive(Default)]
pub(crate) struct PutOptions {
    pub(crate) metadata: WriteMetadata,
    pub(crate) only_if: Option<Conditional>,
    /// Expected hex MD5 of the body.
    pub(crate) md5: Option<String>,
    /// Expected hex SHA-256 of the body.
    pub(crate) sha256: Option<String>,
}

/// What to list.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub(crate) struct ListOptions {
    pub(crate) prefix: Option<String>,
    pub(crate) delimiter: Option<String>,
    pub(crate) cursor: Option<String>,
    pub(crate) start_after: Option<String>,
    pub(crate) limit: Option<u32>,
}

/// The most entries one listing returns, and the default.
pub(crate) const MAX_LIST_LIMIT: u32 = 1000;

/// One page of a listing.
#[derive(Debug, serde::Serialize)]
pub(crate) struct ListPage {
    pub(crate) objects: Vec<ObjectMeta>,
    pub(crate) delimited_prefixes: Vec<String>,
    pub(crate) truncated: bool,
    pub(crate) cursor: Option<String>,
}

pub(crate) struct Bucket {
    pub(super) blobs: Arc<dyn ObjectStore>,
    pub(super) index: BucketIndex,
}

/// Where a bucket's index is: a SQLite file of this host, or the
/// cluster's database. The same operations either way.
pub(super) enum BucketIndex {
    /// Its work runs on the blocking pool.
    Local(Arc<Index>),
    Cluster(ClusterIndex),
}

impl BucketIndex {
    /// Runs `work` on a local index off the async threads.
    async fn blocking<R: Send + 'static>(
        index: &Arc<Index>,
        work: impl FnOnce(&Index) -> R2Result<R> + Send + 'static,
    ) -> R2Result<R> {
        let index = index.clone();
        tokio::task::spawn_blocking(move || work(&index))
            .await
            .map_err(|e| R2Error::Storage(anyhow::anyhow!("an index task failed: {e}")))?
    }

    pub(super) async fn get(&self, key: &str) -> R2Result<Option<ObjectMeta>> {
        match self {
            Self::Local(index) => {
                let key = key.to_owned();
                Self::blocking(index, move |index| index.get(&key)).await
            }
            Self::Cluster(index) => index.get(key).await,
        }
    }

    pub(super) async fn replace(
        &self,
        meta: ObjectMeta,
        only_if: Option<Conditional>,
    ) -> R2Result<Replaced> {
        match self {
            Self::Local(index) => {
                Self::blocking(index, move |index| index.replace(&meta, only_if.as_ref())).await
            }
            Self::Cluster(index) => index.replace(&meta, only_if.as_ref()).await,
        }
    }

    pub(super) async fn delete(&self, keys: Vec<String>) -> R2Result<Vec<String>> {
        match self {
            Self::Local(index) => Self::blocking(index, move |index| index.delete(&keys)).await,
            Self::Cluster(index) => index.delete(&keys).await,
        }
    }

    pub(super) async fn list(
        &self,
        prefix: String,
        delimiter: Option<String>,
        from: Vec<u8>,
        limit: usize,
    ) -> R2Result<IndexPage> {
        match self {
            Self::Local(index) => {
                Self::blocking(index, move |index| {
                    index.list(&IndexQuery {
                        prefix: &prefix,
                        delimiter: delimiter.as_deref(),
                        from,
                        limit,
                    })
                })
                .await
            }
            Self::Cluster(index) => {
                let query = IndexQuery {
                    prefix: &prefix,
                    delimiter: delimiter.as_deref(),
                    from,
                    limit,
                };
                index.list(&query).await
            }
        }
    }

    pub(super) async fn usage(&self) -> R2Result<(u64, u64)> {
        match self {
            Self::Local(index) => Self::blocking(index, |index| index.usage()).await,
            Self::Cluster(index) => index.usage().await,
        }
    }

    pub(super) async fn create_upload(
        &self,
        id: String,
        key: String,
        metadata: WriteMetadata,
        created: u64,
    ) -> R2Result<()> {
        match self {
            Self::Local(index) => {
                Self::blocking(index, move |index| {
                    index.create_upload(&id, &key, &metadata, created)
                })
                .await
            }
            Self::Cluster(index) => index.create_upload(&id, &key, &metadata, created).await,
        }
    }

    pub(super) async fn upload(&self, id: &str, key: &str) -> R2Result<WriteMetadata> {
        match self {
            Self::Local(index) => {
                let (id, key) = (id.to_owned(), key.to_owned());
                Self::blocking(index, move |index| index.upload(&id, &key)).await
            }
            Self::Cluster(index) => index.upload(id, key).await,
        }
    }

    pub(super) async fn put_part(&self, id: &str, part: PartRecord) -> R2Result<()> {
        match self {
            Self::Local(index) => {
                let id = id.to_owned();
                Self::blocking(index, move |index| index.put_part(&id, &part)).await
            }
            Self::Cluster(index) => index.put_part(id, &part).await,
        }
    }

    pub(super) async fn parts(&self, id: &str) -> R2Result<Vec<PartRecord>> {
        match self {
            Self::Local(index) => {
                let id = id.to_owned();
                Self::blocking(index, move |index| index.parts(&id)).await
            }
            Self::Cluster(index) => index.parts(id).await,
        }
    }

    pub(super) async fn finish_upload(
        &self,
        id: &str,
        meta: ObjectMeta,
    ) -> R2Result<Option<String>> {
        match self {
            Self::Local(index) => {
                let id = id.to_owned();
                Self::blocking(index, move |index| index.finish_upload(&id, &meta)).await
            }
            Self::Cluster(index) => index.finish_upload(id, &meta).await,
        }
    }

    pub(super) async fn abort_upload(&self, id: &str, key: &str) -> R2Result<bool> {
        match self {
            Self::Local(index) => {
                let (id, key) = (id.to_owned(), key.to_owned());
                Self::blocking(index, move |index| index.abort_upload(&id, &key)).await
            }
            Self::Cluster(index) => index.abort_upload(id, key).await,
        }
    }
}

impl Bucket {
    pub(crate) async fn head(&self, key: &str) -> R2Result<Option<ObjectMeta>> {
        check_key(key)?;
        self.index.get(key).await
    }

    /// The object under `key`: its metadata and (unless `only_if` fails)
    /// its body, or the part of it `range` names.
    pub(crate) async fn get(
        &self,
        key: &str,
        range: Option<ByteRange>,
        only_if: Option<&Conditional>,
    ) -> R2Result<Option<Found>> {
        // A write that replaces the object between reading its row and
        // opening its blob deletes the blob: read the new row and retry.
        for _ in 0..3 {
            let Some(meta) = self.head(key).await? else {
                return Ok(None);
            };
            if only_if.is_some_and(|c| !c.holds(Some(&meta))) {
                return Ok(Some(Found {
                    meta,
                    range: None,
                    body: None,
                }));
            }
            let bytes = match range {
                Some(range) => range.resolve(meta.size)?,
                None => 0..meta.size,
            };
            let body = if bytes.is_empty() {
                // Nothing to read (and a blob store refuses empty ranges).
                ObjectBody::empty()
            } else {
                let options = GetOptions {
                    range: Some(GetRange::Bounded(bytes.clone())),
                    ..GetOptions::default()
                };
                match self
                    .blobs
                    .get_opts(&blob_path(&meta.version), options)
                    .await
                {
                    Ok(blob) => ObjectBody::new(blob).await?,
                    Err(object_store::Error::NotFound { .. }) => continue,
                    Err(e) => return Err(e.into()),
                }
            };
            return Ok(Some(Found {
                meta,
                range: range.map(|_| bytes),
                body: Some(body),
            }));
        }
        Err(R2Error::Storage(anyhow::anyhow!(
            "{key:?} kept changing while it was read"
        )))
    }

    /// Stores `body` under `key`. None when `options.only_if` failed.
    pub(crate) async fn put(
        &self,
        key: &str,
        body: Bytes,
        options: PutOptions,
        max_bytes: u64,
    ) -> R2Result<Option<ObjectMeta>> {
        check_key(key)?;
        options.metadata.check()?;
        check_size(body.len() as u64, max_bytes)?;
        let want_sha = options.sha256.is_some();
        let (body, md5, sha256) = digests(body, want_sha).await?;
        if let Some(expected) = &options.md5
            && !expected.eq_ignore_ascii_case(&md5)
        {
            return Err(R2Error::InvalidArgument(format!(
                "the body's MD5 is {md5}, not {expected}"
            )));
        }
        if let (Some(expected), Some(sha)) = (&options.sha256, sha256)
            && !expected.eq_ignore_ascii_case(&sha)
        {
            return Err(R2Error::InvalidArgument(format!(
                "the body's SHA-256 is {sha}, not {expected}"
            )));
        }
        let version = new_id();
        let size = body.len() as u64;
        self.blobs
            .put(&blob_path(&version), PutPayload::from_bytes(body))
            .await?;
        let meta = object_meta(key, version, size, md5, options.metadata);
        self.commit(meta, options.only_if).await
    }

    /// Stores a streamed body under `key` (the admin API's uploads), never
    /// holding more than a chunk of it.
    pub(crate) async fn put_stream<E: std::fmt::Display>(
        &self,
        key: &str,
        mut body: impl Stream<Item = Result<Bytes, E>> + Unpin,
        metadata: WriteMetadata,
        max_bytes: u64,
    ) -> R2Result<ObjectMeta> {
        check_key(key)?;
        metadata.check()?;
        let version = new_id();
        let path = blob_path(&version);
        let mut writer = WriteMultipart::new_with_chunk_size(
            self.blobs.put_multipart(&path).await?,
            WRITE_CHUNK_BYTES,
        );
        let (mut md5, mut size) = (Md5::new(), 0u64);
        while let Some(chunk) = body.next().await {
            let chunk = match chunk {
                Ok(chunk) => chunk,
                Err(e) => {
                    writer.abort().await?;
                    return Err(R2Error::InvalidArgument(format!(
                        "reading the body failed: {e}"
                    )));
                }
            };
            size += chunk.len() as u64;
            if let Err(e) = check_size(size, max_bytes) {
                writer.abort().await?;
                return Err(e);
            }
            md5.update(&chunk);
            writer.wait_for_capacity(2).await?;
            writer.put(chunk);
        }
        writer.finish().await?;
        let meta = object_meta(key, version, size, hex::encode(md5.finalize()), metadata);
        Ok(self
            .commit(meta, None)
            .await?
            .expect("a write without conditions always happens"))
    }

    /// Points the key at the blob `meta.version` names, if `only_if`
    /// holds, and deletes the blob that loses.
    pub(super) async fn commit(
        &self,
        meta: ObjectMeta,
        only_if: Option<Conditional>,
    ) -> R2Result<Option<ObjectMeta>> {
        let replaced = self.index.replace(meta.clone(), only_if).await;
        match replaced {
            Ok(Replaced::Written { old_version }) => {
                if let Some(old) = old_version {
                    self.delete_blob(&blob_path(&old)).await;
                }
                Ok(Some(meta))
            }
            Ok(Replaced::ConditionFailed) => {
                self.delete_blob(&blob_path(&meta.version)).await;
                Ok(None)
            }
            Err(e) => {
                self.delete_blob(&blob_path(&meta.version)).await;
                Err(e)
            }
        }
    }

    /// Deletes the keys; keys that do not exist are no error.
    pub(crate) async fn delete(&self, keys: Vec<String>) -> R2Result<()> {
        keys.iter().try_for_each(|key| check_key(key))?;
        let versions = self.index.delete(keys).await?;
        for version in versions {
            self.delete_blob(&blob_path(&version)).await;
        }
        Ok(())
    }

    /// A page of the bucket's keys, in byte order.
    pub(crate) async fn list(&self, options: ListOptions) -> R2Result<ListPage> {
        let limit = options.limit.unwrap_or(MAX_LIST_LIMIT);
        if !(1..=MAX_LIST_LIMIT).contains(&limit) {
            return Err(R2Error::InvalidArgument(format!(
                "limit {limit} is out of range (1 to {MAX_LIST_LIMIT})"
            )));
        }
        let prefix = options.prefix.unwrap_or_default();
        let delimiter = options.delimiter.filter(|d| !d.is_empty());
        let mut from = prefix.as_bytes().to_vec();
        if let Some(after) = options.start_after {
            from = from.max([after.as_bytes(), &[0]].concat());
        }
        if let Some(cursor) = options.cursor.filter(|c| !c.is_empty()) {
            let bound = hex::decode(&cursor).map_err(|_| {
                R2Error::InvalidArgument(format!("{cursor:?} is not a cursor this bucket gave"))
            })?;
            from = from.max(bound);
        }
        let page = self
            .index
            .list(prefix, delimiter, from, limit as usize)
            .await?;
        Ok(ListPage {
            objects: page.objects,
            delimited_prefixes: page.delimited_prefixes,
            truncated: page.next.is_some(),
            cursor: page.next.map(hex::encode),
        })
    }

    /// How many objects the bucket holds and their bytes.
    pub(crate) async fn usage(&self) -> R2Result<(u64, u64)> {
        self.index.usage().await
    }

    /// Deletes a blob nothing points at any more. A failure leaves an
    /// unreachable blob behind, which is logged, not the caller's error:
    /// the operation itself succeeded.
    pub(super) async fn delete_blob(&self, path: &Path) {
        match self.blobs.delete(path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => tracing::warn!("R2: cannot delete unused blob {path}: {e}"),
        }
    }
}

/// The body's hex MD5 (and SHA-256, if `sha256`), hashed on a blocking
/// thread: a 16 MiB body takes a while.
pub(super) async fn digests(
    body: Bytes,
    sha256: bool,
) -> R2Result<(Bytes, String, Option<String>)> {
    tokio::task::spawn_blocking(move || {
        let md5 = hex::encode(Md5::digest(&body));
        let sha = sha256.then(|| hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&body)));
        (body, md5, sha)
    })
    .await
    .map_err(|e| R2Error::Storage(anyhow::anyhow!("hashing a body failed: {e}")))
}

/// Where the body of `version` lives in the blob store.
pub(super) fn blob_path(version: &str) -> Path {
    Path::from_iter(["data", version])
}

/// A fresh random id: 32 hex digits.
pub(super) fn new_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

pub(super) fn object_meta(
    key: &str,
    version: String,
    size: u64,
    etag: String,
    metadata: WriteMetadata,
) -> ObjectMeta {
    ObjectMeta {
        key: key.to_owned(),
        version,
        size,
        etag,
        uploaded: crate::clock::unix_now_ms() as u64,
        metadata,
    }
}

/// Refuses keys R2 refuses: empty, or longer than 1024 bytes.
pub(crate) fn check_key(key: &str) -> R2Result<()> {
    if key.is_empty() {
        return Err(R2Error::InvalidKey("a key cannot be empty".into()));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(R2Error::InvalidKey(format!(
            "the key is {} bytes, more than the {MAX_KEY_BYTES} allowed",
            key.len()
        )));
    }
    Ok(())
}

pub(super) fn check_size(size: u64, max_bytes: u64) -> R2Result<()> {
    if size > max_bytes {
        return Err(R2Error::TooLarge(format!(
            "{size} bytes, more than the {max_bytes} an object may have here (limits.r2_object_mb)"
        )));
    }
    Ok(())
}
