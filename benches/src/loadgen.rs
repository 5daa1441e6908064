//! HTTP load generation with oha or wrk.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::tools::Tool;

/// What one load run measured.
#[derive(Debug, Clone, Copy)]
pub struct LoadResult {
    pub requests_per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Share of requests that did not get a 2xx.
    pub error_rate: f64,
}

/// What to request.
#[derive(Debug, Clone)]
pub struct Target {
    /// `http://host:port`.
    pub base: String,
    pub path: String,
    pub post: bool,
    /// Append 12 random characters to the path on every request (a new key,
    /// so a new Durable Object, each time).
    pub random_suffix: bool,
}

impl Target {
    pub fn get(base: &str, path: &str) -> Self {
        Self {
            base: base.to_owned(),
            path: path.to_owned(),
            post: false,
            random_suffix: false,
        }
    }

    pub fn url(&self) -> String {
        format!("{}{}", self.base, self.path)
    }
}

/// Runs `connections` concurrent keep-alive connections against `target`
/// for `duration`.
pub fn run(
    tool: &Tool,
    target: &Target,
    connections: u32,
    duration: Duration,
) -> Result<LoadResult> {
    match tool.name {
        "oha" => run_oha(tool, target, connections, duration),
        _ => run_wrk(tool, target, connections, duration),
    }
}

fn run_oha(
    tool: &Tool,
    target: &Target,
    connections: u32,
    duration: Duration,
) -> Result<LoadResult> {
    let mut command = tool.command();
    command
        .args(["--no-tui", "--output-format", "json"])
        .args(["-c", &connections.to_string()])
        .args(["-z", &format!("{}ms", duration.as_millis())]);
    if target.post {
        command.args(["-m", "POST"]);
    }
    if target.random_suffix {
        // oha resolves the host part of the pattern as it is written, so
        // the loopback address goes in as a name, unescaped.
        let base = target.base.replace("127.0.0.1", "localhost");
        let path: String = target.path.chars().flat_map(escape_regex).collect();
        command
            .arg("--rand-regex-url")
            .arg(format!("{base}{path}[a-z0-9]{{12}}"));
    } else {
        command.arg(target.url());
    }
    let output = command.output().context("running oha")?;
    if !output.status.success() {
        bail!("oha failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    let report: Value = serde_json::from_slice(&output.stdout).context("parsing oha's JSON")?;
    let ms = |v: &Value| v.as_f64().unwrap_or(f64::NAN) * 1000.0;
    let statuses = report["statusCodeDistribution"].as_object();
    let count = |pred: &dyn Fn(&str) -> bool| -> u64 {
        statuses
            .into_iter()
            .flatten()
            .filter(|(code, _)| pred(code))
            .filter_map(|(_, n)| n.as_u64())
            .sum()
    };
    // Requests still in flight when the time is up are cut off by oha
    // itself; they are not the server's errors.
    let failed: u64 = report["errorDistribution"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(kind, _)| *kind != "aborted due to deadline")
        .filter_map(|(_, n)| n.as_u64())
        .sum();
    let ok = count(&|code| code.starts_with('2'));
    let all = count(&|_| true) + failed;
    Ok(LoadResult {
        requests_per_sec: report["summary"]["requestsPerSec"].as_f64().unwrap_or(0.0),
        p50_ms: ms(&report["latencyPercentiles"]["p50"]),
        p99_ms: ms(&report["latencyPercentiles"]["p99"]),
        error_rate: error_rate(ok, all),
    })
}

fn run_wrk(
    tool: &Tool,
    target: &Target,
    connections: u32,
    duration: Duration,
) -> Result<LoadResult> {
    // The method and random paths need a script.
    let script = tempfile::Builder::new().suffix(".lua").tempfile()?;
    let path = if target.random_suffix {
        format!(
            "{:?} .. string.format(\"%06x%06x\", math.random(0, 16777215), math.random(0, 16777215))",
            target.path
        )
    } else {
        format!("{:?}", target.path)
    };
    let method = if target.post { "POST" } else { "GET" };
    std::fs::write(
        script.path(),
        format!("request = function() return wrk.format({method:?}, {path}) end\n"),
    )?;
    let output = tool
        .command()
        .args(["--latency", "-t", &connections.min(2).to_string()])
        .args(["-c", &connections.to_string()])
        .args(["-d", &format!("{}s", duration.as_secs().max(1))])
        .arg("-s")
        .arg(script.path())
        .arg(target.url())
        .output()
        .context("running wrk")?;
    if !output.status.success() {
        bail!("wrk failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let value_after = |label: &str| -> Option<&str> {
        text.lines()
            .find_map(|line| line.trim().strip_prefix(label))
            .map(str::trim)
    };
    let requests_per_sec: f64 = value_after("Requests/sec:")
        .and_then(|v| v.parse().ok())
        .context("no Requests/sec in wrk's output")?;
    let total: u64 = text
        .lines()
        .find(|line| line.contains("requests in"))
        .and_then(|line| line.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    let bad: u64 = value_after("Non-2xx or 3xx responses:")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Ok(LoadResult {
        requests_per_sec,
        p50_ms: value_after("50%")
            .and_then(wrk_duration_ms)
            .unwrap_or(f64::NAN),
        p99_ms: value_after("99%")
            .and_then(wrk_duration_ms)
            .unwrap_or(f64::NAN),
        error_rate: error_rate(total.saturating_sub(bad), total),
    })
}

/// `c` as a regex matching itself.
fn escape_regex(c: char) -> Vec<char> {
    if r"\.+*?()|[]{}^$".contains(c) {
        vec!['\\', c]
    } else {
        vec![c]
    }
}

fn error_rate(ok: u64, all: u64) -> f64 {
    if all == 0 {
        1.0
    } else {
        1.0 - ok as f64 / all as f64
    }
}

/// wrk prints durations as `812.00us`, `1.23ms` or `1.02s`.
fn wrk_duration_ms(text: &str) -> Option<f64> {
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    Some(match unit {
        "us" => number / 1000.0,
        "ms" => number,
        "s" => number * 1000.0,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_wrk_durations() {
        assert_eq!(wrk_duration_ms("812.00us"), Some(0.812));
        assert_eq!(wrk_duration_ms("1.50ms"), Some(1.5));
        assert_eq!(wrk_duration_ms("2.00s"), Some(2000.0));
        assert_eq!(wrk_duration_ms("fast"), None);
    }
}
