//! `verge r2`: buckets and objects on a running host, as `wrangler r2`
//! does them. Objects are named `bucket/key`; uploads and downloads stream
//! between the file and the host.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use futures::StreamExt;
use tokio::io::AsyncWriteExt;

use super::admin_client::{AdminClient, HostArgs, encode};
use super::format::{Table, size};

#[derive(Subcommand)]
pub(super) enum R2Command {
    /// Create and list buckets.
    #[command(subcommand)]
    Bucket(BucketCommand),
    /// Put, get, delete and list objects.
    #[command(subcommand)]
    Object(ObjectCommand),
}

#[derive(Subcommand)]
pub(super) enum BucketCommand {
    /// Create a bucket (workers create theirs on first use too).
    Create {
        /// 3 to 63 lower-case letters, digits or `-`.
        name: String,
        #[command(flatten)]
        host: HostArgs,
    },
    /// Every bucket on the host, with its objects and size.
    List {
        #[command(flatten)]
        host: HostArgs,
    },
}

#[derive(Subcommand)]
pub(super) enum ObjectCommand {
    /// Upload a file as an object.
    Put {
        /// `bucket/key`.
        path: String,
        /// The file to upload.
        #[arg(short, long)]
        file: PathBuf,
        /// The object's Content-Type.
        #[arg(long)]
        content_type: Option<String>,
        #[command(flatten)]
        host: HostArgs,
    },
    /// Download an object, to a file or to stdout.
    Get {
        /// `bucket/key`.
        path: String,
        /// Where to write it; stdout without it.
        #[arg(short, long)]
        file: Option<PathBuf>,
        #[command(flatten)]
        host: HostArgs,
    },
    /// Delete an object.
    Delete {
        /// `bucket/key`.
        path: String,
        #[command(flatten)]
        host: HostArgs,
    },
    /// List a bucket's objects.
    List {
        bucket: String,
        /// Only keys starting with this.
        #[arg(long)]
        prefix: Option<String>,
        /// Roll keys up at this delimiter (`/` for directories).
        #[arg(long)]
        delimiter: Option<String>,
        #[command(flatten)]
        host: HostArgs,
    },
}

/// The admin API path of object `bucket/key`.
fn object_path(path: &str) -> Result<String> {
    match path.split_once('/') {
        Some((bucket, key)) if !bucket.is_empty() && !key.is_empty() => {
            Ok(format!("/v1/r2/buckets/{bucket}/objects/{}", encode(key)))
        }
        _ => bail!("{path:?} is not an object path: write it as bucket/key"),
    }
}

pub(super) async fn run(command: R2Command) -> Result<()> {
    match command {
        R2Command::Bucket(BucketCommand::Create { name, host }) => {
            AdminClient::new(&host)?
                .put(&format!("/v1/r2/buckets/{name}"), Vec::new())
                .await?;
            println!("created bucket {name}");
        }
        R2Command::Bucket(BucketCommand::List { host }) => {
            let listing = AdminClient::new(&host)?.get("/v1/r2/buckets").await?;
            let buckets = listing["buckets"].as_array().cloned().unwrap_or_default();
            if buckets.is_empty() {
                println!("no buckets");
                return Ok(());
            }
            let mut table = Table::new(&["bucket", "objects", "size", "location"]);
            for bucket in buckets {
                table.row(vec![
                    bucket["name"].as_str().unwrap_or("?").to_owned(),
                    bucket["objects"].as_u64().unwrap_or(0).to_string(),
                    bucket["bytes"].as_u64().map_or("?".to_owned(), size),
                    bucket["location"].as_str().unwrap_or("?").to_owned(),
                ]);
            }
            table.print();
        }
        R2Command::Object(ObjectCommand::Put {
            path,
            file,
            content_type,
            host,
        }) => {
            let api = object_path(&path)?;
            let opened = tokio::fs::File::open(&file)
                .await
                .with_context(|| format!("opening {}", file.display()))?;
            let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(opened));
            let done = AdminClient::new(&host)?
                .put_typed(&api, body, content_type.as_deref())
                .await?;
            println!(
                "uploaded {path} ({} bytes, etag {})",
                done["size"].as_u64().unwrap_or(0),
                done["etag"].as_str().unwrap_or("?")
            );
        }
        R2Command::Object(ObjectCommand::Get { path, file, host }) => {
            let api = object_path(&path)?;
            let response = AdminClient::new(&host)?.stream(&api, &()).await?;
            let mut chunks = response.bytes_stream();
            let mut out: Box<dyn tokio::io::AsyncWrite + Unpin> = match &file {
                Some(file) => Box::new(
                    tokio::fs::File::create(file)
                        .await
                        .with_context(|| format!("creating {}", file.display()))?,
                ),
                None => Box::new(tokio::io::stdout()),
            };
            let mut written = 0u64;
            while let Some(chunk) = chunks.next().await {
                let chunk = chunk.context("the download broke off")?;
                out.write_all(&chunk).await?;
                written += chunk.len() as u64;
            }
            out.flush().await?;
            if let Some(file) = file {
                println!("downloaded {path} to {} ({written} bytes)", file.display());
            }
        }
        R2Command::Object(ObjectCommand::Delete { path, host }) => {
            AdminClient::new(&host)?
                .delete(&object_path(&path)?)
                .await?;
            println!("deleted {path}");
        }
        R2Command::Object(ObjectCommand::List {
            bucket,
            prefix,
            delimiter,
            host,
        }) => {
            let client = AdminClient::new(&host)?;
            let base = format!("/v1/r2/buckets/{bucket}/objects");
            let mut table = Table::new(&["key", "size", "etag"]);
            let mut cursor: Option<String> = None;
            loop {
                let query = [
                    ("prefix", prefix.clone()),
                    ("delimiter", delimiter.clone()),
                    ("cursor", cursor.take()),
                ];
                let page: serde_json::Value = client.stream(&base, &query).await?.json().await?;
                for rolled in page["delimited_prefixes"].as_array().into_iter().flatten() {
                    table.row(vec![
                        rolled.as_str().unwrap_or("?").to_owned(),
                        "-".into(),
                        "-".into(),
                    ]);
                }
                for object in page["objects"].as_array().into_iter().flatten() {
                    table.row(vec![
                        object["key"].as_str().unwrap_or("?").to_owned(),
                        object["size"].as_u64().map_or("?".to_owned(), size),
                        object["etag"].as_str().unwrap_or("?").to_owned(),
                    ]);
                }
                match page["cursor"].as_str() {
                    Some(next) if page["truncated"] == true => cursor = Some(next.to_owned()),
                    _ => break,
                }
            }
            table.print();
        }
    }
    Ok(())
}
