use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;

use super::source_tree;
use crate::config::validate_name;

#[derive(Args)]
pub(super) struct NewArgs {
    /// The worker's name; also the directory created.
    name: String,
    /// The verge SDK crate to depend on; by default this source tree's.
    #[arg(long)]
    sdk: Option<PathBuf>,
}

pub(super) fn run(args: NewArgs) -> Result<()> {
    let name = &args.name;
    validate_name(name)?;
    let dir = Path::new(name);
    if dir.exists() {
        bail!("{} already exists", dir.display());
    }
    let sdk = args.sdk.unwrap_or_else(|| source_tree().join("sdk"));
    let sdk = sdk.canonicalize().with_context(|| {
        format!(
            "the verge SDK is not at {} (pass --sdk PATH)",
            sdk.display()
        )
    })?;
    for (path, contents) in scaffold(name, &sdk) {
        let path = dir.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, contents).with_context(|| format!("writing {}", path.display()))?;
    }
    println!("Created worker `{name}`. Next:\n\n    cd {name}\n    verge dev\n");
    Ok(())
}

/// The files of a new worker crate, as (path, contents).
fn scaffold(name: &str, sdk: &Path) -> Vec<(&'static str, String)> {
    let sdk = sdk.display().to_string().replace('\\', "/");
    vec![
        (
            "Cargo.toml",
            format!(
                r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"

[lib]
crate-type = ["cdylib"]

[dependencies]
verge = {{ path = "{sdk}" }}
serde = {{ version = "1", features = ["derive"] }}
serde_json = "1"

[profile.release]
lto = true
strip = true

# A worker is its own workspace, wherever it is created.
[workspace]
"#
            ),
        ),
        (
            "verge.toml",
            format!(
                r#"name = "{name}"
# Which requests reach this worker under `verge serve`; `verge dev` sends it all.
routes = ["/*"]
# Hosts `verge::fetch` may call, e.g. "https://api.example.com".
allowed_outbound_hosts = []

[vars]
GREETING = "Hello from {name}!"

[limits]
cpu_ms = 50
memory_mb = 128
"#
            ),
        ),
        (
            ".cargo/config.toml",
            "[build]\ntarget = \"wasm32-wasip2\"\n".to_owned(),
        ),
        (".gitignore", "/target\n/.verge\n.dev.vars\n".to_owned()),
        (
            "src/lib.rs",
            r#"use serde_json::json;
use verge::{Env, Request, Response, Result, Router};

#[verge::worker]
fn fetch(req: Request, env: Env) -> Result<Response> {
    Router::new()
        .get("/", |_, ctx| {
            Response::json(&json!({ "message": ctx.var("GREETING")? }))
        })
        .get("/hello/:name", |_, ctx| {
            let name = ctx.param("name").unwrap_or("world");
            Ok(Response::text(format!("Hello, {name}!")))
        })
        .run(req, env)
}
"#
            .to_owned(),
        ),
    ]
}
