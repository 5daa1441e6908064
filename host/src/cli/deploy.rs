use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use super::admin_client::{AdminClient, HostArgs};
use super::project::Project;
use crate::toolchain::Symbols;

#[derive(Args)]
pub(super) struct DeployArgs {
    /// The worker crate (the directory holding verge.toml).
    #[arg(default_value = ".")]
    path: PathBuf,
    #[command(flatten)]
    host: HostArgs,
    /// Upload the version without serving it (activate it later).
    #[arg(long)]
    no_activate: bool,
}

pub(super) async fn run(args: DeployArgs) -> Result<()> {
    let project = Project::open(&args.path)?;
    let client = AdminClient::new(&args.host)?;
    client.check().await?;
    let (project, bytes) = tokio::task::spawn_blocking(move || {
        let bytes = project.build(Symbols::Strip);
        (project, bytes)
    })
    .await?;
    let bytes = bytes?;
    let name = &project.config.name;
    eprintln!("verge: uploading `{name}` ({} KiB)", bytes.len() / 1024);
    let deployment = client
        .upload(name, bytes, &project.config_text, !args.no_activate)
        .await?;
    for warning in deployment["warnings"].as_array().into_iter().flatten() {
        eprintln!("warning: {}", warning.as_str().unwrap_or_default());
    }
    let version = &deployment["version"];
    if deployment["unchanged"] == true {
        println!("`{name}` version {version} is already active; nothing changed");
    } else if args.no_activate {
        println!(
            "uploaded `{name}` version {version} (not active); to serve it:\n  verge activate {name} {version}{}",
            args.host.flag()
        );
    } else {
        println!(
            "deployed `{name}` version {version}, serving {}",
            deployment["routes"]
        );
    }
    Ok(())
}
