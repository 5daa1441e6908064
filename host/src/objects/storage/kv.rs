//! The key-value API (`state.storage().get/put/...`), stored in the
//! object's own database in `_verge_kv`, so KV writes share the event's
//! transaction with SQL writes.

use rusqlite::OptionalExtension;

use super::{ObjectDb, SqlError};

/// Ordering and bounds for [`ObjectDb::kv_list`].
#[derive(Debug, Default)]
pub(crate) struct KvRange {
    pub(crate) start: Option<String>,
    pub(crate) end: Option<String>,
    pub(crate) prefix: Option<String>,
    pub(crate) reverse: bool,
    pub(crate) limit: Option<u32>,
}

impl ObjectDb {
    pub(crate) fn kv_get(&mut self, key: &str) -> Result<Option<Vec<u8>>, SqlError> {
        if !self.has_internal_tables()? {
            return Ok(None);
        }
        self.internal(|c| {
            c.prepare_cached("SELECT value FROM _verge_kv WHERE key = ?1")?
                .query_row([key], |r| r.get(0))
                .optional()
        })
    }

    pub(crate) fn kv_put(&mut self, key: &str, value: &[u8]) -> Result<(), SqlError> {
        self.create_internal_tables()?;
        // The row, its index entry, the pages their overflow chains take
        // and a split at every level of both trees, with room to spare.
        let growth = 2 * (key.len() + value.len()) as u64 + 32 * self.page_size;
        self.bounded_by(growth, |db| {
            db.internal(|c| {
                c.prepare_cached("INSERT INTO _verge_kv (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value")?
                    .execute(rusqlite::params![key, value])
                    .map(|_| ())
            })
        })
    }

    pub(crate) fn kv_delete(&mut self, key: &str) -> Result<bool, SqlError> {
        if !self.has_internal_tables()? {
            return Ok(false);
        }
        self.internal(|c| {
            c.prepare_cached("DELETE FROM _verge_kv WHERE key = ?1")?
                .execute([key])
                .map(|n| n > 0)
        })
    }

    pub(crate) fn kv_delete_all(&mut self) -> Result<(), SqlError> {
        if !self.has_internal_tables()? {
            return Ok(());
        }
        self.internal(|c| c.execute("DELETE FROM _verge_kv", []).map(|_| ()))
    }

    pub(crate) fn kv_list(&mut self, range: &KvRange) -> Result<Vec<(String, Vec<u8>)>, SqlError> {
        let order = if range.reverse { "DESC" } else { "ASC" };
        let sql = format!(
            "SELECT key, value FROM _verge_kv
             WHERE (?1 IS NULL OR key >= ?1) AND (?2 IS NULL OR key < ?2)
               AND (?3 IS NULL OR substr(key, 1, length(?3)) = ?3)
             ORDER BY key {order} LIMIT ?4"
        );
        let limit = range.limit.map_or(-1, i64::from);
        if !self.has_internal_tables()? {
            return Ok(Vec::new());
        }
        self.internal(|c| {
            let mut statement = c.prepare_cached(&sql)?;
            let rows = statement.query_map(
                rusqlite::params![range.start, range.end, range.prefix, limit],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            rows.collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::SqlErrorKind;
    use super::super::tests::db;
    use super::*;

    #[test]
    fn puts_stop_at_the_size_limit_and_keep_what_fit() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = ObjectDb::open(&dir.path().join("o.sqlite"), 1 << 20).unwrap();
        let value = vec![7u8; 100 << 10];
        // Far from the limit a put skips the savepoint; near it, the one
        // that would pass it fails alone.
        let mut stored = 0;
        let error = loop {
            match db.kv_put(&format!("k{stored}"), &value) {
                Ok(()) => stored += 1,
                Err(error) => break error,
            }
        };
        assert_eq!(error.kind, SqlErrorKind::Full, "{}", error.message);
        assert!(
            (5..=10).contains(&stored),
            "{stored} puts of 100 KiB fit in 1 MiB"
        );
        assert!(db.size().unwrap() <= 1 << 20);
        assert_eq!(db.kv_get(&format!("k{}", stored - 1)).unwrap(), Some(value));
        assert_eq!(db.kv_get(&format!("k{stored}")).unwrap(), None);
    }

    #[test]
    fn kv_lists_by_prefix_range_and_order() {
        let (_dir, mut db) = db();
        for key in ["a1", "a2", "a3", "b1"] {
            db.kv_put(key, key.as_bytes()).unwrap();
        }
        let keys = |range: KvRange, db: &mut ObjectDb| -> Vec<String> {
            db.kv_list(&range)
                .unwrap()
                .into_iter()
                .map(|(k, _)| k)
                .collect()
        };
        assert_eq!(
            keys(
                KvRange {
                    prefix: Some("a".into()),
                    ..Default::default()
                },
                &mut db
            ),
            ["a1", "a2", "a3"]
        );
        assert_eq!(
            keys(
                KvRange {
                    start: Some("a2".into()),
                    end: Some("b1".into()),
                    ..Default::default()
                },
                &mut db
            ),
            ["a2", "a3"]
        );
        assert_eq!(
            keys(
                KvRange {
                    reverse: true,
                    limit: Some(2),
                    ..Default::default()
                },
                &mut db
            ),
            ["b1", "a3"]
        );
        assert!(db.kv_delete("a1").unwrap());
        assert_eq!(db.kv_get("a2").unwrap().as_deref(), Some(b"a2".as_slice()));
    }
}
