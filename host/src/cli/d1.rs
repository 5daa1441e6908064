//! `verge d1`: create, list, query, export and import D1 databases, and
//! apply migrations, as `wrangler d1` does. Commands talk to a running
//! host's admin API, or with `--local` work on the state `verge dev`
//! keeps in `./.verge` (it may be running: SQLite lets both in).
//!
//! A database is named by its `database_name` or by the binding that
//! ./verge.toml gives it; migrations come from that binding's
//! `migrations_dir`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use serde_json::Value;

use super::admin_client::{self, TargetArgs};
use super::format::{Table, size};
use super::project::Project;
use crate::config::WorkerConfig;
use crate::storage::d1::{D1Store, DumpOptions, migration_files, new_migration};

#[derive(Subcommand)]
pub(super) enum D1Command {
    /// Creates a database.
    Create {
        /// The database's name.
        name: String,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Lists the databases, with their sizes.
    List {
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Runs SQL in one transaction and prints the last statement's rows.
    Execute {
        /// The database, or its binding in ./verge.toml.
        name: String,
        /// The SQL to run.
        #[arg(long, conflicts_with = "file", required_unless_present = "file")]
        command: Option<String>,
        /// A file of SQL to run (an `export`, say).
        #[arg(long)]
        file: Option<PathBuf>,
        /// Prints the result as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Writes the database as SQL text: schema, then rows.
    Export {
        /// The database, or its binding in ./verge.toml.
        name: String,
        /// Where to write it.
        #[arg(short, long)]
        output: PathBuf,
        /// Only the schema.
        #[arg(long, conflicts_with = "no_schema")]
        no_data: bool,
        /// Only the rows.
        #[arg(long)]
        no_schema: bool,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Runs a SQL dump (from `export`) into the database, in one
    /// transaction.
    Import {
        /// The database, or its binding in ./verge.toml.
        name: String,
        /// The SQL file.
        #[arg(short, long)]
        input: PathBuf,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Creates, lists and applies migrations.
    #[command(subcommand)]
    Migrations(MigrationsCommand),
}

#[derive(Subcommand)]
pub(super) enum MigrationsCommand {
    /// Writes the next numbered migration file: `NNNN_message.sql`.
    Create {
        /// The database, or its binding in ./verge.toml.
        name: String,
        /// What the migration does; becomes part of the file name.
        message: String,
    },
    /// Lists the migrations not yet applied.
    List {
        /// The database, or its binding in ./verge.toml.
        name: String,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Applies every unapplied migration, in order, each in its own
    /// transaction; stops at the first that fails.
    Apply {
        /// The database, or its binding in ./verge.toml.
        name: String,
        #[command(flatten)]
        target: TargetArgs,
    },
}

/// A database as verge.toml describes it.
struct Database {
    name: String,
    migrations_dir: PathBuf,
    migrations_table: String,
}

impl Database {
    /// `name` as a binding or database name of ./verge.toml; without a
    /// match, a database name with the default migrations settings.
    fn resolve(name: &str) -> Result<Self> {
        let project = Path::new("verge.toml")
            .exists()
            .then(|| Project::open(Path::new(".")))
            .transpose()?;
        let entry = project.as_ref().and_then(|p| {
            p.config
                .d1_databases
                .iter()
                .find(|d| d.binding == name || d.database_name == name)
                .map(|d| (p, d))
        });
        Ok(match entry {
            Some((project, d)) => Database {
                name: d.database_name.clone(),
                migrations_dir: project.dir.join(&d.migrations_dir),
                migrations_table: d.migrations_table.clone(),
            },
            None => Database {
                name: name.to_owned(),
                migrations_dir: PathBuf::from("migrations"),
                migrations_table: "d1_migrations".into(),
            },
        })
    }
}

/// Where commands go.
type Target = admin_client::Target<D1Store>;

impl Target {
    async fn create(&self, name: &str) -> Result<bool> {
        match self {
            Target::Host(client) => {
                let done = client.post(&format!("/v1/d1/{name}")).await?;
                Ok(done["created"].as_bool().unwrap_or(false))
            }
            Target::Local(store) => store.create(name),
        }
    }

    async fn list(&self) -> Result<Value> {
        match self {
            Target::Host(client) => Ok(client.get("/v1/d1").await?["databases"].clone()),
            Target::Local(store) => Ok(serde_json::to_value(store.list()?)?),
        }
    }

    async fn execute(&self, name: &str, sql: String) -> Result<Value> {
        match self {
            Target::Host(client) => {
                client
                    .post_body(&format!("/v1/d1/{name}/execute"), sql)
                    .await
            }
            Target::Local(store) => Ok(serde_json::to_value(store.operator_execute(name, &sql)?)?),
        }
    }

    async fn export(&self, name: &str, options: DumpOptions) -> Result<Vec<u8>> {
        match self {
            Target::Host(client) => {
                let path = format!(
                    "/v1/d1/{name}/export?schema={}&data={}",
                    options.schema, options.data
                );
                client.get_bytes(&path).await
            }
            Target::Local(store) => Ok(store.operator_export(name, options)?.into_bytes()),
        }
    }

    /// The names of the migrations `db` has recorded.
    async fn applied(&self, db: &Database) -> Result<Vec<String>> {
        let applied = match self {
            Target::Host(client) => {
                let path = format!(
                    "/v1/d1/{}/migrations?table={}",
                    db.name, db.migrations_table
                );
                client.get(&path).await?["applied"].clone()
            }
            Target::Local(store) => {
                serde_json::to_value(store.operator_applied(&db.name, &db.migrations_table)?)?
            }
        };
        Ok(applied
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| m["name"].as_str().map(str::to_owned))
            .collect())
    }

    async fn apply(&self, db: &Database, migration: &str, sql: String) -> Result<()> {
        match self {
            Target::Host(client) => {
                let path = format!(
                    "/v1/d1/{}/migrations?table={}&name={migration}",
                    db.name, db.migrations_table
                );
                client.post_body(&path, sql).await?;
            }
            Target::Local(store) => {
                store.operator_apply(&db.name, &db.migrations_table, migration, &sql)?;
            }
        }
        Ok(())
    }
}

pub(super) async fn run(command: D1Command) -> Result<()> {
    match command {
        D1Command::Create { name, target } => {
            let created = target.open(D1Store::new)?.create(&name).await?;
            match created {
                true => println!("created D1 database {name}"),
                false => println!("D1 database {name} already exists"),
            }
        }
        D1Command::List { target } => {
            let databases = target.open(D1Store::new)?.list().await?;
            let databases = databases.as_array().cloned().unwrap_or_default();
            if databases.is_empty() {
                println!("no D1 databases");
                return Ok(());
            }
            let mut table = Table::new(&["name", "size"]);
            for db in databases {
                table.row(vec![
                    db["name"].as_str().unwrap_or("?").to_owned(),
                    db["size_bytes"].as_u64().map_or("?".to_owned(), size),
                ]);
            }
            table.print();
        }
        D1Command::Execute {
            name,
            command,
            file,
            json,
            target,
        } => {
            let sql = match (command, file) {
                (Some(sql), _) => sql,
                (None, Some(file)) => read(&file)?,
                (None, None) => bail!("pass --command or --file"),
            };
            let db = Database::resolve(&name)?;
            let result = target.open(D1Store::new)?.execute(&db.name, sql).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&result)?);
            } else {
                print_result(&result);
            }
        }
        D1Command::Export {
            name,
            output,
            no_data,
            no_schema,
            target,
        } => {
            let db = Database::resolve(&name)?;
            let options = DumpOptions {
                schema: !no_schema,
                data: !no_data,
            };
            let dump = target.open(D1Store::new)?.export(&db.name, options).await?;
            std::fs::write(&output, &dump)
                .with_context(|| format!("writing {}", output.display()))?;
            println!("wrote {} ({} bytes)", output.display(), dump.len());
        }
        D1Command::Import {
            name,
            input,
            target,
        } => {
            let db = Database::resolve(&name)?;
            let result = target
                .open(D1Store::new)?
                .execute(&db.name, read(&input)?)
                .await?;
            println!(
                "imported {} into {} ({} statements)",
                input.display(),
                db.name,
                result["statements"]
            );
        }
        D1Command::Migrations(command) => migrations(command).await?,
    }
    Ok(())
}

async fn migrations(command: MigrationsCommand) -> Result<()> {
    match command {
        MigrationsCommand::Create { name, message } => {
            let db = Database::resolve(&name)?;
            let path = new_migration(&db.migrations_dir, &message)?;
            println!("created {}", path.display());
        }
        MigrationsCommand::List { name, target } => {
            let db = Database::resolve(&name)?;
            let pending = pending(&target.open(D1Store::new)?, &db).await?;
            if pending.is_empty() {
                println!("no migrations to apply to {}", db.name);
            }
            for file in pending {
                println!("{}", file.0);
            }
        }
        MigrationsCommand::Apply { name, target } => {
            let db = Database::resolve(&name)?;
            let target = target.open(D1Store::new)?;
            let pending = pending(&target, &db).await?;
            if pending.is_empty() {
                println!("no migrations to apply to {}", db.name);
            }
            for (migration, path) in pending {
                target
                    .apply(&db, &migration, read(&path)?)
                    .await
                    .with_context(|| format!("migration {migration} failed; it was not applied"))?;
                println!("applied {migration}");
            }
        }
    }
    Ok(())
}

/// The migration files `db` has not recorded, in order: names and paths.
async fn pending(target: &Target, db: &Database) -> Result<Vec<(String, PathBuf)>> {
    let applied = target.applied(db).await?;
    Ok(migration_files(&db.migrations_dir)?
        .into_iter()
        .filter(|f| !applied.contains(&f.name))
        .map(|f| (f.name, f.path))
        .collect())
}

/// Applies the pending migrations of every database `config` binds, from
/// the worker's directory `dir`: what `verge up` and `verge dev` do before
/// each deploy, so a fresh local database has its schema. Prints what it
/// applied, each line starting with `who`.
pub(super) async fn apply_project_migrations(
    store: Arc<D1Store>,
    dir: &Path,
    config: &WorkerConfig,
    who: &str,
) -> Result<()> {
    let (dir, config) = (dir.to_owned(), config.clone());
    // SQLite blocks, and the host beside it is serving.
    let applied = tokio::task::spawn_blocking(move || {
        let mut applied = Vec::new();
        for entry in &config.d1_databases {
            let db = store.database(&entry.database_name)?;
            let names = db.apply_pending(
                &entry.migrations_table,
                &dir.join(&entry.migrations_dir),
                config.limits.d1_database_bytes(),
            )?;
            applied.extend(names.into_iter().map(|n| (entry.database_name.clone(), n)));
        }
        anyhow::Ok(applied)
    })
    .await??;
    for (database, migration) in applied {
        eprintln!("{who}: applied D1 migration {migration} to {database}");
    }
    Ok(())
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

/// Prints an `execute` answer: the rows as a table, then what it did.
fn print_result(result: &Value) {
    let columns: Vec<&str> = result["columns"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    if !columns.is_empty() {
        let mut table = Table::new(&columns);
        for row in result["rows"].as_array().into_iter().flatten() {
            table.row(
                row.as_array()
                    .into_iter()
                    .flatten()
                    .map(|v| match v {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    })
                    .collect(),
            );
        }
        table.print();
    }
    let meta = &result["meta"];
    println!(
        "{} statements; {} rows read, {} written; {:.1} ms",
        result["statements"],
        meta["rows_read"],
        meta["rows_written"],
        meta["duration"].as_f64().unwrap_or(0.0)
    );
}
