//! `verge status`: a running host at a glance, from `GET /v1/status`.

use anyhow::Result;
use clap::Args;
use serde_json::Value;

use super::admin_client::{AdminClient, HostArgs};
use super::format::{Table, duration, timestamp_ms, version};

#[derive(Args)]
pub(super) struct StatusArgs {
    /// Print the host's JSON answer instead, for scripts.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    host: HostArgs,
}

pub(super) async fn run(args: StatusArgs) -> Result<()> {
    let status = AdminClient::new(&args.host)?.get("/v1/status").await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&status)?);
        return Ok(());
    }
    let objects = &status["objects"];
    let workers = status["workers"].as_array().cloned().unwrap_or_default();
    // The host answered the admin API with its counters: it is up.
    println!("host        {} (healthy)", args.host.url());
    println!("version     {}", status["version"].as_str().unwrap_or("?"));
    if let Some(uptime) = status["uptime_secs"].as_u64() {
        println!("uptime      {}", duration(uptime));
    }
    println!("workers     {}", workers.len());
    println!(
        "objects     {} active, {} started since the host started",
        objects["active"], objects["instances_started"]
    );
    println!(
        "websockets  {} open, {} hibernated",
        objects["websockets_open"], objects["websockets_hibernated"]
    );
    println!(
        "alarms      {} scheduled, {} due",
        objects["alarms_scheduled"], objects["alarms_due"]
    );
    if !workers.is_empty() {
        println!();
        let mut table = Table::new(&["worker", "active", "serving"]);
        for worker in &workers {
            table.row(vec![
                worker["name"].as_str().unwrap_or("?").to_owned(),
                version(&worker["active_version"]),
                serving(worker).to_owned(),
            ]);
        }
        table.print();
    }
    let triggers = status["triggers"].as_array().cloned().unwrap_or_default();
    if !triggers.is_empty() {
        println!();
        let mut table = Table::new(&["worker", "cron", "last run", "next run"]);
        for trigger in &triggers {
            table.row(vec![
                trigger["worker"].as_str().unwrap_or("?").to_owned(),
                trigger["cron"].as_str().unwrap_or("?").to_owned(),
                timestamp_ms(&trigger["last_ms"]),
                timestamp_ms(&trigger["next_ms"]),
            ]);
        }
        table.print();
    }
    Ok(())
}

/// Whether a worker answers requests, and why not when it does not.
fn serving(worker: &Value) -> &'static str {
    match (
        worker["serving"].as_bool(),
        worker["active_version"].is_null(),
    ) {
        (Some(true), _) => "yes",
        (_, true) => "no (no active version)",
        _ => "no (failed to load; see the host's log)",
    }
}
