//! One KV namespace on a single host: a SQLite database with one writer
//! connection and a small pool of readers, so reads never wait behind a
//! write's fsync.
//!
//! Every method blocks on SQLite; [`super::KvNamespace`] calls them from
//! `spawn_blocking`.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context, Result};
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

use super::range::{cursor_after, cursor_key, prefix_end};

const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS kv (
        key        TEXT PRIMARY KEY,
        value      BLOB NOT NULL,
        metadata   TEXT,
        expiration INTEGER
    );
    CREATE INDEX IF NOT EXISTS kv_expiration ON kv (expiration) WHERE expiration IS NOT NULL;
";

/// Idle reader connections kept open per namespace.
const IDLE_READERS: usize = 4;

/// Expired rows a write deletes on its way, so space comes back without a
/// sweeper task; reads skip expired rows whether or not they are gone.
const SWEEP_PER_WRITE: i64 = 16;

/// A stored value and what was stored beside it.
#[derive(Debug, PartialEq)]
pub(crate) struct Entry {
    pub(crate) value: Vec<u8>,
    pub(crate) metadata: Option<String>,
    /// Seconds since the Unix epoch.
    pub(crate) expiration: Option<i64>,
}

/// One key of a listing.
#[derive(Debug, PartialEq)]
pub(crate) struct KeyInfo {
    pub(crate) name: String,
    pub(crate) expiration: Option<i64>,
    pub(crate) metadata: Option<String>,
}

/// A page of keys; `cursor` continues it, none when it is the last.
#[derive(Debug, PartialEq)]
pub(crate) struct Listing {
    pub(crate) keys: Vec<KeyInfo>,
    pub(crate) cursor: Option<String>,
}

impl Listing {
    /// The page as the admin API and `verge kv key list` show it, each
    /// key's metadata as JSON rather than text.
    pub(crate) fn into_json(self) -> serde_json::Value {
        let keys: Vec<serde_json::Value> = self
            .keys
            .into_iter()
            .map(|key| {
                let metadata = key
                    .metadata
                    .and_then(|m| serde_json::from_str::<serde_json::Value>(&m).ok());
                serde_json::json!({ "name": key.name, "expiration": key.expiration, "metadata": metadata })
            })
            .collect();
        serde_json::json!({
            "keys": keys,
            "list_complete": self.cursor.is_none(),
            "cursor": self.cursor,
        })
    }
}

/// A write, already checked against the worker's limits.
pub(crate) struct Put<'a> {
    pub(crate) key: &'a str,
    pub(crate) value: &'a [u8],
    pub(crate) metadata: Option<&'a str>,
    /// Absolute, in seconds since the Unix epoch.
    pub(crate) expiration: Option<i64>,
}

/// A write that owns its parts, for work that outlives the caller's
/// borrows (the blocking pool, a Postgres round trip).
pub(crate) struct OwnedPut {
    pub(crate) key: String,
    pub(crate) value: Vec<u8>,
    pub(crate) metadata: Option<String>,
    /// Absolute, in seconds since the Unix epoch.
    pub(crate) expiration: Option<i64>,
}

impl OwnedPut {
    pub(crate) fn as_put(&self) -> Put<'_> {
        Put {
            key: &self.key,
            value: &self.value,
            metadata: self.metadata.as_deref(),
            expiration: self.expiration,
        }
    }
}

/// Why a listing cannot start.
#[derive(Debug, thiserror::Error)]
#[error("the cursor is not one this namespace returned")]
pub(crate) struct BadCursor;

pub(crate) struct LocalNamespace {
    path: PathBuf,
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
}

impl LocalNamespace {
    /// Opens (creating) the namespace's database at `path`.
    pub(super) fn open(path: &Path) -> Result<Self> {
        let writer =
            Connection::open(path).with_context(|| format!("opening {}", path.display()))?;
        writer.busy_timeout(std::time::Duration::from_secs(5))?;
        writer.pragma_update(None, "journal_mode", "WAL")?;
        writer.pragma_update(None, "synchronous", crate::storage::synchronous())?;
        writer
            .execute_batch(SCHEMA)
            .with_context(|| format!("creating the tables of {}", path.display()))?;
        Ok(Self {
            path: path.to_owned(),
            writer: Mutex::new(writer),
            readers: Mutex::default(),
        })
    }

    /// The value of `key` unless it has expired by `now` (Unix seconds).
    pub(crate) fn get(&self, key: &str, now: i64) -> Result<Option<Entry>> {
        self.read(|c| {
            c.prepare_cached(
                "SELECT value, metadata, expiration FROM kv
                 WHERE key = ?1 AND (expiration IS NULL OR expiration > ?2)",
            )?
            .query_row(params![key, now], |r| {
                Ok(Entry {
                    value: r.get(0)?,
                    metadata: r.get(1)?,
                    expiration: r.get(2)?,
                })
            })
            .optional()
        })
    }

    /// Stores `puts`, all or none, durably, and drops a few rows that
    /// expired by `now`.
    pub(crate) fn put(&self, puts: &[Put<'_>], now: i64) -> Result<()> {
        self.write(|c| {
            let tx = c.transaction()?;
            {
                let mut insert = tx.prepare_cached(
                    "INSERT INTO kv (key, value, metadata, expiration) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (key) DO UPDATE SET
                         value = excluded.value,
                         metadata = excluded.metadata,
                         expiration = excluded.expiration",
                )?;
                for put in puts {
                    insert.execute(params![put.key, put.value, put.metadata, put.expiration])?;
                }
            }
            tx.prepare_cached(
                "DELETE FROM kv WHERE key IN (
                     SELECT key FROM kv WHERE expiration <= ?1 ORDER BY expiration LIMIT ?2)",
            )?
            .execute(params![now, SWEEP_PER_WRITE])?;
            tx.commit()
        })
    }

    /// Removes `keys`, all or none.
    pub(crate) fn delete(&self, keys: &[&str]) -> Result<()> {
        self.write(|c| {
            let tx = c.transaction()?;
            {
                let mut delete = tx.prepare_cached("DELETE FROM kv WHERE key = ?1")?;
                for key in keys {
                    delete.execute([key])?;
                }
            }
            tx.commit()
        })
    }

    /// Up to `limit` keys after `cursor` that start with `prefix` and have
    /// not expired by `now`.
    pub(crate) fn list(
        &self,
        prefix: &str,
        cursor: Option<&str>,
        limit: u32,
        now: i64,
    ) -> Result<Result<Listing, BadCursor>> {
        let after = match cursor.map(cursor_key) {
            Some(None) => return Ok(Err(BadCursor)),
            Some(Some(key)) => Some(key),
            None => None,
        };
        let end = prefix_end(prefix);
        let mut keys: Vec<KeyInfo> = self.read(|c| {
            c.prepare_cached(
                "SELECT key, expiration, metadata FROM kv
                 WHERE key >= ?1 AND (?2 IS NULL OR key < ?2) AND (?3 IS NULL OR key > ?3)
                   AND (expiration IS NULL OR expiration > ?4)
                 ORDER BY key LIMIT ?5",
            )?
            .query_map(
                params![prefix, end, after, now, i64::from(limit) + 1],
                |r| {
                    Ok(KeyInfo {
                        name: r.get(0)?,
                        expiration: r.get(1)?,
                        metadata: r.get(2)?,
                    })
                },
            )?
            .collect()
        })?;
        // One row past the page says whether another page follows.
        let cursor = if keys.len() > limit as usize {
            keys.truncate(limit as usize);
            keys.last().map(|key| cursor_after(&key.name))
        } else {
            None
        };
        Ok(Ok(Listing { keys, cursor }))
    }

    fn write<T>(&self, work: impl FnOnce(&mut Connection) -> rusqlite::Result<T>) -> Result<T> {
        let mut writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        work(&mut writer).with_context(|| format!("writing {}", self.path.display()))
    }

    fn read<T>(&self, work: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T> {
        let idle = self.readers.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let reader = match idle {
            Some(reader) => reader,
            None => self.open_reader()?,
        };
        let result = work(&reader).with_context(|| format!("reading {}", self.path.display()));
        let mut readers = self.readers.lock().unwrap_or_else(|e| e.into_inner());
        if readers.len() < IDLE_READERS {
            readers.push(reader);
        }
        result
    }

    fn open_reader(&self) -> Result<Connection> {
        let reader = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .with_context(|| format!("opening {} to read", self.path.display()))?;
        reader.busy_timeout(std::time::Duration::from_secs(5))?;
        Ok(reader)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(ns: &LocalNamespace, key: &str, expiration: Option<i64>) {
        let put = Put {
            key,
            value: key.as_bytes(),
            metadata: Some(r#"{"k":1}"#),
            expiration,
        };
        ns.put(&[put], 100).unwrap();
    }

    fn names(listing: &Listing) -> Vec<&str> {
        listing.keys.iter().map(|k| k.name.as_str()).collect()
    }

    #[test]
    fn lists_pages_by_prefix_and_skips_expired_keys() {
        let dir = tempfile::tempdir().unwrap();
        let ns = LocalNamespace::open(&dir.path().join("ns.sqlite")).unwrap();
        for key in ["a", "user:1", "user:2", "user:3", "user;", "v"] {
            put(&ns, key, None);
        }
        put(&ns, "user:0", Some(150));

        let first = ns.list("user:", None, 2, 120).unwrap().unwrap();
        assert_eq!(names(&first), ["user:0", "user:1"]);
        let second = ns
            .list("user:", first.cursor.as_deref(), 2, 120)
            .unwrap()
            .unwrap();
        assert_eq!(names(&second), ["user:2", "user:3"]);
        assert_eq!(second.cursor, None, "no key follows, so no cursor");

        let later = ns.list("user:", None, 10, 150).unwrap().unwrap();
        assert_eq!(names(&later), ["user:1", "user:2", "user:3"]);
        assert_eq!(ns.get("user:0", 150).unwrap(), None);
        assert!(ns.list("", Some("zz"), 10, 0).unwrap().is_err());
    }

    #[test]
    fn a_write_sweeps_expired_rows() {
        let dir = tempfile::tempdir().unwrap();
        let ns = LocalNamespace::open(&dir.path().join("ns.sqlite")).unwrap();
        put(&ns, "old", Some(50));
        put(&ns, "new", None);
        let rows: i64 = ns
            .read(|c| c.query_row("SELECT count(*) FROM kv", [], |r| r.get(0)))
            .unwrap();
        assert_eq!(rows, 1);
    }
}
