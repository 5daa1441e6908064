//! Multipart uploads, resumable across requests and restarts: the upload
//! and its parts are rows in the bucket's index, each part a blob of its
//! own (`uploads/<id>/<number>`). Completing streams the parts, in order,
//! into one new blob through the blob store's own multipart writer, so
//! neither a part nor the object is ever whole in memory.
//!
//! object_store's `MultipartUpload` is a handle inside one process and
//! `MultipartStore` exists only for some backends; staged parts work the
//! same on every backend and survive a restart.

use bytes::Bytes;
use futures::StreamExt;
use md5::{Digest, Md5};
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload, WriteMultipart};

use super::bucket::{Bucket, blob_path, check_key, check_size, digests, new_id, object_meta};
use super::index::PartRecord;
use super::meta::{ObjectMeta, WriteMetadata};
use super::{R2Error, R2Result};

/// The most parts one upload may have, as R2 allows.
pub(crate) const MAX_PARTS: u16 = 10_000;
/// The least every part but the last must hold, as R2 requires.
pub(crate) const MIN_PART_BYTES: u64 = 5 << 20;

/// A part as the uploader names it when completing.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub(crate) struct UploadedPart {
    pub(crate) part_number: u16,
    pub(crate) etag: String,
}

impl Bucket {
    /// Starts an upload to `key`; returns its id.
    pub(crate) async fn create_multipart_upload(
        &self,
        key: &str,
        metadata: WriteMetadata,
    ) -> R2Result<String> {
        check_key(key)?;
        metadata.check()?;
        let (id, key) = (new_id(), key.to_owned());
        let created = crate::clock::unix_now_ms() as u64;
        self.index
            .create_upload(id.clone(), key, metadata, created)
            .await?;
        Ok(id)
    }

    /// Stores part `number` of upload `id`, replacing an earlier one.
    pub(crate) async fn upload_part(
        &self,
        key: &str,
        id: &str,
        number: u16,
        body: Bytes,
        max_bytes: u64,
    ) -> R2Result<UploadedPart> {
        check_key(key)?;
        if !(1..=MAX_PARTS).contains(&number) {
            return Err(R2Error::InvalidArgument(format!(
                "part number {number} is out of range (1 to {MAX_PARTS})"
            )));
        }
        check_size(body.len() as u64, max_bytes)?;
        self.require_upload(key, id).await?;
        let (body, etag, _) = digests(body, false).await?;
        let part = PartRecord {
            number,
            etag,
            size: body.len() as u64,
        };
        self.blobs
            .put(&part_path(id, number), PutPayload::from_bytes(body))
            .await?;
        self.index.put_part(id, part.clone()).await?;
        Ok(UploadedPart {
            part_number: number,
            etag: part.etag,
        })
    }

    /// Joins `parts` into the object under `key`, ends the upload and
    /// deletes its parts.
    pub(crate) async fn complete_multipart_upload(
        &self,
        key: &str,
        id: &str,
        parts: &[UploadedPart],
        max_bytes: u64,
    ) -> R2Result<ObjectMeta> {
        check_key(key)?;
        let metadata = self.require_upload(key, id).await?;
        let stored = self.index.parts(id).await?;
        let chosen = choose_parts(parts, &stored)?;
        let size = chosen.iter().map(|p| p.size).sum();
        check_size(size, max_bytes)?;
        let version = new_id();
        let path = blob_path(&version);
        let mut writer = WriteMultipart::new_with_chunk_size(
            self.blobs.put_multipart(&path).await?,
            MIN_PART_BYTES as usize,
        );
        let mut digests = Md5::new();
        for part in &chosen {
            let mut chunks = self
                .blobs
                .get(&part_path(id, part.number))
                .await?
                .into_stream();
            while let Some(chunk) = chunks.next().await {
                writer.wait_for_capacity(2).await?;
                writer.put(chunk?);
            }
            digests.update(hex::decode(&part.etag).map_err(|e| R2Error::Storage(e.into()))?);
        }
        writer.finish().await?;
        let etag = format!("{}-{}", hex::encode(digests.finalize()), chosen.len());
        let meta = object_meta(key, version, size, etag, metadata);
        match self.index.finish_upload(id, meta.clone()).await {
            Ok(old) => {
                if let Some(old) = old {
                    self.delete_blob(&blob_path(&old)).await;
                }
                self.delete_parts(id, &stored).await;
                Ok(meta)
            }
            Err(e) => {
                self.delete_blob(&path).await;
                Err(e)
            }
        }
    }

    /// Ends upload `id` without an object and deletes its parts.
    pub(crate) async fn abort_multipart_upload(&self, key: &str, id: &str) -> R2Result<()> {
        check_key(key)?;
        check_upload_id(id)?;
        let stored = self.index.parts(id).await?;
        if !self.index.abort_upload(id, key).await? {
            return Err(R2Error::NoSuchUpload(format!(
                "no upload {id:?} for key {key:?}"
            )));
        }
        self.delete_parts(id, &stored).await;
        Ok(())
    }

    /// The upload's metadata, or [`R2Error::NoSuchUpload`].
    async fn require_upload(&self, key: &str, id: &str) -> R2Result<WriteMetadata> {
        check_upload_id(id)?;
        self.index.upload(id, key).await
    }

    async fn delete_parts(&self, id: &str, parts: &[PartRecord]) {
        for part in parts {
            self.delete_blob(&part_path(id, part.number)).await;
        }
    }
}

/// Upload ids name blob paths, so only ids this host could have made get
/// that far.
fn check_upload_id(id: &str) -> R2Result<()> {
    if id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(R2Error::NoSuchUpload(format!("{id:?} is not an upload id")))
    }
}

fn part_path(id: &str, number: u16) -> Path {
    Path::from_iter(["uploads", id, &number.to_string()])
}

/// The stored parts `named` picks, checked as R2 checks them: at least
/// one, ascending numbers, each uploaded with that etag, every one but the
/// last at least [`MIN_PART_BYTES`].
fn choose_parts(named: &[UploadedPart], stored: &[PartRecord]) -> R2Result<Vec<PartRecord>> {
    let invalid = |why: String| Err(R2Error::InvalidArgument(why));
    if named.is_empty() {
        return invalid("a multipart upload needs at least one part".into());
    }
    if named
        .windows(2)
        .any(|w| w[0].part_number >= w[1].part_number)
    {
        return invalid("parts must be listed in ascending order of part number, each once".into());
    }
    let mut chosen = Vec::with_capacity(named.len());
    for (i, part) in named.iter().enumerate() {
        let Some(found) = stored.iter().find(|s| s.number == part.part_number) else {
            return invalid(format!("part {} was never uploaded", part.part_number));
        };
        if found.etag != part.etag.trim_matches('"') {
            return invalid(format!(
                "part {} has etag {}, not {}",
                part.part_number, found.etag, part.etag
            ));
        }
        if i + 1 < named.len() && found.size < MIN_PART_BYTES {
            return invalid(format!(
                "part {} is {} bytes; every part but the last must be at least {MIN_PART_BYTES}",
                part.part_number, found.size
            ));
        }
        chosen.push(found.clone());
    }
    Ok(chosen)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(number: u16, size: u64) -> PartRecord {
        PartRecord {
            number,
            etag: format!("{number:032x}"),
            size,
        }
    }

    fn named(number: u16) -> UploadedPart {
        UploadedPart {
            part_number: number,
            etag: format!("\"{number:032x}\""),
        }
    }

    #[test]
    fn parts_are_checked_as_r2_checks_them() {
        let parts = [stored(1, MIN_PART_BYTES), stored(2, 1), stored(3, 1)];
        assert_eq!(
            choose_parts(&[named(1), named(3)], &parts).unwrap().len(),
            2
        );
        assert!(choose_parts(&[], &parts).is_err());
        assert!(choose_parts(&[named(3), named(1)], &parts).is_err());
        assert!(
            choose_parts(&[named(2), named(3)], &parts).is_err(),
            "small middle part"
        );
        assert!(choose_parts(&[named(4)], &parts).is_err());
        let wrong = UploadedPart {
            part_number: 1,
            etag: "x".into(),
        };
        assert!(choose_parts(&[wrong], &parts).is_err());
    }

    #[test]
    fn only_well_formed_upload_ids_reach_a_path() {
        assert!(check_upload_id(&"a".repeat(32)).is_ok());
        assert!(check_upload_id("../../etc").is_err());
        assert!(check_upload_id(&"g".repeat(32)).is_err());
    }
}
