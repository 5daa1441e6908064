use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};

use super::admin_client::{AdminClient, HostArgs};
use super::format::ask;
use super::project::worker_name;

#[derive(Subcommand)]
pub(super) enum SecretCommand {
    /// Set a secret; the value is read from stdin.
    Put {
        key: String,
        #[command(flatten)]
        target: Target,
    },
    /// List secret names (values are never shown).
    List {
        #[command(flatten)]
        target: Target,
    },
    /// Delete a secret.
    Delete {
        key: String,
        #[command(flatten)]
        target: Target,
    },
}

#[derive(Args)]
pub(super) struct Target {
    /// The worker; by default the one in ./verge.toml.
    #[arg(long)]
    worker: Option<String>,
    #[command(flatten)]
    host: HostArgs,
}

impl Target {
    fn resolve(&self) -> Result<(AdminClient, String)> {
        let worker = worker_name(self.worker.as_deref())?;
        Ok((AdminClient::new(&self.host)?, worker))
    }
}

pub(super) async fn run(command: SecretCommand) -> Result<()> {
    match command {
        SecretCommand::Put { key, target } => {
            let (client, worker) = target.resolve()?;
            let value = read_value()?;
            client
                .put(&format!("/v1/workers/{worker}/secrets/{key}"), value)
                .await?;
            println!("set secret `{key}` on `{worker}`");
        }
        SecretCommand::List { target } => {
            let (client, worker) = target.resolve()?;
            let listing = client.get(&format!("/v1/workers/{worker}/secrets")).await?;
            for name in listing["secrets"].as_array().into_iter().flatten() {
                println!("{}", name.as_str().unwrap_or_default());
            }
        }
        SecretCommand::Delete { key, target } => {
            let (client, worker) = target.resolve()?;
            client
                .delete(&format!("/v1/workers/{worker}/secrets/{key}"))
                .await?;
            println!("deleted secret `{key}` from `{worker}`");
        }
    }
    Ok(())
}

/// One line from stdin, prompting when it is a terminal.
fn read_value() -> Result<String> {
    let value = ask("Enter the secret value:").context("reading the secret")?;
    if value.is_empty() {
        bail!("the secret value is empty");
    }
    Ok(value)
}
