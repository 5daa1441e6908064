//! Load test: `GET /hello` against `verge serve` running the hello example
//! and against a native axum server answering the same JSON, at 1 and 64
//! connections, in one run on one machine.
//!
//! `cargo run --release -p verge-benches --bin load [-- --seconds N]`
//! writes `target/bench-report/load.md`.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use verge_benches::loadgen::{self, LoadResult};
use verge_benches::process::{Service, field_after};
use verge_benches::repo;

const CONNECTIONS: [u32; 2] = [1, 64];

fn main() -> Result<()> {
    let seconds: u64 = match std::env::args().skip_while(|a| a != "--seconds").nth(1) {
        Some(n) => n.parse().context("--seconds takes a whole number")?,
        None => 10,
    };
    let oha = loadgen::ensure_oha()?;
    let bin_dir = build_binaries()?;
    let data = tempfile::tempdir()?;

    let verge = Service::start(
        "verge",
        {
            let mut c = Command::new(bin_dir.join("verge"));
            c.args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--admin-listen",
                "127.0.0.1:0",
                "--data",
            ])
            .arg(data.path())
            .env("RUST_LOG", "warn,verge_host=info");
            c
        },
        |line| {
            line.contains("verge serve is ready")
                .then(|| line.to_owned())
        },
    )?;
    let (listen, admin) = (
        field_after(&verge.addr, "listen=")
            .context("no listen address")?
            .to_owned(),
        field_after(&verge.addr, "admin=")
            .context("no admin address")?
            .to_owned(),
    );
    let deployed = Command::new(bin_dir.join("verge"))
        .arg("deploy")
        .arg(repo().join("guest-examples/hello"))
        .args(["--host", &format!("http://{admin}")])
        .status()?;
    if !deployed.success() {
        bail!("verge deploy failed");
    }
    let native = Service::start(
        "native axum",
        {
            let mut c = Command::new(bin_dir.join("native-hello"));
            c.arg("127.0.0.1:0");
            c
        },
        |line| line.strip_prefix("listening on ").map(str::to_owned),
    )?;

    let targets = [
        ("verge serve (hello example)", listen),
        ("native axum", native.addr.clone()),
    ];
    let mut rows = Vec::new();
    for (name, addr) in &targets {
        let url = format!("http://{addr}/hello");
        for connections in CONNECTIONS {
            loadgen::run(&url, connections, Duration::from_secs(1))?; // warm-up
            let result = loadgen::run(&url, connections, Duration::from_secs(seconds))?;
            eprintln!("{name} c{connections}: {result:?}");
            rows.push((name.to_string(), connections, result));
        }
    }
    let report = render(&rows, &oha, seconds);
    println!("{report}");
    let dir = repo().join("target/bench-report");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("load.md"), &report)?;
    drop((verge, native));
    Ok(())
}

/// Builds the release binaries the run starts, returning their directory.
fn build_binaries() -> Result<PathBuf> {
    let status = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .args(["build", "--release", "-p", "verge-host", "--bin", "verge"])
        .args(["-p", "verge-benches", "--bin", "native-hello"])
        .status()?;
    if !status.success() {
        bail!("building the release binaries failed");
    }
    let exe = std::env::current_exe()?;
    Ok(exe.parent().context("no binary directory")?.to_path_buf())
}

fn render(rows: &[(String, u32, LoadResult)], oha: &str, seconds: u64) -> String {
    let mut out = String::from("# GET /hello under load\n\n");
    let _ = writeln!(
        out,
        "One run on one machine ({} cores), {seconds} s per cell after a 1 s warm-up, load from {oha} on the same machine. Ratios carry over between machines; absolute figures do not.\n",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    out.push_str("| server | connections | req/s | p50 ms | p99 ms | errors |\n|---|---:|---:|---:|---:|---:|\n");
    for (name, connections, r) in rows {
        let _ = writeln!(
            out,
            "| {name} | {connections} | {:.0} | {:.3} | {:.3} | {:.2}% |",
            r.requests_per_sec,
            r.p50_ms,
            r.p99_ms,
            r.error_rate * 100.0
        );
    }
    let rps = |server: &str, c: u32| {
        rows.iter()
            .find(|(n, conns, _)| n.starts_with(server) && *conns == c)
            .map_or(0.0, |(_, _, r)| r.requests_per_sec)
    };
    let _ = writeln!(
        out,
        "\nVerge / native at 64 connections: {:.2}x the requests per second.",
        rps("verge", 64) / rps("native", 64)
    );
    out
}
