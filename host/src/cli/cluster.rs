//! `verge cluster status`: the hosts of a cluster, from any of them
//! (`GET /v1/cluster`).

use anyhow::Result;
use clap::{Args, Subcommand};

use super::admin_client::{AdminClient, HostArgs};
use super::format::Table;

#[derive(Subcommand)]
pub(super) enum ClusterCommand {
    /// List the cluster's hosts: address, lease age, objects owned.
    Status(ClusterStatusArgs),
}

#[derive(Args)]
pub(super) struct ClusterStatusArgs {
    /// Print the host's JSON answer instead, for scripts.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    host: HostArgs,
}

pub(super) async fn run(command: ClusterCommand) -> Result<()> {
    let ClusterCommand::Status(args) = command;
    let status = AdminClient::new(&args.host)?.get("/v1/cluster").await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&status)?);
        return Ok(());
    }
    let mut table = Table::new(&["host", "address", "lease age", "state", "objects"]);
    for host in status["hosts"].as_array().into_iter().flatten() {
        let id = host["id"].as_str().unwrap_or("?");
        let marker = if host["this_host"].as_bool() == Some(true) {
            " (this)"
        } else {
            ""
        };
        table.row(vec![
            format!("{id}{marker}"),
            host["address"].as_str().unwrap_or("?").to_owned(),
            format!(
                "{:.1}s",
                host["lease_age_secs"].as_f64().unwrap_or(f64::NAN)
            ),
            if host["alive"].as_bool() == Some(true) {
                "alive"
            } else {
                "lease lapsed"
            }
            .to_owned(),
            host["objects"].to_string(),
        ]);
    }
    table.print();
    Ok(())
}
