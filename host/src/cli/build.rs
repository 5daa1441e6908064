//! `verge build`: the build `verge deploy` uploads, on its own, for CI and
//! for uploading by other means (`spin build`, `wrangler deploy --dry-run`).

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use super::project::Project;
use crate::toolchain::Symbols;

#[derive(Args)]
pub(super) struct BuildArgs {
    /// The worker crate (the directory holding verge.toml).
    #[arg(default_value = ".")]
    path: PathBuf,
}

/// Builds the component and prints its path on stdout (alone, so scripts
/// can take it); the size goes to stderr with cargo's progress.
pub(super) fn run(args: BuildArgs) -> Result<()> {
    let project = Project::open(&args.path)?;
    let wasm = project.component(Symbols::Strip)?;
    let size = std::fs::metadata(&wasm)
        .with_context(|| format!("reading {}", wasm.display()))?
        .len();
    eprintln!(
        "verge: built `{}` ({} KiB)",
        project.config.name,
        size / 1024
    );
    println!("{}", wasm.display());
    Ok(())
}
