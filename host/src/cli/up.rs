use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use serde::Deserialize;

use super::project::Project;
use super::{EngineArgs, ListenArgs, shutdown_signal, source_tree};
use crate::platform::{Platform, PlatformOptions};
use crate::server::{ExampleRequest, IndexEntry, IndexPage, Server};
use crate::telemetry::flush_log;
use crate::toolchain::{self, Symbols};

#[derive(Args)]
pub(super) struct UpArgs {
    /// The admin API listens too, so `verge deploy` works against `verge up`.
    #[command(flatten)]
    listen: ListenArgs,
    /// The examples workspace; by default this source tree's guest-examples.
    #[arg(long)]
    examples: Option<PathBuf>,
    /// Where state lives between runs.
    #[arg(long, default_value = ".verge/up")]
    data: PathBuf,
    #[command(flatten)]
    engine: EngineArgs,
}

pub(super) async fn run(args: UpArgs) -> Result<()> {
    let examples = args
        .examples
        .unwrap_or_else(|| source_tree().join("guest-examples"));
    eprintln!("verge: building the examples in {}", examples.display());
    let built =
        tokio::task::spawn_blocking(move || toolchain::build(&examples, Symbols::Strip)).await??;

    let token_dir = args.data.clone();
    let platform = Platform::open(PlatformOptions {
        data_dir: args.data,
        engine: args.engine.engine(),
        objects: args.engine.objects(),
        dev: true,
        cluster: None,
    })
    .await?;
    let mut entries = Vec::new();
    for component in built {
        let project = Project::open(&component.package_dir)?;
        let bytes = std::fs::read(&component.wasm)
            .with_context(|| format!("reading {}", component.wasm.display()))?;
        let name = &project.config.name;
        super::d1::apply_project_migrations(
            platform.d1().clone(),
            &project.dir,
            &project.config,
            "verge",
        )
        .await
        .with_context(|| format!("applying the D1 migrations of example `{name}`"))?;
        platform
            .deploy(name, bytes, &project.config_text, true)
            .await
            .with_context(|| format!("deploying example `{name}`"))?;
        entries.push(index_entry(&project)?);
    }
    entries.sort_by(|a, b| a.name.cmp(&b.name));

    let index = IndexPage::new(&entries);
    let server = Server::start(
        platform,
        args.listen.server_options(&token_dir, Some(index))?,
    )
    .await?;
    let addr = server.addr();
    flush_log();
    eprintln!("\nVerge is up: http://{addr}/");
    for entry in &entries {
        eprintln!("  {:<14} {}", entry.name, entry.routes.join("  "));
    }
    eprintln!(
        "Admin API on http://{}/ ; Ctrl-C stops.\n",
        server.admin_addr().expect("up opens the admin API")
    );
    server.run_until(shutdown_signal()).await
}

fn index_entry(project: &Project) -> Result<IndexEntry> {
    let config = &project.config;
    let package = package_manifest(&project.dir)?.package;
    Ok(IndexEntry {
        name: config.name.clone(),
        description: package.description,
        routes: config.routes.iter().map(ToString::to_string).collect(),
        requests: package.metadata.verge.try_requests,
    })
}

/// What the index takes from an example's Cargo.toml: its description
/// and `[package.metadata.verge] try`, the requests to offer.
#[derive(Deserialize)]
struct Manifest {
    package: Package,
}

#[derive(Deserialize)]
struct Package {
    #[serde(default)]
    description: String,
    #[serde(default)]
    metadata: Metadata,
}

#[derive(Deserialize, Default)]
struct Metadata {
    #[serde(default)]
    verge: VergeMetadata,
}

#[derive(Deserialize, Default)]
struct VergeMetadata {
    #[serde(default, rename = "try")]
    try_requests: Vec<ExampleRequest>,
}

fn package_manifest(dir: &Path) -> Result<Manifest> {
    let manifest = dir.join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest)
        .with_context(|| format!("reading {}", manifest.display()))?;
    toml::from_str(&text).with_context(|| format!("parsing {}", manifest.display()))
}
