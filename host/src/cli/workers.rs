//! The commands about deployed workers and their versions: `workers`,
//! `versions`, `activate`, `rollback` and `delete`. Uploading is
//! `deploy.rs`'s.

use std::io::IsTerminal;

use anyhow::{Result, bail};
use clap::Args;
use serde_json::Value;

use super::admin_client::{AdminClient, HostArgs};
use super::format::{Table, ask, size, version, when};
use super::project::worker_name;

/// `verge workers`: every worker, its active version and routes.
pub(super) async fn list(args: HostArgs) -> Result<()> {
    let listing = AdminClient::new(&args)?.get("/v1/workers").await?;
    let workers = listing["workers"].as_array().cloned().unwrap_or_default();
    if workers.is_empty() {
        println!("no workers deployed");
        return Ok(());
    }
    let mut table = Table::new(&["name", "active", "created", "routes"]);
    for worker in workers {
        let routes: Vec<&str> = worker["routes"]
            .as_array()
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        table.row(vec![
            text(&worker["name"]),
            version(&worker["active_version"]),
            when(&worker["created_at"]),
            routes.join(" "),
        ]);
    }
    table.print();
    Ok(())
}

#[derive(Args)]
pub(super) struct VersionsArgs {
    /// The worker; by default the one in ./verge.toml.
    #[arg(value_name = "WORKER")]
    name: Option<String>,
    /// Print the host's JSON answer instead of a table, for scripts.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    host: HostArgs,
}

/// `verge versions`: a worker's versions, newest first, marking the active
/// one and where a rollback would go.
pub(super) async fn versions(args: VersionsArgs) -> Result<()> {
    let name = worker_name(args.name.as_deref())?;
    let worker = AdminClient::new(&args.host)?
        .get(&format!("/v1/workers/{name}"))
        .await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&worker)?);
        return Ok(());
    }
    let rollback_to = worker["rollback_to"].as_u64();
    let mut table = Table::new(&["version", "hash", "size", "uploaded", "active"]);
    for v in worker["versions"].as_array().into_iter().flatten() {
        let marker = if v["active"] == true {
            "* active"
        } else if v["version"].as_u64() == rollback_to && rollback_to.is_some() {
            "rollback target"
        } else {
            ""
        };
        table.row(vec![
            version(&v["version"]),
            v["component_hash"]
                .as_str()
                .map_or("?", |h| &h[..h.len().min(12)])
                .to_owned(),
            v["size_bytes"].as_u64().map_or("?".to_owned(), size),
            when(&v["created_at"]),
            marker.to_owned(),
        ]);
    }
    table.print();
    Ok(())
}

#[derive(Args)]
pub(super) struct ActivateArgs {
    /// The worker.
    #[arg(value_name = "WORKER")]
    name: String,
    /// The version to serve (see `verge versions`).
    #[arg(value_name = "N")]
    version: u32,
    #[command(flatten)]
    host: HostArgs,
}

/// `verge activate WORKER N`.
pub(super) async fn activate(args: ActivateArgs) -> Result<()> {
    let client = AdminClient::new(&args.host)?;
    let deployment = activate_version(&client, &args.name, args.version).await?;
    report(&args.name, &deployment);
    Ok(())
}

#[derive(Args)]
pub(super) struct RollbackArgs {
    /// The worker; by default the one in ./verge.toml.
    #[arg(value_name = "WORKER")]
    name: Option<String>,
    /// Serve this version instead of the previously active one.
    #[arg(long, value_name = "N")]
    to: Option<u32>,
    #[command(flatten)]
    host: HostArgs,
}

/// `verge rollback [WORKER] [--to N]`.
pub(super) async fn rollback(args: RollbackArgs) -> Result<()> {
    let name = worker_name(args.name.as_deref())?;
    let client = AdminClient::new(&args.host)?;
    let deployment = match args.to {
        Some(version) => activate_version(&client, &name, version).await?,
        None => client.post(&format!("/v1/workers/{name}/rollback")).await?,
    };
    report(&name, &deployment);
    Ok(())
}

async fn activate_version(client: &AdminClient, name: &str, version: u32) -> Result<Value> {
    client
        .post_json(
            &format!("/v1/workers/{name}/activate"),
            &serde_json::json!({ "version": version }),
        )
        .await
}

/// Says which version serves after an activation or a rollback.
fn report(name: &str, deployment: &Value) {
    let version = &deployment["version"];
    if deployment["unchanged"] == true {
        println!("`{name}` is already serving version {version}; nothing changed");
    } else {
        println!("`{name}` is now serving version {version}");
    }
}

#[derive(Args)]
pub(super) struct DeleteArgs {
    /// The worker.
    #[arg(value_name = "WORKER")]
    name: String,
    /// Do not ask for confirmation.
    #[arg(short, long)]
    yes: bool,
    #[command(flatten)]
    host: HostArgs,
}

/// `verge delete WORKER`: asks first on a terminal, as wrangler does;
/// without one, only `--yes` deletes, so a script never hangs on a prompt
/// or deletes by accident.
pub(super) async fn delete(args: DeleteArgs) -> Result<()> {
    let name = &args.name;
    let client = AdminClient::new(&args.host)?;
    // Asked first, so an unknown name fails before any prompt.
    let worker = client.get(&format!("/v1/workers/{name}")).await?;
    if !args.yes {
        if !std::io::stdin().is_terminal() {
            bail!("refusing to delete `{name}` without confirmation: pass --yes");
        }
        let versions = worker["versions"].as_array().map_or(0, Vec::len);
        let answer = ask(&format!(
            "Delete worker `{name}`, its {versions} version(s), its secrets and all its Durable Objects' data? This cannot be undone. [y/N]"
        ))?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            eprintln!("not deleted");
            return Ok(());
        }
    }
    client.delete(&format!("/v1/workers/{name}")).await?;
    println!("deleted `{name}`");
    Ok(())
}

/// A JSON string, or `-`.
fn text(value: &Value) -> String {
    value.as_str().unwrap_or("-").to_owned()
}
