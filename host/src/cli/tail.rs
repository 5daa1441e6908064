//! `verge tail`: a host's live request logs, like `wrangler tail`.

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use futures::StreamExt;

use super::admin_client::{AdminClient, HostArgs};
use crate::telemetry::{TailEvent, TailFilter};

#[derive(Args)]
pub(super) struct TailArgs {
    /// Only this worker's requests (and its objects' events).
    worker: Option<String>,
    #[command(flatten)]
    host: HostArgs,
    /// `ok`, `error`, a status (`404`) or a class (`5xx`); repeatable.
    #[arg(long)]
    status: Vec<String>,
    /// Only these methods; repeatable.
    #[arg(long)]
    method: Vec<String>,
    /// Only requests whose host/path or a log line contains this text.
    #[arg(long)]
    search: Option<String>,
    /// The fraction of requests to show, 0 to 1.
    #[arg(long)]
    sampling_rate: Option<f64>,
    /// `pretty` lines, or `json`: one event per line, as the host sends it.
    #[arg(long, value_enum, default_value_t = TailFormat::Pretty)]
    format: TailFormat,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum TailFormat {
    Pretty,
    Json,
}

pub(super) async fn run(args: TailArgs) -> Result<()> {
    let filter = TailFilter {
        worker: args.worker,
        status: (!args.status.is_empty()).then(|| args.status.join(",")),
        method: (!args.method.is_empty()).then(|| args.method.join(",")),
        search: args.search,
        sampling_rate: args.sampling_rate,
    };
    filter.validate().map_err(anyhow::Error::msg)?;
    let response = AdminClient::new(&args.host)?
        .stream("/v1/tail", &filter)
        .await?;
    eprintln!(
        "verge: tailing {}; Ctrl-C to stop",
        filter.worker.as_deref().unwrap_or("every worker")
    );
    let mut body = response.bytes_stream();
    let mut pending = Vec::new();
    while let Some(chunk) = body.next().await {
        pending.extend_from_slice(&chunk.context("the host closed the tail")?);
        while let Some(end) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            print_line(&line, args.format)?;
        }
    }
    Ok(())
}

fn print_line(line: &[u8], format: TailFormat) -> Result<()> {
    let line = String::from_utf8_lossy(line);
    let line = line.trim_end();
    if line.is_empty() {
        return Ok(());
    }
    if format == TailFormat::Json {
        println!("{line}");
        return Ok(());
    }
    let value: serde_json::Value =
        serde_json::from_str(line).context("the host sent a line that is not JSON")?;
    if let Some(missed) = value.get("missed") {
        println!("… {missed} events missed (this terminal fell behind)");
        return Ok(());
    }
    let event: TailEvent = serde_json::from_value(value).context("reading a tail event")?;
    println!("{}", headline(&event));
    for log in &event.logs {
        println!("  ({}) {}", log.level, log.message);
    }
    Ok(())
}

/// `GET localhost:8787/hello 200 (1.3 ms) hello v2 · request 6f…`
fn headline(event: &TailEvent) -> String {
    let mut line = format!(
        "{} {} {} ({:.1} ms)",
        event.method.as_deref().unwrap_or(&event.kind),
        event.target,
        event.status,
        event.duration_ms
    );
    if let (Some(worker), Some(version)) = (&event.worker, event.version) {
        line.push_str(&format!(" {worker} v{version}"));
    }
    if let Some(object) = &event.object {
        line.push_str(&format!(" object {object}"));
    }
    line.push_str(&format!(" · request {}", event.request_id));
    if let Some(error_id) = &event.error_id {
        line.push_str(&format!(" · error {error_id}"));
    }
    line
}
