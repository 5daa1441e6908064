//! `verge objects`: list, export, import and delete a worker's Durable
//! Objects on a running host.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use reqwest::StatusCode;
use serde_json::Value;

use super::admin_client::{AdminClient, HostArgs, Refused, encode};
use super::format::{Table, size, when};
use super::project::worker_name;

#[derive(Subcommand)]
pub(super) enum ObjectsCommand {
    /// The objects of a class that hold data: id, name, size, last active.
    List {
        #[command(flatten)]
        class: ClassArgs,
    },
    /// Writes an object's database to a SQLite file.
    Export {
        #[command(flatten)]
        object: ObjectArgs,
        /// Where to write it.
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Replaces an object's database with a SQLite file.
    Import {
        #[command(flatten)]
        object: ObjectArgs,
        /// The SQLite file.
        #[arg(short, long)]
        input: PathBuf,
    },
    /// Deletes an object and all its data.
    Delete {
        #[command(flatten)]
        object: ObjectArgs,
    },
}

#[derive(Args)]
pub(super) struct ClassArgs {
    /// The class, e.g. `Inventory`.
    #[arg(long)]
    class: String,
    /// The worker; by default the one in ./verge.toml.
    #[arg(long)]
    worker: Option<String>,
    #[command(flatten)]
    host: HostArgs,
}

#[derive(Args)]
pub(super) struct ObjectArgs {
    #[command(flatten)]
    class: ClassArgs,
    /// The object's id (64 hexadecimal characters).
    #[arg(long, conflicts_with = "name", required_unless_present = "name")]
    id: Option<String>,
    /// The name the object is reached by.
    #[arg(long)]
    name: Option<String>,
}

impl ClassArgs {
    /// The admin client, the worker and the class's API path.
    fn resolve(&self) -> Result<(AdminClient, String, String)> {
        let worker = worker_name(self.worker.as_deref())?;
        let path = format!("/v1/workers/{worker}/objects/{}", self.class);
        Ok((AdminClient::new(&self.host)?, worker, path))
    }
}

impl ObjectArgs {
    /// The admin client, the worker and the object's API path.
    async fn resolve(&self) -> Result<(AdminClient, String, String)> {
        let (client, worker, base) = self.class.resolve()?;
        let id = match (&self.id, &self.name) {
            (Some(id), _) => id.clone(),
            (None, Some(name)) => {
                let found = client
                    .get(&format!("{base}/id?name={}", encode(name)))
                    .await?;
                found["id"]
                    .as_str()
                    .context("the host returned no id")?
                    .to_owned()
            }
            (None, None) => bail!("pass --id or --name"),
        };
        Ok((client, worker, format!("{base}/{id}")))
    }
}

pub(super) async fn run(command: ObjectsCommand) -> Result<()> {
    match command {
        ObjectsCommand::List { class } => {
            let (client, _, base) = class.resolve()?;
            let listing = client.get(&base).await?;
            let objects = listing["objects"].as_array().cloned().unwrap_or_default();
            if objects.is_empty() {
                println!("no objects hold data");
                return Ok(());
            }
            let mut table = Table::new(&["id", "size", "last active", "name"]);
            for object in objects {
                table.row(vec![
                    object["id"].as_str().unwrap_or("?").to_owned(),
                    object["size_bytes"].as_u64().map_or("?".to_owned(), size),
                    when(&object["last_active"]),
                    object["name"].as_str().unwrap_or("").to_owned(),
                ]);
            }
            table.print();
        }
        ObjectsCommand::Export { object, output } => {
            let (client, _, path) = object.resolve().await?;
            let bytes = client.get_bytes(&format!("{path}/export")).await?;
            std::fs::write(&output, &bytes)
                .with_context(|| format!("writing {}", output.display()))?;
            println!("wrote {} ({} bytes)", output.display(), bytes.len());
        }
        ObjectsCommand::Import { object, input } => {
            let bytes =
                std::fs::read(&input).with_context(|| format!("reading {}", input.display()))?;
            let (client, _, path) = object.resolve().await?;
            let done: Value = client.put(&format!("{path}/import"), bytes).await?;
            println!("imported into {}", done["imported"].as_str().unwrap_or("?"));
        }
        ObjectsCommand::Delete { object } => {
            let (client, worker, path) = object.resolve().await?;
            let done = client.delete(&path).await.map_err(|e| {
                match (e.downcast_ref::<Refused>(), &object.name) {
                    // The host knows only the id the name maps to: say it
                    // with the name the user typed.
                    (Some(refused), Some(name)) if refused.status == StatusCode::NOT_FOUND => {
                        anyhow::anyhow!(
                            "no object named {name} in class {} of worker {worker}",
                            object.class.class
                        )
                    }
                    _ => e,
                }
            })?;
            println!("deleted {}", done["deleted"].as_str().unwrap_or("?"));
        }
    }
    Ok(())
}
