//! One KV namespace in a cluster: its rows in the cluster's Postgres
//! (`kv_entries`, migrations/0002_kv_namespaces.sql), so every host reads
//! and writes the same keys. The semantics are the SQLite namespace's
//! (`namespace.rs`): keys in byte order, expired keys invisible to reads
//! and swept a few at a time by writes, bulk writes all or none, the same
//! opaque cursors.

use anyhow::{Context, Result};
use sqlx::{PgPool, Row};

use super::namespace::{BadCursor, Entry, KeyInfo, Listing, OwnedPut};
use super::range::{cursor_after, cursor_key};

/// Expired rows a write deletes on its way, as on a single host.
const SWEEP_PER_WRITE: i64 = 16;

pub(crate) struct ClusterNamespace {
    pool: PgPool,
    id: String,
}

impl ClusterNamespace {
    /// Namespace `id`, recorded in `kv_namespaces` so it is listed from
    /// every host even before it holds a key.
    pub(super) async fn open(pool: PgPool, id: &str) -> Result<Self> {
        sqlx::query("INSERT INTO kv_namespaces (id) VALUES ($1) ON CONFLICT (id) DO NOTHING")
            .bind(id)
            .execute(&pool)
            .await
            .with_context(|| format!("recording KV namespace {id} in the cluster"))?;
        Ok(Self {
            pool,
            id: id.to_owned(),
        })
    }

    /// Every namespace the cluster knows, by id.
    pub(super) async fn ids(pool: &PgPool) -> Result<Vec<String>> {
        sqlx::query_scalar("SELECT id FROM kv_namespaces ORDER BY id")
            .fetch_all(pool)
            .await
            .context("listing the cluster's KV namespaces")
    }

    /// The value of `key` unless it has expired by `now` (Unix seconds).
    pub(crate) async fn get(&self, key: &str, now: i64) -> Result<Option<Entry>> {
        let row = sqlx::query(
            "SELECT value, metadata, expiration FROM kv_entries
             WHERE namespace = $1 AND key = $2 AND (expiration IS NULL OR expiration > $3)",
        )
        .bind(&self.id)
        .bind(key.as_bytes())
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .with_context(|| self.failed("reading"))?;
        let Some(row) = row else {
            return Ok(None);
        };
        let entry = (|| -> Result<Entry, sqlx::Error> {
            Ok(Entry {
                value: row.try_get("value")?,
                metadata: row.try_get("metadata")?,
                expiration: row.try_get("expiration")?,
            })
        })();
        entry.map(Some).with_context(|| self.failed("reading"))
    }

    /// Stores `puts`, all or none, and drops a few rows that expired by
    /// `now`. Of two puts of one key, the later one wins, as on SQLite.
    pub(crate) async fn put(&self, puts: &[OwnedPut], now: i64) -> Result<()> {
        // One row per key, the last one given; in key order, so that two
        // bulk writes lock their rows in the same order and never deadlock.
        let mut latest: std::collections::BTreeMap<&[u8], &OwnedPut> = Default::default();
        for put in puts {
            latest.insert(put.key.as_bytes(), put);
        }
        let keys: Vec<&[u8]> = latest.keys().copied().collect();
        let values: Vec<&[u8]> = latest.values().map(|p| p.value.as_slice()).collect();
        let metadata: Vec<Option<&str>> = latest.values().map(|p| p.metadata.as_deref()).collect();
        let expirations: Vec<Option<i64>> = latest.values().map(|p| p.expiration).collect();
        let mut tx = self
            .pool
            .begin()
            .await
            .with_context(|| self.failed("writing"))?;
        sqlx::query(
            "INSERT INTO kv_entries (namespace, key, value, metadata, expiration)
             SELECT $1, * FROM UNNEST($2::bytea[], $3::bytea[], $4::text[], $5::int8[])
             ON CONFLICT (namespace, key) DO UPDATE SET
                 value = excluded.value,
                 metadata = excluded.metadata,
                 expiration = excluded.expiration",
        )
        .bind(&self.id)
        .bind(&keys)
        .bind(&values)
        .bind(&metadata)
        .bind(&expirations)
        .execute(&mut *tx)
        .await
        .with_context(|| self.failed("writing"))?;
        // Rows another write holds are left to a later sweep: a write never
        // waits on, or deadlocks with, another host's.
        sqlx::query(
            "DELETE FROM kv_entries WHERE namespace = $1 AND expiration <= $2 AND key IN (
                 SELECT key FROM kv_entries WHERE namespace = $1 AND expiration <= $2
                 ORDER BY expiration LIMIT $3 FOR UPDATE SKIP LOCKED)",
        )
        .bind(&self.id)
        .bind(now)
        .bind(SWEEP_PER_WRITE)
        .execute(&mut *tx)
        .await
        .with_context(|| self.failed("sweeping expired keys of"))?;
        tx.commit().await.with_context(|| self.failed("writing"))
    }

    /// Removes `keys`, all or none.
    pub(crate) async fn delete(&self, keys: &[String]) -> Result<()> {
        let mut keys: Vec<&[u8]> = keys.iter().map(|k| k.as_bytes()).collect();
        keys.sort_unstable();
        keys.dedup();
        sqlx::query("DELETE FROM kv_entries WHERE namespace = $1 AND key = ANY($2::bytea[])")
            .bind(&self.id)
            .bind(&keys)
            .execute(&self.pool)
            .await
            .with_context(|| self.failed("deleting from"))?;
        Ok(())
    }

    /// Up to `limit` keys after `cursor` that start with `prefix` and have
    /// not expired by `now`.
    pub(crate) async fn list(
        &self,
        prefix: &str,
        cursor: Option<&str>,
        limit: u32,
        now: i64,
    ) -> Result<Result<Listing, BadCursor>> {
        let after = match cursor.map(cursor_key) {
            Some(None) => return Ok(Err(BadCursor)),
            Some(Some(key)) => Some(key.into_bytes()),
            None => None,
        };
        // 0xFF never occurs in UTF-8: `prefix || FF` is above every key
        // that starts with `prefix`, and below every other key above it.
        let end = [prefix.as_bytes(), &[0xFF]].concat();
        let rows = sqlx::query(
            "SELECT key, expiration, metadata FROM kv_entries
             WHERE namespace = $1 AND key >= $2 AND key < $3
               AND ($4::bytea IS NULL OR key > $4)
               AND (expiration IS NULL OR expiration > $5)
             ORDER BY key LIMIT $6",
        )
        .bind(&self.id)
        .bind(prefix.as_bytes())
        .bind(&end)
        .bind(after)
        .bind(now)
        .bind(i64::from(limit) + 1)
        .fetch_all(&self.pool)
        .await
        .with_context(|| self.failed("listing"))?;
        let mut keys = Vec::with_capacity(rows.len());
        for row in rows {
            let name: Vec<u8> = row.try_get("key")?;
            keys.push(KeyInfo {
                name: String::from_utf8(name)
                    .with_context(|| self.failed("listing (a key is not UTF-8)"))?,
                expiration: row.try_get("expiration")?,
                metadata: row.try_get("metadata")?,
            });
        }
        // One row past the page says whether another page follows.
        let cursor = if keys.len() > limit as usize {
            keys.truncate(limit as usize);
            keys.last().map(|key| cursor_after(&key.name))
        } else {
            None
        };
        Ok(Ok(Listing { keys, cursor }))
    }

    fn failed(&self, doing: &str) -> String {
        format!("{doing} KV namespace {} in the cluster's database", self.id)
    }
}
