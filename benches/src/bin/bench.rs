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
//! and the wasmtime CLI (cargo, several minutes). `--only` and `--bin-dir`
//! compare two builds of Verge on a few benches: run the same harness
//! against each build's `target/release`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Parser;
use verge_benches::repo;
use verge_benches::suite::{self, GROUPS, Options};
use verge_benches::tools::Peers;

#[derive(Parser)]
#[command(about = "Verge's benchmark harness")]
struct Args {
    /// Every bench for about a second, to check the harness.
    #[arg(long)]
    smoke: bool,
    /// Write the figures into docs/benchmarks.md.
    #[arg(long)]
    update_docs: bool,
    /// Only install the missing peers, then stop.
    #[arg(long)]
    install_peers: bool,
    /// Install nothing: skip what needs a missing peer.
    #[arg(long, conflicts_with = "install_peers")]
    no_install: bool,
    /// Run only these groups (comma-separated).
    #[arg(long, value_delimiter = ',', value_parser = clap::builder::PossibleValuesParser::new(GROUPS))]
    only: Vec<String>,
    /// Where the `verge` and `native-hello` binaries are [default: next to this one].
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Where the report goes [default: target/bench-report].
    #[arg(long)]
    out: Option<PathBuf>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    if args.install_peers {
        Peers::install_missing()?;
        return Ok(());
    }
    let bin_dir = match args.bin_dir {
        Some(dir) => dir,
        None => std::env::current_exe()?
            .parent()
            .context("no binary directory")?
            .to_path_buf(),
    };
    let options = Options {
        smoke: args.smoke,
        out_dir: args
            .out
            .unwrap_or_else(|| repo().join("target/bench-report")),
        bin_dir,
        install_peers: !args.no_install,
        only: args.only,
    };
    let report = suite::run(&options)?;
    if args.update_docs {
        suite::update_docs(&report, &options.out_dir)?;
    }
    println!("{}", options.out_dir.join("report.md").display());
    Ok(())
}
