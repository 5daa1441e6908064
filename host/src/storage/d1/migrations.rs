//! Migrations as wrangler does them: numbered `.sql` files in the
//! binding's `migrations_dir` (`0001_create_notes.sql`, ...), each applied
//! once, in order, in its own transaction, and recorded in a table of the
//! database itself (`d1_migrations` by default, wrangler's name and
//! columns), so the database knows its own history wherever it goes.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use super::D1Database;
use super::database::{Statement, written};
use crate::objects::storage::{EventBudget, SqlError};

/// A migration file on disk.
#[derive(Debug, Clone)]
pub(crate) struct MigrationFile {
    /// The file name, which is the migration's name: `0001_init.sql`.
    pub(crate) name: String,
    pub(crate) path: PathBuf,
}

/// A migration the database has recorded.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct AppliedMigration {
    pub(crate) id: i64,
    pub(crate) name: String,
    pub(crate) applied_at: String,
}

/// The `.sql` files of `dir`, in name order; none when it does not exist.
pub(crate) fn migration_files(dir: &Path) -> Result<Vec<MigrationFile>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
    };
    let mut files = Vec::new();
    for entry in entries {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.ends_with(".sql") && path.is_file() {
            files.push(MigrationFile {
                name: name.to_owned(),
                path: path.clone(),
            });
        }
    }
    files.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(files)
}

/// Writes the next migration file of `dir` (`NNNN_message.sql`, one
/// number past the highest there) and returns its path.
pub(crate) fn new_migration(dir: &Path, message: &str) -> Result<PathBuf> {
    let slug: String = message
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    if slug.trim_matches('_').is_empty() {
        bail!("the migration's message must contain letters or digits");
    }
    let next = migration_files(dir)?
        .iter()
        .filter_map(|f| f.name.split('_').next()?.parse::<u32>().ok())
        .max()
        .unwrap_or(0)
        + 1;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(format!("{next:04}_{slug}.sql"));
    let header = format!("-- Migration number: {next:04} \t {message}\n");
    std::fs::write(&path, header).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

impl D1Database {
    /// The migrations recorded in `table`, in the order they were applied.
    pub(crate) fn applied_migrations(
        &self,
        table: &str,
        limit_bytes: u64,
    ) -> Result<Vec<AppliedMigration>, SqlError> {
        self.write(limit_bytes, |writer| {
            writer.internal(|c| {
                c.execute_batch(&create_table(table))?;
                c.prepare(&format!(
                    "SELECT id, name, applied_at FROM \"{table}\" ORDER BY id"
                ))?
                .query_map([], |r| {
                    Ok(AppliedMigration {
                        id: r.get(0)?,
                        name: r.get(1)?,
                        applied_at: r.get(2)?,
                    })
                })?
                .collect()
            })
        })
    }

    /// Applies one migration in its own transaction, recording it in
    /// `table`: either both happen or neither. The SQL runs as guest SQL
    /// would (the same authorizer), without a time limit.
    pub(crate) fn apply_migration(
        &self,
        table: &str,
        name: &str,
        sql: &str,
        limit_bytes: u64,
    ) -> Result<(), SqlError> {
        self.write(limit_bytes, |writer| {
            writer.internal(|c| c.execute_batch(&create_table(table)))?;
            let statement = Statement {
                sql: sql.to_owned(),
                params: Vec::new(),
            };
            writer.with_long_scripts(|writer| {
                written(writer, &statement, &mut EventBudget::unlimited())
            })?;
            writer.internal(|c| {
                c.execute(
                    &format!("INSERT INTO \"{table}\" (name) VALUES (?1)"),
                    [name],
                )
            })?;
            Ok(())
        })
    }

    /// Applies every file of `dir` not yet recorded in `table`, in order;
    /// stops at the first that fails, which stays unapplied. Returns the
    /// names applied.
    pub(crate) fn apply_pending(
        &self,
        table: &str,
        dir: &Path,
        limit_bytes: u64,
    ) -> Result<Vec<String>> {
        let applied = self.applied_migrations(table, limit_bytes)?;
        let mut done = Vec::new();
        for file in migration_files(dir)? {
            if applied.iter().any(|a| a.name == file.name) {
                continue;
            }
            let sql = std::fs::read_to_string(&file.path)
                .with_context(|| format!("reading {}", file.path.display()))?;
            self.apply_migration(table, &file.name, &sql, limit_bytes)
                .with_context(|| format!("migration {} failed", file.name))?;
            done.push(file.name);
        }
        Ok(done)
    }
}

/// The migrations table, as wrangler creates it.
fn create_table(table: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS \"{table}\" (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            name TEXT UNIQUE,
            applied_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP NOT NULL
        )"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_migrations_take_the_next_number() {
        let dir = tempfile::tempdir().unwrap();
        let first = new_migration(dir.path(), "create notes").unwrap();
        assert!(first.ends_with("0001_create_notes.sql"));
        std::fs::write(dir.path().join("0007_x.sql"), "").unwrap();
        let next = new_migration(dir.path(), "Add tags!").unwrap();
        assert!(next.ends_with("0008_add_tags_.sql"), "{}", next.display());
        let names: Vec<_> = migration_files(dir.path())
            .unwrap()
            .into_iter()
            .map(|f| f.name)
            .collect();
        assert_eq!(
            names,
            ["0001_create_notes.sql", "0007_x.sql", "0008_add_tags_.sql"]
        );
        assert!(new_migration(dir.path(), "  !! ").is_err());
    }
}
