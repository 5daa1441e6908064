//! The comparison harness: Verge against workerd, `wasmtime serve`, native
//! axum and process-per-request baselines. Writes
//! target/bench-report/report.md and SVG charts.
//!
//! ```sh
//! cargo build --release -p verge-host -p verge-benches
//! cargo run --release -p verge-benches --bin bench [-- --smoke] [-- --update-docs]
//! cargo run -p verge-benches --bin bench -- --install-peers   # only install what is missing
//! ```
//!
//! A run installs the peers this machine lacks first: oha, workerd (npm)
//! and the wasmtime CLI (cargo, several minutes).

use anyhow::{Context, Result};
use verge_benches::repo;
use verge_benches::suite::{self, Options};
use verge_benches::tools::Peers;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let exe = std::env::current_exe()?;
    let options = Options {
        smoke: args.iter().any(|a| a == "--smoke"),
        out_dir: repo().join("target/bench-report"),
        bin_dir: exe.parent().context("no binary directory")?.to_path_buf(),
        install_peers: true,
    };
    if args.iter().any(|a| a == "--install-peers") {
        // Only the installs, for CI and `just bench` before a build.
        Peers::install_missing()?;
        return Ok(());
    }
    let report = suite::run(&options)?;
    if args.iter().any(|a| a == "--update-docs") {
        suite::update_docs(&report, &options.out_dir)?;
    }
    println!("{}", options.out_dir.join("report.md").display());
    Ok(())
}
