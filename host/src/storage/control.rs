//! The control database (`control.db` in the data directory): which workers
//! exist, their uploaded versions, which version is active, the history of
//! activations (for rollback) and secrets. A restart rebuilds the serving
//! state from it.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;

use anyhow::{Context, Result};
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use crate::clock::unix_now as now;

/// Schema changes, applied in order; `PRAGMA user_version` records how many
/// ran.
const MIGRATIONS: &[&str] = &[
    r#"
    CREATE TABLE workers (
        name           TEXT PRIMARY KEY,
        active_version INTEGER,
        created_at     INTEGER NOT NULL
    );
    CREATE TABLE versions (
        worker         TEXT NOT NULL REFERENCES workers(name) ON DELETE CASCADE,
        version        INTEGER NOT NULL,
        component_hash TEXT NOT NULL,
        config         TEXT NOT NULL,
        created_at     INTEGER NOT NULL,
        PRIMARY KEY (worker, version)
    );
    CREATE TABLE deployments (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        worker      TEXT NOT NULL REFERENCES workers(name) ON DELETE CASCADE,
        version     INTEGER NOT NULL,
        deployed_at INTEGER NOT NULL
    );
    CREATE TABLE secrets (
        worker TEXT NOT NULL REFERENCES workers(name) ON DELETE CASCADE,
        name   TEXT NOT NULL,
        value  TEXT NOT NULL,
        PRIMARY KEY (worker, name)
    );
"#,
    r#"
    CREATE TABLE settings (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    -- A Durable Object namespace: one class of one worker. Its id is stable
    -- across class renames, so object ids and files stay put.
    CREATE TABLE namespaces (
        id         TEXT PRIMARY KEY,
        worker     TEXT NOT NULL REFERENCES workers(name) ON DELETE CASCADE,
        class      TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        UNIQUE (worker, class)
    );
    CREATE TABLE applied_migrations (
        worker     TEXT NOT NULL REFERENCES workers(name) ON DELETE CASCADE,
        tag        TEXT NOT NULL,
        applied_at INTEGER NOT NULL,
        PRIMARY KEY (worker, tag)
    );
    CREATE TABLE objects (
        namespace   TEXT NOT NULL REFERENCES namespaces(id) ON DELETE CASCADE,
        id          TEXT NOT NULL,
        name        TEXT,
        last_active INTEGER NOT NULL,
        PRIMARY KEY (namespace, id)
    );
"#,
    r#"
    -- Every object's alarms, so they fire for objects not in memory and
    -- after a restart. The object's own database is the truth; this index
    -- is kept a superset of it (see objects/alarms/index.rs).
    CREATE TABLE alarms (
        namespace TEXT NOT NULL REFERENCES namespaces(id) ON DELETE CASCADE,
        object_id TEXT NOT NULL,
        name      TEXT NOT NULL,
        at_ms     INTEGER NOT NULL,
        PRIMARY KEY (namespace, object_id, name)
    );
"#,
    r#"
    -- The deployment each one replaced, so that rollback walks back
    -- through history instead of toggling between the last two versions
    -- (see `ControlStore::activate`). Rows written before this column
    -- existed were a plain sequence: each replaced the one before it.
    ALTER TABLE deployments ADD COLUMN parent INTEGER;
    UPDATE deployments SET parent = (
        SELECT MAX(p.id) FROM deployments p
        WHERE p.worker = deployments.worker AND p.id < deployments.id
    );
"#,
    r#"
    -- The latest time each cron trigger was run for, so a run missed
    -- while the host was down is made up once when it starts.
    CREATE TABLE cron_runs (
        worker         TEXT NOT NULL REFERENCES workers(name) ON DELETE CASCADE,
        cron           TEXT NOT NULL,
        scheduled_ms   INTEGER NOT NULL,
        PRIMARY KEY (worker, cron)
    );
"#,
];

/// How a version came to be activated, which decides where the next
/// rollback goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Activation {
    /// A deploy or an explicit activation: it replaces the current
    /// deployment, and a rollback returns to that one.
    Forward,
    /// Undoes the current deployment: the next rollback goes one step
    /// further back, as repeated undo does.
    Rollback,
}

/// One `[[migrations]]` entry, as it changes the namespaces table.
pub(crate) struct NamespaceMigration<'a> {
    pub(crate) tag: &'a str,
    pub(crate) new_classes: &'a [String],
    /// `(from, to)` pairs.
    pub(crate) renamed: Vec<(&'a str, &'a str)>,
    pub(crate) deleted: &'a [String],
}

/// Access to the control database. Calls are short, indexed statements;
/// they run on the caller's thread under a mutex.
pub(crate) struct ControlStore {
    conn: Mutex<Connection>,
}

#[derive(Debug, Clone, Serialize)]
pub struct WorkerRecord {
    pub name: String,
    pub active_version: Option<u32>,
    pub created_at: i64,
}

/// A Durable Object namespace: one class of one worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NamespaceRecord {
    pub id: String,
    pub worker: String,
    pub class: String,
}

/// What the host remembers about one object between activations.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ObjectRecord {
    pub id: String,
    pub name: Option<String>,
    pub last_active: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct VersionRecord {
    pub worker: String,
    pub version: u32,
    pub component_hash: String,
    /// The verge.toml text as uploaded.
    pub config: String,
    pub created_at: i64,
}

impl ControlStore {
    pub(crate) fn open(path: &Path) -> Result<Self> {
        let mut conn =
            Connection::open(path).with_context(|| format!("opening {}", path.display()))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", true)?;
        let applied: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
        let applied = applied as usize;
        if applied > MIGRATIONS.len() {
            anyhow::bail!(
                "{} was written by a newer Verge (schema {applied}, this build knows {})",
                path.display(),
                MIGRATIONS.len()
            );
        }
        for (i, migration) in MIGRATIONS.iter().enumerate().skip(applied) {
            let tx = conn.transaction()?;
            tx.execute_batch(migration)
                .with_context(|| format!("applying control schema migration {}", i + 1))?;
            tx.pragma_update(None, "user_version", (i + 1) as i64)?;
            tx.commit()?;
        }
        Ok(Self {
            conn: Mutex::new(conn),
        })
    }

    pub(crate) fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave a half-done write:
        // every multi-statement change runs in a transaction.
        self.conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records a new version of `worker` (creating the worker) and returns
    /// its number.
    pub(crate) fn add_version(
        &self,
        worker: &str,
        component_hash: &str,
        config: &str,
    ) -> Result<u32> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let now = now();
        tx.execute(
            "INSERT OR IGNORE INTO workers (name, created_at) VALUES (?1, ?2)",
            params![worker, now],
        )?;
        let version: u32 = tx.query_row(
            "SELECT COALESCE(MAX(version), 0) + 1 FROM versions WHERE worker = ?1",
            [worker],
            |row| row.get(0),
        )?;
        tx.execute(
            "INSERT INTO versions (worker, version, component_hash, config, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![worker, version, component_hash, config, now],
        )?;
        tx.commit()?;
        Ok(version)
    }

    /// Makes `version` the one that serves `worker`, and records it in the
    /// deployment history.
    ///
    /// Each deployment row points to its parent: the deployment a rollback
    /// from it returns to. A forward activation's parent is the deployment
    /// it replaces; a rollback's is its target's parent. So after 1, 2, 3,
    /// rollbacks serve 2 and then 1, and after a rollback from 3 to 2, the
    /// next deploy's rollback returns to 2, the version it replaced.
    pub(crate) fn activate(&self, worker: &str, version: u32, how: Activation) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let current: Option<(i64, Option<i64>)> = tx
            .query_row(
                "SELECT id, parent FROM deployments WHERE worker = ?1 ORDER BY id DESC LIMIT 1",
                [worker],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()?;
        let parent: Option<i64> = match how {
            Activation::Forward => current.map(|(id, _)| id),
            Activation::Rollback => match current.and_then(|(_, parent)| parent) {
                Some(target) => tx.query_row(
                    "SELECT parent FROM deployments WHERE id = ?1",
                    [target],
                    |row| row.get(0),
                )?,
                None => None,
            },
        };
        tx.execute(
            "UPDATE workers SET active_version = ?2 WHERE name = ?1",
            params![worker, version],
        )?;
        tx.execute(
            "INSERT INTO deployments (worker, version, deployed_at, parent)
             VALUES (?1, ?2, ?3, ?4)",
            params![worker, version, now(), parent],
        )?;
        tx.commit()?;
        Ok(())
    }

    pub(crate) fn worker(&self, name: &str) -> Result<Option<WorkerRecord>> {
        Ok(self
            .conn()
            .query_row(
                "SELECT name, active_version, created_at FROM workers WHERE name = ?1",
                [name],
                worker_record,
            )
            .optional()?)
    }

    pub(crate) fn workers(&self) -> Result<Vec<WorkerRecord>> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare("SELECT name, active_version, created_at FROM workers ORDER BY name")?;
        let rows = stmt.query_map([], worker_record)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub(crate) fn version(&self, worker: &str, version: u32) -> Result<Option<VersionRecord>> {
        Ok(self
            .conn()
            .query_row(
                "SELECT worker, version, component_hash, config, created_at
                 FROM versions WHERE worker = ?1 AND version = ?2",
                params![worker, version],
                version_record,
            )
            .optional()?)
    }

    /// Every version of `worker`, newest first.
    pub(crate) fn versions(&self, worker: &str) -> Result<Vec<VersionRecord>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT worker, version, component_hash, config, created_at
             FROM versions WHERE worker = ?1 ORDER BY version DESC",
        )?;
        let rows = stmt.query_map([worker], version_record)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The active version of every worker: what a restarting host serves.
    pub(crate) fn active_versions(&self) -> Result<Vec<VersionRecord>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT v.worker, v.version, v.component_hash, v.config, v.created_at
             FROM versions v JOIN workers w
               ON w.name = v.worker AND w.active_version = v.version
             ORDER BY v.worker",
        )?;
        let rows = stmt.query_map([], version_record)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Where a rollback of `worker` goes: the version of the current
    /// deployment's parent (see [`Self::activate`]).
    pub(crate) fn previous_version(&self, worker: &str) -> Result<Option<u32>> {
        Ok(self
            .conn()
            .query_row(
                "SELECT p.version FROM deployments p
                 WHERE p.id = (SELECT parent FROM deployments WHERE worker = ?1
                               ORDER BY id DESC LIMIT 1)",
                [worker],
                |row| row.get(0),
            )
            .optional()?)
    }

    /// Deletes `worker` with its versions, history and secrets. Returns the
    /// component hashes no version refers to any more.
    pub(crate) fn delete_worker(&self, worker: &str) -> Result<Vec<String>> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let hashes: Vec<String> = {
            let mut stmt =
                tx.prepare("SELECT DISTINCT component_hash FROM versions WHERE worker = ?1")?;
            stmt.query_map([worker], |row| row.get(0))?
                .collect::<Result<_, _>>()?
        };
        tx.execute("DELETE FROM workers WHERE name = ?1", [worker])?;
        let mut orphans = Vec::new();
        for hash in hashes {
            let still_used: bool = tx.query_row(
                "SELECT EXISTS (SELECT 1 FROM versions WHERE component_hash = ?1)",
                [&hash],
                |row| row.get(0),
            )?;
            if !still_used {
                orphans.push(hash);
            }
        }
        tx.commit()?;
        Ok(orphans)
    }

    pub(crate) fn secrets(&self, worker: &str) -> Result<BTreeMap<String, String>> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT name, value FROM secrets WHERE worker = ?1")?;
        let rows = stmt.query_map([worker], |row| Ok((row.get(0)?, row.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub(crate) fn put_secret(&self, worker: &str, name: &str, value: &str) -> Result<()> {
        self.conn().execute(
            "INSERT INTO secrets (worker, name, value) VALUES (?1, ?2, ?3)
             ON CONFLICT (worker, name) DO UPDATE SET value = excluded.value",
            params![worker, name, value],
        )?;
        Ok(())
    }

    /// Returns whether the secret existed.
    pub(crate) fn delete_secret(&self, worker: &str, name: &str) -> Result<bool> {
        let deleted = self.conn().execute(
            "DELETE FROM secrets WHERE worker = ?1 AND name = ?2",
            params![worker, name],
        )?;
        Ok(deleted > 0)
    }
}

impl ControlStore {
    /// The setting `key`, created with `init()` on first use.
    pub(crate) fn setting_or_init(
        &self,
        key: &str,
        init: impl FnOnce() -> String,
    ) -> Result<String> {
        let conn = self.conn();
        if let Some(value) = conn
            .query_row("SELECT value FROM settings WHERE key = ?1", [key], |r| {
                r.get(0)
            })
            .optional()?
        {
            return Ok(value);
        }
        let value = init();
        conn.execute(
            "INSERT INTO settings (key, value) VALUES (?1, ?2)",
            params![key, value],
        )?;
        Ok(value)
    }

    pub(crate) fn namespaces(&self) -> Result<Vec<NamespaceRecord>> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare("SELECT id, worker, class FROM namespaces ORDER BY worker, class")?;
        let rows = stmt.query_map([], |r| {
            Ok(NamespaceRecord {
                id: r.get(0)?,
                worker: r.get(1)?,
                class: r.get(2)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Tags of the migrations already applied for `worker`.
    pub(crate) fn applied_migrations(&self, worker: &str) -> Result<Vec<String>> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT tag FROM applied_migrations WHERE worker = ?1")?;
        let rows = stmt.query_map([worker], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Applies one `[[migrations]]` entry atomically: records the tag and
    /// creates, renames or deletes namespaces. Returns the ids of deleted
    /// namespaces, whose files the caller removes.
    pub(crate) fn apply_migration(
        &self,
        worker: &str,
        migration: &NamespaceMigration<'_>,
    ) -> Result<Vec<String>> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let now = now();
        for class in migration.new_classes {
            tx.execute(
                "INSERT INTO namespaces (id, worker, class, created_at) VALUES (?1, ?2, ?3, ?4)",
                params![hex::encode(rand::random::<[u8; 16]>()), worker, class, now],
            )?;
        }
        for (from, to) in &migration.renamed {
            tx.execute(
                "UPDATE namespaces SET class = ?3 WHERE worker = ?1 AND class = ?2",
                params![worker, from, to],
            )?;
        }
        let mut deleted = Vec::new();
        for class in migration.deleted {
            if let Some(id) = tx
                .query_row(
                    "DELETE FROM namespaces WHERE worker = ?1 AND class = ?2 RETURNING id",
                    params![worker, class],
                    |r| r.get(0),
                )
                .optional()?
            {
                deleted.push(id);
            }
        }
        tx.execute(
            "INSERT INTO applied_migrations (worker, tag, applied_at) VALUES (?1, ?2, ?3)",
            params![worker, migration.tag, now],
        )?;
        tx.commit()?;
        Ok(deleted)
    }

    /// Records objects' names and activity, in one transaction.
    pub(crate) fn record_objects(&self, records: &[(String, ObjectRecord)]) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        {
            let mut upsert = tx.prepare_cached(
                "INSERT INTO objects (namespace, id, name, last_active) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (namespace, id) DO UPDATE SET
                   name = COALESCE(excluded.name, objects.name),
                   last_active = MAX(excluded.last_active, objects.last_active)",
            )?;
            for (namespace, record) in records {
                // A namespace deleted meanwhile has no rows to keep.
                match upsert.execute(params![
                    namespace,
                    record.id,
                    record.name,
                    record.last_active
                ]) {
                    Ok(_) => {}
                    Err(rusqlite::Error::SqliteFailure(e, _))
                        if e.code == rusqlite::ErrorCode::ConstraintViolation => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        tx.commit()?;
        Ok(())
    }

    pub(crate) fn objects(&self, namespace: &str) -> Result<Vec<ObjectRecord>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT id, name, last_active FROM objects WHERE namespace = ?1 ORDER BY last_active DESC",
        )?;
        let rows = stmt.query_map([namespace], |r| {
            Ok(ObjectRecord {
                id: r.get(0)?,
                name: r.get(1)?,
                last_active: r.get(2)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Forgets a deleted object: its record and its alarms.
    pub(crate) fn forget_object(&self, namespace: &str, id: &str) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute(
            "DELETE FROM objects WHERE namespace = ?1 AND id = ?2",
            params![namespace, id],
        )?;
        tx.execute(
            "DELETE FROM alarms WHERE namespace = ?1 AND object_id = ?2",
            params![namespace, id],
        )?;
        tx.commit()?;
        Ok(())
    }
}

fn worker_record(row: &rusqlite::Row<'_>) -> rusqlite::Result<WorkerRecord> {
    Ok(WorkerRecord {
        name: row.get(0)?,
        active_version: row.get(1)?,
        created_at: row.get(2)?,
    })
}

fn version_record(row: &rusqlite::Row<'_>) -> rusqlite::Result<VersionRecord> {
    Ok(VersionRecord {
        worker: row.get(0)?,
        version: row.get(1)?,
        component_hash: row.get(2)?,
        config: row.get(3)?,
        created_at: row.get(4)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_activation_rollback_and_delete() {
        let dir = tempfile::tempdir().unwrap();
        let store = ControlStore::open(&dir.path().join("control.db")).unwrap();
        assert_eq!(store.add_version("w", "h1", "name = \"w\"").unwrap(), 1);
        assert_eq!(store.add_version("w", "h2", "name = \"w\"").unwrap(), 2);
        store.activate("w", 1, Activation::Forward).unwrap();
        store.activate("w", 2, Activation::Forward).unwrap();
        assert_eq!(store.previous_version("w").unwrap(), Some(1));
        assert_eq!(store.active_versions().unwrap()[0].version, 2);

        store.put_secret("w", "KEY", "v").unwrap();
        assert_eq!(store.secrets("w").unwrap()["KEY"], "v");

        let mut orphans = store.delete_worker("w").unwrap();
        orphans.sort();
        assert_eq!(orphans, ["h1", "h2"]);
        assert!(store.worker("w").unwrap().is_none());
        assert!(store.secrets("w").unwrap().is_empty());
    }

    #[test]
    fn rollbacks_walk_back_through_history() {
        let dir = tempfile::tempdir().unwrap();
        let store = ControlStore::open(&dir.path().join("control.db")).unwrap();
        for version in 1..=3 {
            store.add_version("w", "h", "name = \"w\"").unwrap();
            store.activate("w", version, Activation::Forward).unwrap();
        }
        let roll_back = |expected: Option<u32>| {
            let previous = store.previous_version("w").unwrap();
            assert_eq!(previous, expected);
            if let Some(version) = previous {
                store.activate("w", version, Activation::Rollback).unwrap();
            }
        };
        roll_back(Some(2));
        roll_back(Some(1));
        roll_back(None);

        // An explicit activation is a step forward: rollback undoes it.
        store.activate("w", 3, Activation::Forward).unwrap();
        roll_back(Some(1));
    }

    #[test]
    fn history_from_before_parents_reads_as_a_sequence() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("control.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(MIGRATIONS[0]).unwrap();
            conn.execute_batch(
                "INSERT INTO workers VALUES ('w', 2, 0);
                 INSERT INTO deployments (worker, version, deployed_at)
                 VALUES ('w', 1, 0), ('w', 2, 0);",
            )
            .unwrap();
            conn.pragma_update(None, "user_version", 1).unwrap();
        }
        let store = ControlStore::open(&path).unwrap();
        assert_eq!(store.previous_version("w").unwrap(), Some(1));
    }

    #[test]
    fn reopening_keeps_everything() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("control.db");
        {
            let store = ControlStore::open(&path).unwrap();
            store.add_version("w", "h", "name = \"w\"").unwrap();
            store.activate("w", 1, Activation::Forward).unwrap();
        }
        let store = ControlStore::open(&path).unwrap();
        assert_eq!(store.worker("w").unwrap().unwrap().active_version, Some(1));
    }
}
