//! A bucket's index in a cluster: the rows `index.rs` keeps in a SQLite
//! file, in the cluster's Postgres instead (`r2_objects`, `r2_uploads`,
//! `r2_parts`; migrations/0003_r2_index.sql), so every host sees the same
//! keys. The semantics are the SQLite index's: keys in byte order (BYTEA),
//! a key's current version decided in one transaction, conditional
//! replaces atomic, of two racing completions of an upload one wins.

use std::collections::BTreeSet;

use anyhow::Context;
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Postgres, Row, Transaction};

use super::index::{IndexPage, IndexQuery, PartRecord, Replaced, Taken, from_json, to_json};
use super::meta::{Conditional, ObjectMeta, WriteMetadata};
use super::{R2Error, R2Result};

/// The first key of the two-key advisory locks that serialize writes to
/// one R2 key (the second is a hash of bucket and key). Other advisory
/// locks of the cluster take one 64-bit key, a separate space.
const KEY_LOCK_CLASS: i32 = 0x5232;

const OBJECT_COLUMNS: &str = "key, version, size, etag, uploaded, metadata";

pub(crate) struct ClusterIndex {
    pool: PgPool,
    bucket: String,
}

impl ClusterIndex {
    /// Bucket `bucket`'s index, recorded in `r2_buckets` so every host
    /// lists it.
    pub(super) async fn open(pool: PgPool, bucket: &str) -> anyhow::Result<Self> {
        sqlx::query("INSERT INTO r2_buckets (name) VALUES ($1) ON CONFLICT (name) DO NOTHING")
            .bind(bucket)
            .execute(&pool)
            .await
            .with_context(|| format!("recording R2 bucket {bucket} in the cluster"))?;
        Ok(Self {
            pool,
            bucket: bucket.to_owned(),
        })
    }

    /// Bucket `bucket`'s index, to read without recording the bucket.
    pub(super) fn of(pool: PgPool, bucket: &str) -> Self {
        Self {
            pool,
            bucket: bucket.to_owned(),
        }
    }

    /// Whether the cluster has a bucket named `name`.
    pub(super) async fn exists(pool: &PgPool, name: &str) -> R2Result<bool> {
        Ok(
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM r2_buckets WHERE name = $1)")
                .bind(name)
                .fetch_one(pool)
                .await?,
        )
    }

    /// Every bucket the cluster has.
    pub(super) async fn names(pool: &PgPool) -> R2Result<BTreeSet<String>> {
        let names: Vec<String> = sqlx::query_scalar("SELECT name FROM r2_buckets")
            .fetch_all(pool)
            .await?;
        Ok(names.into_iter().collect())
    }

    pub(crate) async fn get(&self, key: &str) -> R2Result<Option<ObjectMeta>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {OBJECT_COLUMNS} FROM r2_objects WHERE bucket = $1 AND key = $2"
        )))
        .bind(&self.bucket)
        .bind(key.as_bytes())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(object_row).transpose()
    }

    /// Makes `meta` the key's current version if `only_if` holds for the
    /// version it replaces.
    pub(crate) async fn replace(
        &self,
        meta: &ObjectMeta,
        only_if: Option<&Conditional>,
    ) -> R2Result<Replaced> {
        let mut tx = self.pool.begin().await?;
        let current = self.lock_key(&mut tx, &meta.key).await?;
        if only_if.is_some_and(|c| !c.holds(current.as_ref())) {
            return Ok(Replaced::ConditionFailed);
        }
        self.upsert(&mut tx, meta).await?;
        tx.commit().await?;
        Ok(Replaced::Written {
            old_version: current.map(|c| c.version),
        })
    }

    /// Takes the write lock of `key` until the transaction ends (held
    /// whether or not the key exists, so a conditional create cannot race
    /// another) and reads its current row.
    async fn lock_key(
        &self,
        tx: &mut Transaction<'static, Postgres>,
        key: &str,
    ) -> R2Result<Option<ObjectMeta>> {
        sqlx::query("SELECT pg_advisory_xact_lock($1, $2)")
            .bind(KEY_LOCK_CLASS)
            .bind(key_hash(&self.bucket, key))
            .execute(&mut **tx)
            .await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {OBJECT_COLUMNS} FROM r2_objects WHERE bucket = $1 AND key = $2 FOR UPDATE"
        )))
        .bind(&self.bucket)
        .bind(key.as_bytes())
        .fetch_optional(&mut **tx)
        .await?;
        row.as_ref().map(object_row).transpose()
    }

    async fn upsert(
        &self,
        tx: &mut Transaction<'static, Postgres>,
        meta: &ObjectMeta,
    ) -> R2Result<()> {
        sqlx::query(
            "INSERT INTO r2_objects (bucket, key, version, size, etag, uploaded, metadata)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (bucket, key) DO UPDATE SET
                 version = excluded.version, size = excluded.size, etag = excluded.etag,
                 uploaded = excluded.uploaded, metadata = excluded.metadata",
        )
        .bind(&self.bucket)
        .bind(meta.key.as_bytes())
        .bind(&meta.version)
        .bind(to_i64(meta.size)?)
        .bind(&meta.etag)
        .bind(to_i64(meta.uploaded)?)
        .bind(to_json(&meta.metadata)?)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// Removes the keys; returns the versions whose blobs are now unused.
    pub(crate) async fn delete(&self, keys: &[String]) -> R2Result<Vec<String>> {
        let mut keys: Vec<&[u8]> = keys.iter().map(|k| k.as_bytes()).collect();
        keys.sort_unstable();
        keys.dedup();
        Ok(sqlx::query_scalar(
            "DELETE FROM r2_objects WHERE bucket = $1 AND key = ANY($2::bytea[]) RETURNING version",
        )
        .bind(&self.bucket)
        .bind(&keys)
        .fetch_all(&self.pool)
        .await?)
    }

    /// A page of keys, as `Index::list` finds it: keys from `query.from`
    /// in byte order, those past a delimiter rolled up into one prefix
    /// each. Rows come a page at a time; a rolled-up prefix is skipped
    /// whole with one new query, however many keys it holds.
    pub(crate) async fn list(&self, query: &IndexQuery<'_>) -> R2Result<IndexPage> {
        let upper = [query.prefix.as_bytes(), &[0xFF]].concat();
        let mut page = IndexPage::new();
        let mut from = query.from.clone();
        'query: loop {
            let taken = page.objects.len() + page.delimited_prefixes.len();
            // One row more than the page holds says whether another follows.
            let want = query.limit - taken + 1;
            let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {OBJECT_COLUMNS} FROM r2_objects
                 WHERE bucket = $1 AND key >= $2 AND key < $3 ORDER BY key LIMIT $4"
            )))
            .bind(&self.bucket)
            .bind(&from)
            .bind(&upper)
            .bind(want as i64)
            .fetch_all(&self.pool)
            .await?;
            let complete = rows.len() < want;
            for row in &rows {
                match page.take(query, object_row(row)?, &mut from) {
                    Taken::Full => break 'query,
                    // The rest of these rows may be under the prefix.
                    Taken::Prefix => continue 'query,
                    Taken::Object => {}
                }
            }
            if complete {
                break;
            }
        }
        Ok(page)
    }

    /// How many objects the bucket holds and their bytes.
    pub(crate) async fn usage(&self) -> R2Result<(u64, u64)> {
        let (objects, bytes): (i64, i64) = sqlx::query_as(
            "SELECT count(*), coalesce(sum(size), 0)::bigint FROM r2_objects WHERE bucket = $1",
        )
        .bind(&self.bucket)
        .fetch_one(&self.pool)
        .await?;
        Ok((objects as u64, bytes as u64))
    }

    pub(crate) async fn create_upload(
        &self,
        id: &str,
        key: &str,
        metadata: &WriteMetadata,
        created: u64,
    ) -> R2Result<()> {
        sqlx::query(
            "INSERT INTO r2_uploads (bucket, id, key, metadata, created) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&self.bucket)
        .bind(id)
        .bind(key.as_bytes())
        .bind(to_json(metadata)?)
        .bind(to_i64(created)?)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The metadata the upload `id` of `key` was created with, or
    /// [`R2Error::NoSuchUpload`].
    pub(crate) async fn upload(&self, id: &str, key: &str) -> R2Result<WriteMetadata> {
        let metadata: Option<String> = sqlx::query_scalar(
            "SELECT metadata FROM r2_uploads WHERE bucket = $1 AND id = $2 AND key = $3",
        )
        .bind(&self.bucket)
        .bind(id)
        .bind(key.as_bytes())
        .fetch_optional(&self.pool)
        .await?;
        let metadata = metadata.ok_or_else(|| no_such_upload(id, key))?;
        from_json(&metadata).map_err(R2Error::from)
    }

    pub(crate) async fn put_part(&self, id: &str, part: &PartRecord) -> R2Result<()> {
        let written = sqlx::query(
            "INSERT INTO r2_parts (bucket, upload, number, etag, size) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (bucket, upload, number) DO UPDATE SET
                 etag = excluded.etag, size = excluded.size",
        )
        .bind(&self.bucket)
        .bind(id)
        .bind(i32::from(part.number))
        .bind(&part.etag)
        .bind(to_i64(part.size)?)
        .execute(&self.pool)
        .await;
        match written {
            Ok(_) => Ok(()),
            // The upload was completed or aborted (on any host) meanwhile.
            Err(sqlx::Error::Database(e)) if e.is_foreign_key_violation() => {
                Err(R2Error::NoSuchUpload(format!(
                    "upload {id:?} ended while part {} was uploaded",
                    part.number
                )))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The parts uploaded so far, by number.
    pub(crate) async fn parts(&self, id: &str) -> R2Result<Vec<PartRecord>> {
        let rows: Vec<(i32, String, i64)> = sqlx::query_as(
            "SELECT number, etag, size FROM r2_parts WHERE bucket = $1 AND upload = $2
             ORDER BY number",
        )
        .bind(&self.bucket)
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(number, etag, size)| {
                Ok(PartRecord {
                    number: u16::try_from(number).map_err(|_| bad_row("a part number"))?,
                    etag,
                    size: u64::try_from(size).map_err(|_| bad_row("a part size"))?,
                })
            })
            .collect()
    }

    /// Ends upload `id` with `meta` as its key's current version, in one
    /// transaction: of two completions racing, on any hosts, one wins and
    /// the other finds no upload. Returns the version replaced.
    pub(crate) async fn finish_upload(
        &self,
        id: &str,
        meta: &ObjectMeta,
    ) -> R2Result<Option<String>> {
        let mut tx = self.pool.begin().await?;
        let ended = sqlx::query("DELETE FROM r2_uploads WHERE bucket = $1 AND id = $2")
            .bind(&self.bucket)
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if ended == 0 {
            return Err(no_such_upload(id, &meta.key));
        }
        let old = self.lock_key(&mut tx, &meta.key).await?;
        self.upsert(&mut tx, meta).await?;
        tx.commit().await?;
        Ok(old.map(|o| o.version))
    }

    /// Forgets upload `id` of `key` and its parts; returns whether it
    /// existed.
    pub(crate) async fn abort_upload(&self, id: &str, key: &str) -> R2Result<bool> {
        let ended =
            sqlx::query("DELETE FROM r2_uploads WHERE bucket = $1 AND id = $2 AND key = $3")
                .bind(&self.bucket)
                .bind(id)
                .bind(key.as_bytes())
                .execute(&self.pool)
                .await?
                .rows_affected();
        Ok(ended == 1)
    }
}

fn no_such_upload(id: &str, key: &str) -> R2Error {
    R2Error::NoSuchUpload(format!("no upload {id:?} for key {key:?}"))
}

fn bad_row(what: &str) -> R2Error {
    R2Error::Storage(anyhow::anyhow!(
        "{what} in the cluster's R2 index is out of range"
    ))
}

fn to_i64(n: u64) -> R2Result<i64> {
    i64::try_from(n).map_err(|_| R2Error::InvalidArgument(format!("{n} is out of range")))
}

/// Which advisory lock guards writes to `key` of `bucket`.
fn key_hash(bucket: &str, key: &str) -> i32 {
    use md5::{Digest, Md5};
    let digest = Md5::new()
        .chain_update(bucket.as_bytes())
        .chain_update([0])
        .chain_update(key.as_bytes())
        .finalize();
    i32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]])
}

fn object_row(row: &PgRow) -> R2Result<ObjectMeta> {
    let key: Vec<u8> = row.try_get("key")?;
    let metadata: String = row.try_get("metadata")?;
    Ok(ObjectMeta {
        key: String::from_utf8(key).map_err(|_| bad_row("a key that is not UTF-8"))?,
        version: row.try_get("version")?,
        size: u64::try_from(row.try_get::<i64, _>("size")?).map_err(|_| bad_row("a size"))?,
        etag: row.try_get("etag")?,
        uploaded: u64::try_from(row.try_get::<i64, _>("uploaded")?)
            .map_err(|_| bad_row("an upload time"))?,
        metadata: from_json(&metadata)?,
    })
}
