//! HTTP load generation with oha, installed on first use.

use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// What one load run measured.
#[derive(Debug, Clone, Copy)]
pub struct LoadResult {
    pub requests_per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Share of responses that were not 2xx, or failed outright.
    pub error_rate: f64,
}

/// Makes sure `oha` is on the PATH, installing it with cargo if not.
pub fn ensure_oha() -> Result<String> {
    if let Some(version) = oha_version() {
        return Ok(version);
    }
    eprintln!("bench: installing oha (cargo install oha --locked)");
    let status = Command::new("cargo")
        .args(["install", "oha", "--locked"])
        .status()
        .context("running cargo install oha")?;
    if !status.success() {
        bail!("cargo install oha failed ({status})");
    }
    oha_version().context("oha is still not on the PATH after installing it")
}

fn oha_version() -> Option<String> {
    let output = Command::new("oha").arg("--version").output().ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// Runs `connections` concurrent connections against `url` for `duration`.
pub fn run(url: &str, connections: u32, duration: Duration) -> Result<LoadResult> {
    let output = Command::new("oha")
        .args(["--no-tui", "--output-format", "json"])
        .args(["-c", &connections.to_string()])
        .args(["-z", &format!("{}ms", duration.as_millis())])
        .arg(url)
        .output()
        .context("running oha")?;
    if !output.status.success() {
        bail!("oha failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    let report: Value = serde_json::from_slice(&output.stdout).context("parsing oha's JSON")?;
    let seconds = |v: &Value| v.as_f64().unwrap_or(f64::NAN) * 1000.0;
    let statuses = report["statusCodeDistribution"].as_object();
    let ok: u64 = statuses
        .into_iter()
        .flatten()
        .filter(|(code, _)| code.starts_with('2'))
        .filter_map(|(_, n)| n.as_u64())
        .sum();
    // Requests still in flight when the time is up are cut off by oha
    // itself; they are not the server's errors.
    let failed: u64 = report["errorDistribution"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(kind, _)| *kind != "aborted due to deadline")
        .filter_map(|(_, n)| n.as_u64())
        .sum();
    if failed > 0 {
        eprintln!(
            "bench: {url} at c{connections}: {}",
            report["errorDistribution"]
        );
    }
    let all = statuses
        .into_iter()
        .flatten()
        .filter_map(|(_, n)| n.as_u64())
        .sum::<u64>()
        + failed;
    Ok(LoadResult {
        requests_per_sec: report["summary"]["requestsPerSec"].as_f64().unwrap_or(0.0),
        p50_ms: seconds(&report["latencyPercentiles"]["p50"]),
        p99_ms: seconds(&report["latencyPercentiles"]["p99"]),
        error_rate: if all == 0 {
            1.0
        } else {
            1.0 - ok as f64 / all as f64
        },
    })
}
