//! A bucket's index: one SQLite file holding every object's metadata and
//! the state of its multipart uploads. Bodies live in the blob store under
//! names the index gives them (`data/<version>`), so the index is where a
//! key's current version is decided, atomically.
//!
//! Keys are stored as BLOBs: SQLite compares them with `memcmp`, which is
//! the byte order R2 lists keys in, and `prefix || x'FF'` is above every
//! key that starts with `prefix` (0xFF never occurs in UTF-8), which makes
//! prefix ranges and skipping a delimited prefix one index seek each.
//!
//! Every method blocks: callers run them through `spawn_blocking`.

use std::path::Path;
use std::sync::Mutex;

use anyhow::Context;
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::meta::{Conditional, ObjectMeta, WriteMetadata};
use super::{R2Error, R2Result};

const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS objects (
        key BLOB PRIMARY KEY,
        version TEXT NOT NULL,
        size INTEGER NOT NULL,
        etag TEXT NOT NULL,
        uploaded INTEGER NOT NULL,
        metadata TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS uploads (
        id TEXT PRIMARY KEY,
        key BLOB NOT NULL,
        metadata TEXT NOT NULL,
        created INTEGER NOT NULL
    );
    CREATE TABLE IF NOT EXISTS parts (
        upload TEXT NOT NULL REFERENCES uploads(id) ON DELETE CASCADE,
        number INTEGER NOT NULL,
        etag TEXT NOT NULL,
        size INTEGER NOT NULL,
        PRIMARY KEY (upload, number)
    ) WITHOUT ROWID;
";

/// A part of a multipart upload, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PartRecord {
    pub(crate) number: u16,
    pub(crate) etag: String,
    pub(crate) size: u64,
}

/// What writing an object's index row did.
pub(crate) enum Replaced {
    /// The row now names the new version; the version it replaced, if any,
    /// is the caller's to delete.
    Written { old_version: Option<String> },
    /// An `only_if` condition failed: nothing changed.
    ConditionFailed,
}

/// One page of a listing, as the index finds it.
pub(crate) struct IndexPage {
    pub(crate) objects: Vec<ObjectMeta>,
    pub(crate) delimited_prefixes: Vec<String>,
    /// Where the next page starts (inclusive lower bound), when there is
    /// one.
    pub(crate) next: Option<Vec<u8>>,
}

/// What adding one row to a page did.
pub(crate) enum Taken {
    /// The page was full: the row starts the next one.
    Full,
    Object,
    /// The row rolled up into a delimited prefix: every key under it is
    /// skipped.
    Prefix,
}

impl IndexPage {
    pub(crate) fn new() -> Self {
        Self {
            objects: Vec::new(),
            delimited_prefixes: Vec::new(),
            next: None,
        }
    }

    /// Adds `object`, the first row at or after `from`, as an object or
    /// the delimited prefix it falls under, and moves `from` past what it
    /// covers. Both indexes (this one and the cluster's) page with it.
    pub(crate) fn take(
        &mut self,
        query: &IndexQuery<'_>,
        object: ObjectMeta,
        from: &mut Vec<u8>,
    ) -> Taken {
        if self.objects.len() + self.delimited_prefixes.len() == query.limit {
            self.next = Some(from.clone());
            return Taken::Full;
        }
        let rest = &object.key[query.prefix.len()..];
        match query
            .delimiter
            .and_then(|d| rest.find(d).map(|at| at + d.len()))
        {
            Some(end) => {
                let rolled = object.key[..query.prefix.len() + end].to_owned();
                *from = [rolled.as_bytes(), &[0xFF]].concat();
                self.delimited_prefixes.push(rolled);
                Taken::Prefix
            }
            None => {
                *from = [object.key.as_bytes(), &[0]].concat();
                self.objects.push(object);
                Taken::Object
            }
        }
    }
}

/// What to list.
pub(crate) struct IndexQuery<'a> {
    pub(crate) prefix: &'a str,
    pub(crate) delimiter: Option<&'a str>,
    /// The lowest key to consider, inclusive.
    pub(crate) from: Vec<u8>,
    pub(crate) limit: usize,
}

pub(crate) struct Index {
    conn: Mutex<Connection>,
}

impl Index {
    pub(crate) fn open(path: &Path) -> anyhow::Result<Self> {
        let conn = Connection::open(path).with_context(|| format!("opening {}", path.display()))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", true)?;
        conn.execute_batch(SCHEMA)
            .with_context(|| format!("creating the tables of {}", path.display()))?;
        Ok(Self {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave a transaction open
        // (rusqlite rolls back on drop), so the connection stays usable.
        self.conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn get(&self, key: &str) -> R2Result<Option<ObjectMeta>> {
        Ok(self
            .conn()
            .query_row(
                "SELECT key, version, size, etag, uploaded, metadata FROM objects WHERE key = ?1",
                [key.as_bytes()],
                object_row,
            )
            .optional()?)
    }

    /// Makes `meta` the key's current version if `only_if` holds for the
    /// version it replaces.
    pub(crate) fn replace(
        &self,
        meta: &ObjectMeta,
        only_if: Option<&Conditional>,
    ) -> R2Result<Replaced> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let current = tx
            .query_row(
                "SELECT key, version, size, etag, uploaded, metadata FROM objects WHERE key = ?1",
                [meta.key.as_bytes()],
                object_row,
            )
            .optional()?;
        if only_if.is_some_and(|c| !c.holds(current.as_ref())) {
            return Ok(Replaced::ConditionFailed);
        }
        upsert(&tx, meta)?;
        tx.commit()?;
        Ok(Replaced::Written {
            old_version: current.map(|c| c.version),
        })
    }

    /// Removes the keys; returns the versions whose blobs are now unused.
    pub(crate) fn delete(&self, keys: &[String]) -> R2Result<Vec<String>> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let mut versions = Vec::new();
        {
            let mut delete =
                tx.prepare_cached("DELETE FROM objects WHERE key = ?1 RETURNING version")?;
            for key in keys {
                if let Some(version) = delete
                    .query_row([key.as_bytes()], |row| row.get(0))
                    .optional()?
                {
                    versions.push(version);
                }
            }
        }
        tx.commit()?;
        Ok(versions)
    }

    pub(crate) fn list(&self, query: &IndexQuery<'_>) -> R2Result<IndexPage> {
        let conn = self.conn();
        let upper = [query.prefix.as_bytes(), &[0xFF]].concat();
        let mut next_row = conn.prepare_cached(
            "SELECT key, version, size, etag, uploaded, metadata FROM objects
             WHERE key >= ?1 AND key < ?2 ORDER BY key LIMIT 1",
        )?;
        let mut page = IndexPage::new();
        let mut from = query.from.clone();
        // One seek per entry: a delimited prefix is skipped whole, however
        // many keys it holds.
        while let Some(object) = next_row
            .query_row(params![from, upper], object_row)
            .optional()?
        {
            if let Taken::Full = page.take(query, object, &mut from) {
                break;
            }
        }
        Ok(page)
    }

    /// How many objects the bucket holds and their bytes.
    pub(crate) fn usage(&self) -> R2Result<(u64, u64)> {
        Ok(self.conn().query_row(
            "SELECT count(*), coalesce(sum(size), 0) FROM objects",
            [],
            |row| Ok((row.get::<_, i64>(0)? as u64, row.get::<_, i64>(1)? as u64)),
        )?)
    }

    pub(crate) fn create_upload(
        &self,
        id: &str,
        key: &str,
        metadata: &WriteMetadata,
        created: u64,
    ) -> R2Result<()> {
        self.conn().execute(
            "INSERT INTO uploads (id, key, metadata, created) VALUES (?1, ?2, ?3, ?4)",
            params![id, key.as_bytes(), to_json(metadata)?, created as i64],
        )?;
        Ok(())
    }

    /// The metadata the upload `id` of `key` was created with, or
    /// [`R2Error::NoSuchUpload`].
    pub(crate) fn upload(&self, id: &str, key: &str) -> R2Result<WriteMetadata> {
        let metadata: Option<String> = self
            .conn()
            .query_row(
                "SELECT metadata FROM uploads WHERE id = ?1 AND key = ?2",
                params![id, key.as_bytes()],
                |row| row.get(0),
            )
            .optional()?;
        let metadata = metadata.ok_or_else(|| no_such_upload(id, key))?;
        from_json(&metadata).map_err(R2Error::from)
    }

    pub(crate) fn put_part(&self, id: &str, part: &PartRecord) -> R2Result<()> {
        self.conn().execute(
            "INSERT OR REPLACE INTO parts (upload, number, etag, size) VALUES (?1, ?2, ?3, ?4)",
            params![id, part.number, part.etag, part.size as i64],
        )?;
        Ok(())
    }

    /// The parts uploaded so far, by number.
    pub(crate) fn parts(&self, id: &str) -> R2Result<Vec<PartRecord>> {
        let conn = self.conn();
        let mut parts = conn.prepare_cached(
            "SELECT number, etag, size FROM parts WHERE upload = ?1 ORDER BY number",
        )?;
        let rows = parts.query_map([id], |row| {
            Ok(PartRecord {
                number: row.get(0)?,
                etag: row.get(1)?,
                size: row.get::<_, i64>(2)? as u64,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Ends upload `id` with `meta` as its key's current version, in one
    /// transaction: of two completions racing, one wins and the other
    /// finds no upload. Returns the version replaced.
    pub(crate) fn finish_upload(&self, id: &str, meta: &ObjectMeta) -> R2Result<Option<String>> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        if tx.execute("DELETE FROM uploads WHERE id = ?1", [id])? == 0 {
            return Err(no_such_upload(id, &meta.key));
        }
        let old: Option<String> = tx
            .query_row(
                "SELECT version FROM objects WHERE key = ?1",
                [meta.key.as_bytes()],
                |row| row.get(0),
            )
            .optional()?;
        upsert(&tx, meta)?;
        tx.commit()?;
        Ok(old)
    }

    /// Forgets upload `id` of `key` and its parts; returns whether it
    /// existed.
    pub(crate) fn abort_upload(&self, id: &str, key: &str) -> R2Result<bool> {
        Ok(self.conn().execute(
            "DELETE FROM uploads WHERE id = ?1 AND key = ?2",
            params![id, key.as_bytes()],
        )? == 1)
    }
}

fn no_such_upload(id: &str, key: &str) -> R2Error {
    R2Error::NoSuchUpload(format!("no upload {id:?} for key {key:?}"))
}

fn upsert(conn: &Connection, meta: &ObjectMeta) -> R2Result<()> {
    conn.execute(
        "INSERT OR REPLACE INTO objects (key, version, size, etag, uploaded, metadata)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            meta.key.as_bytes(),
            meta.version,
            meta.size as i64,
            meta.etag,
            meta.uploaded as i64,
            to_json(&meta.metadata)?,
        ],
    )?;
    Ok(())
}

fn object_row(row: &Row<'_>) -> rusqlite::Result<ObjectMeta> {
    let key: Vec<u8> = row.get(0)?;
    let metadata: String = row.get(5)?;
    let invalid = |e: Box<dyn std::error::Error + Send + Sync>| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Blob, e)
    };
    Ok(ObjectMeta {
        key: String::from_utf8(key).map_err(|e| invalid(e.into()))?,
        version: row.get(1)?,
        size: row.get::<_, i64>(2)? as u64,
        etag: row.get(3)?,
        uploaded: row.get::<_, i64>(4)? as u64,
        metadata: from_json(&metadata).map_err(|e| invalid(e.into()))?,
    })
}

pub(super) fn to_json(metadata: &WriteMetadata) -> R2Result<String> {
    serde_json::to_string(metadata).map_err(|e| R2Error::Storage(e.into()))
}

pub(super) fn from_json(text: &str) -> anyhow::Result<WriteMetadata> {
    serde_json::from_str(text).context("an index row's metadata is not valid")
}
