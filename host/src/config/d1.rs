//! `[[d1_databases]]`, as wrangler.toml has it: which D1 databases a worker
//! reaches under which binding names.

use std::path::PathBuf;

use serde::Deserialize;

use super::{ConfigError, validate_name};

/// One database the worker reaches as `env.d1(binding)`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct D1Binding {
    /// The name code uses, e.g. `DB`.
    pub binding: String,
    /// The database, shared by every worker bound to the same name; its
    /// file is `<data>/d1/<database_name>.sqlite`.
    pub database_name: String,
    /// wrangler's Cloudflare-side id. Accepted, so a wrangler.toml section
    /// can be pasted as it is, and ignored: Verge names a database by
    /// `database_name` alone.
    #[serde(default)]
    pub database_id: Option<String>,
    /// Where `verge d1 migrations` finds the migration files, relative to
    /// verge.toml.
    #[serde(default = "default_migrations_dir")]
    pub migrations_dir: PathBuf,
    /// The table in the database that records applied migrations.
    #[serde(default = "default_migrations_table")]
    pub migrations_table: String,
}

fn default_migrations_dir() -> PathBuf {
    PathBuf::from("migrations")
}

fn default_migrations_table() -> String {
    "d1_migrations".into()
}

/// Checks every `[[d1_databases]]` entry.
pub(super) fn validate(bindings: &[D1Binding]) -> Result<(), ConfigError> {
    for entry in bindings {
        let binding = &entry.binding;
        super::check_binding_name(binding)?;
        if validate_database_name(&entry.database_name).is_err() {
            return Err(ConfigError::new(format!(
                "d1_databases: binding {binding:?}: {}",
                database_name_rule(&entry.database_name)
            )));
        }
        if let Err(e) = validate_migrations_table(&entry.migrations_table) {
            return Err(ConfigError::new(format!(
                "d1_databases: binding {binding:?}: {}",
                e.0
            )));
        }
        if entry.migrations_dir.is_absolute()
            || entry
                .migrations_dir
                .components()
                .any(|c| matches!(c, std::path::Component::ParentDir))
        {
            return Err(ConfigError::new(format!(
                "d1_databases: binding {binding:?}: migrations_dir must be a path inside the worker's directory"
            )));
        }
    }
    Ok(())
}

/// Database names become file names, so they follow the rules of worker
/// names (what a DNS label allows).
pub(crate) fn validate_database_name(name: &str) -> Result<(), ConfigError> {
    validate_name(name).map_err(|_| ConfigError::new(database_name_rule(name)))
}

fn database_name_rule(name: &str) -> String {
    format!(
        "database_name {name:?} is not valid: use 1 to 63 lower-case letters, digits, `-` or `_`, not starting with `-`"
    )
}

/// A migrations table's name goes into SQL as an identifier, so it is
/// kept to letters, digits and `_`.
pub(crate) fn validate_migrations_table(table: &str) -> Result<(), ConfigError> {
    if table.len() <= 64 && super::is_identifier(table) {
        return Ok(());
    }
    Err(ConfigError::new(format!(
        "migrations_table {table:?} is not valid: use letters, digits and `_`"
    )))
}

#[cfg(test)]
mod tests {
    use crate::config::WorkerConfig;

    #[test]
    fn parses_wrangler_style_sections() {
        let config = WorkerConfig::parse(
            r#"
            name = "notes"
            [[d1_databases]]
            binding = "DB"
            database_name = "notes-db"
            database_id = "xxxx-yyyy"
            "#,
        )
        .unwrap();
        let db = &config.d1_databases[0];
        assert_eq!(db.binding, "DB");
        assert_eq!(db.migrations_dir, std::path::Path::new("migrations"));
        assert_eq!(db.migrations_table, "d1_migrations");
    }

    #[test]
    fn rejects_bad_entries_clearly() {
        for (section, needle) in [
            (
                "binding = \"DB\"\ndatabase_name = \"Bad Name\"",
                "database_name",
            ),
            (
                "binding = \"1DB\"\ndatabase_name = \"a\"",
                "binding \"1DB\"",
            ),
            (
                "binding = \"DB\"\ndatabase_name = \"a\"\nmigrations_table = \"x;y\"",
                "migrations_table",
            ),
            (
                "binding = \"DB\"\ndatabase_name = \"a\"\nmigrations_dir = \"../up\"",
                "migrations_dir",
            ),
            ("binding = \"DB\"", "database_name"),
        ] {
            let err = WorkerConfig::parse(&format!("name = \"w\"\n[[d1_databases]]\n{section}"))
                .unwrap_err();
            assert!(err.to_string().contains(needle), "{section}: {err}");
        }
        let twice = "name = \"w\"\n[[d1_databases]]\nbinding = \"DB\"\ndatabase_name = \"a\"\n[[d1_databases]]\nbinding = \"DB\"\ndatabase_name = \"b\"";
        assert!(
            WorkerConfig::parse(twice)
                .unwrap_err()
                .to_string()
                .contains("twice")
        );
    }
}
