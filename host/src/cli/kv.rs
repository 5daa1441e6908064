//! `verge kv`: KV namespaces and their keys, on a running host through its
//! admin API, or with `--local` on the state `verge dev` keeps — the
//! commands of `wrangler kv`.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::admin_client::{self, TargetArgs, encode};
use super::format::Table;
use super::project::Project;
use crate::clock::unix_now;
use crate::config::check_namespace_id;
use crate::storage::kv::bulk;
use crate::storage::kv::{KvLimits, KvNamespaces, OwnedPut, Put, checks};

#[derive(Subcommand)]
pub(super) enum KvCommand {
    /// KV namespaces.
    #[command(subcommand)]
    Namespace(NamespaceCommand),
    /// The keys of one namespace.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Many keys at once, all or none.
    #[command(subcommand)]
    Bulk(BulkCommand),
}

#[derive(Subcommand)]
pub(super) enum BulkCommand {
    /// Writes the pairs of a JSON file: `[{"key", "value", "expiration",
    /// "expiration_ttl", "metadata", "base64"}]`, as wrangler takes them.
    Put {
        file: PathBuf,
        #[command(flatten)]
        namespace: NamespaceArgs,
    },
    /// Deletes the keys of a JSON file: `["key", ...]`.
    Delete {
        file: PathBuf,
        #[command(flatten)]
        namespace: NamespaceArgs,
    },
}

#[derive(Subcommand)]
pub(super) enum NamespaceCommand {
    /// The namespaces that hold data or that deployed workers bind.
    List {
        #[command(flatten)]
        target: TargetArgs,
    },
}

#[derive(Subcommand)]
pub(super) enum KeyCommand {
    /// Writes a value: the argument, or a file's bytes with --path.
    Put {
        key: String,
        #[arg(required_unless_present = "path", conflicts_with = "path")]
        value: Option<String>,
        /// Read the value from this file.
        #[arg(long)]
        path: Option<PathBuf>,
        /// Expire this many seconds from now.
        #[arg(long, conflicts_with = "expiration")]
        ttl: Option<u64>,
        /// Expire at this time, in seconds since the Unix epoch.
        #[arg(long)]
        expiration: Option<u64>,
        /// JSON to keep beside the value.
        #[arg(long)]
        metadata: Option<String>,
        #[command(flatten)]
        namespace: NamespaceArgs,
    },
    /// Writes a key's value to stdout, as stored.
    Get {
        key: String,
        #[command(flatten)]
        namespace: NamespaceArgs,
    },
    /// Every key (with its expiration and metadata) as JSON.
    List {
        /// Only keys that start with this.
        #[arg(long)]
        prefix: Option<String>,
        #[command(flatten)]
        namespace: NamespaceArgs,
    },
    /// Removes a key.
    Delete {
        key: String,
        #[command(flatten)]
        namespace: NamespaceArgs,
    },
}

/// Which namespace: by id, or by a binding in ./verge.toml.
#[derive(Args)]
pub(super) struct NamespaceArgs {
    /// The namespace's binding in ./verge.toml.
    #[arg(
        long,
        conflicts_with = "namespace_id",
        required_unless_present = "namespace_id"
    )]
    binding: Option<String>,
    /// The namespace's id.
    #[arg(long)]
    namespace_id: Option<String>,
    #[command(flatten)]
    target: TargetArgs,
}

impl NamespaceArgs {
    /// The namespace id these arguments name.
    fn id(&self) -> Result<String> {
        let id = match (&self.namespace_id, &self.binding) {
            (Some(id), _) => id.clone(),
            (None, Some(binding)) => {
                let project = Project::open(Path::new("."))?;
                let bound = project
                    .config
                    .kv_namespaces
                    .iter()
                    .find(|kv| &kv.binding == binding)
                    .ok_or_else(|| anyhow!("./verge.toml binds no KV namespace as {binding:?}"))?;
                bound.namespace()
            }
            (None, None) => bail!("pass --binding or --namespace-id"),
        };
        check_namespace_id(&id).map_err(|e| anyhow!(e))?;
        Ok(id)
    }
}

/// Where commands go.
type Target = admin_client::Target<KvNamespaces>;

pub(super) async fn run(command: KvCommand) -> Result<()> {
    match command {
        KvCommand::Namespace(NamespaceCommand::List { target }) => list_namespaces(target).await,
        KvCommand::Key(command) => key(command).await,
        KvCommand::Bulk(command) => bulk(command).await,
    }
}

async fn list_namespaces(target: TargetArgs) -> Result<()> {
    let namespaces = match target.open(KvNamespaces::new)? {
        Target::Host(client) => client.get("/v1/kv").await?["namespaces"].clone(),
        Target::Local(store) => store
            .local_ids()?
            .into_iter()
            .map(|id| json!({ "id": id, "bindings": [] }))
            .collect(),
    };
    let namespaces = namespaces.as_array().cloned().unwrap_or_default();
    if namespaces.is_empty() {
        println!("no KV namespaces");
        return Ok(());
    }
    let mut table = Table::new(&["id", "bound by"]);
    for namespace in namespaces {
        let bindings: Vec<String> = namespace["bindings"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|b| {
                format!(
                    "{} ({})",
                    b["worker"].as_str().unwrap_or("?"),
                    b["binding"].as_str().unwrap_or("?")
                )
            })
            .collect();
        table.row(vec![
            namespace["id"].as_str().unwrap_or("?").to_owned(),
            bindings.join(", "),
        ]);
    }
    table.print();
    Ok(())
}

async fn key(command: KeyCommand) -> Result<()> {
    match command {
        KeyCommand::Put {
            key,
            value,
            path,
            ttl,
            expiration,
            metadata,
            namespace,
        } => {
            let value = match (value, path) {
                (_, Some(path)) => {
                    std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?
                }
                (Some(value), None) => value.into_bytes(),
                (None, None) => bail!("give a value, or --path FILE"),
            };
            if let Some(metadata) = &metadata {
                checks::check_metadata(Some(metadata)).map_err(|e| anyhow!(e))?;
            }
            let id = namespace.id()?;
            match namespace.target.open(KvNamespaces::new)? {
                Target::Host(client) => {
                    let mut query = url::form_urlencoded::Serializer::new(String::new());
                    for (name, value) in [("expiration_ttl", ttl), ("expiration", expiration)] {
                        if let Some(value) = value {
                            query.append_pair(name, &value.to_string());
                        }
                    }
                    if let Some(metadata) = &metadata {
                        query.append_pair("metadata", metadata);
                    }
                    let path = format!("{}?{}", value_path(&id, &key), query.finish());
                    client.put(&path, value).await?;
                }
                Target::Local(store) => {
                    let limits = KvLimits::operator();
                    limits.check_key(&key).map_err(|e| anyhow!(e))?;
                    limits.check_value(&value).map_err(|e| anyhow!(e))?;
                    let now = unix_now();
                    let expiration =
                        checks::expiration(expiration, ttl, now).map_err(|e| anyhow!(e))?;
                    let put = Put {
                        key: &key,
                        value: &value,
                        metadata: metadata.as_deref(),
                        expiration,
                    };
                    store.local(&id)?.put(&[put], now)?;
                }
            }
            eprintln!("verge: wrote {key:?} to namespace {id}");
        }
        KeyCommand::Get { key, namespace } => {
            let id = namespace.id()?;
            let value = match namespace.target.open(KvNamespaces::new)? {
                Target::Host(client) => client.get_bytes(&value_path(&id, &key)).await?,
                Target::Local(store) => {
                    KvLimits::operator()
                        .check_key(&key)
                        .map_err(|e| anyhow!(e))?;
                    store
                        .local(&id)?
                        .get(&key, unix_now())?
                        .ok_or_else(|| anyhow!("no key {key:?} in namespace {id}"))?
                        .value
                }
            };
            std::io::stdout().write_all(&value)?;
        }
        KeyCommand::List { prefix, namespace } => {
            let id = namespace.id()?;
            let keys = list_all(
                &namespace.target.open(KvNamespaces::new)?,
                &id,
                prefix.as_deref(),
            )
            .await?;
            println!("{}", serde_json::to_string_pretty(&keys)?);
        }
        KeyCommand::Delete { key, namespace } => {
            let id = namespace.id()?;
            match namespace.target.open(KvNamespaces::new)? {
                Target::Host(client) => {
                    client.delete(&value_path(&id, &key)).await?;
                }
                Target::Local(store) => {
                    KvLimits::operator()
                        .check_key(&key)
                        .map_err(|e| anyhow!(e))?;
                    store.local(&id)?.delete(&[&key])?;
                }
            }
            eprintln!("verge: deleted {key:?} from namespace {id}");
        }
    }
    Ok(())
}

async fn bulk(command: BulkCommand) -> Result<()> {
    let (file, namespace, deleting) = match command {
        BulkCommand::Put { file, namespace } => (file, namespace, false),
        BulkCommand::Delete { file, namespace } => (file, namespace, true),
    };
    let json = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
    let id = namespace.id()?;
    let count = match (namespace.target.open(KvNamespaces::new)?, deleting) {
        (Target::Host(client), false) => {
            client.put(&format!("/v1/kv/{id}/bulk"), json).await?["written"].as_u64()
        }
        (Target::Host(client), true) => client
            .post_body(&format!("/v1/kv/{id}/bulk/delete"), json)
            .await?["deleted"]
            .as_u64(),
        (Target::Local(store), false) => {
            let now = unix_now();
            let puts = bulk::puts(&json, KvLimits::operator(), now).map_err(|e| anyhow!(e))?;
            let puts: Vec<Put<'_>> = puts.iter().map(OwnedPut::as_put).collect();
            store.local(&id)?.put(&puts, now)?;
            Some(puts.len() as u64)
        }
        (Target::Local(store), true) => {
            let keys = bulk::deletes(&json, KvLimits::operator()).map_err(|e| anyhow!(e))?;
            let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
            store.local(&id)?.delete(&keys)?;
            Some(keys.len() as u64)
        }
    };
    let done = if deleting { "deleted" } else { "wrote" };
    eprintln!(
        "verge: {done} {} keys in namespace {id}",
        count.unwrap_or(0)
    );
    Ok(())
}

/// Every key of namespace `id` that starts with `prefix`, page by page.
async fn list_all(target: &Target, id: &str, prefix: Option<&str>) -> Result<Vec<Value>> {
    let mut keys = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = match target {
            Target::Host(client) => {
                let mut query = url::form_urlencoded::Serializer::new(String::new());
                for (name, value) in [("prefix", prefix), ("cursor", cursor.as_deref())] {
                    if let Some(value) = value {
                        query.append_pair(name, value);
                    }
                }
                client
                    .get(&format!("/v1/kv/{id}/keys?{}", query.finish()))
                    .await?
            }
            Target::Local(store) => {
                let listing = store
                    .local(id)?
                    .list(
                        prefix.unwrap_or_default(),
                        cursor.as_deref(),
                        checks::MAX_LIST_LIMIT,
                        unix_now(),
                    )?
                    .map_err(|e| anyhow!(e))?;
                listing.into_json()
            }
        };
        keys.extend(page["keys"].as_array().cloned().unwrap_or_default());
        match page["cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return Ok(keys),
        }
    }
}

/// The admin API path of `key` in namespace `id`.
fn value_path(id: &str, key: &str) -> String {
    format!("/v1/kv/{id}/values/{}", encode(key))
}
