use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::config::validate_name;
use crate::toolchain::sdk;

#[derive(Args)]
pub(super) struct NewArgs {
    /// The worker's name; also the directory created.
    name: String,
    /// Build against the verge SDK crate at this path (for SDK
    /// development), written as a [patch.crates-io] in Cargo.toml; by
    /// default the SDK this binary carries.
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
    let sdk_path = args
        .sdk
        .map(|path| {
            path.canonicalize()
                .with_context(|| format!("--sdk: no verge SDK at {}", path.display()))
        })
        .transpose()?;
    for (path, contents) in scaffold(name, sdk_path.as_deref()) {
        let path = dir.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, contents).with_context(|| format!("writing {}", path.display()))?;
    }
    if sdk_path.is_none() {
        // Plain cargo and rust-analyzer find the embedded SDK too.
        sdk::refresh_local_patch(dir, &sdk::unpacked()?)?;
    }
    println!("Created worker `{name}`. Next:\n\n    cd {name}\n    verge dev\n");
    Ok(())
}

/// The files of a new worker crate, as (path, contents). The crate asks
/// for the SDK by version, so it builds wherever `verge` is installed; with
/// `sdk`, its Cargo.toml patches that version to the SDK at `sdk`.
fn scaffold(name: &str, sdk: Option<&Path>) -> Vec<(&'static str, String)> {
    let (package, version) = (sdk::PACKAGE, sdk::version());
    let patch = sdk
        .map(|sdk| {
            let sdk = toml::Value::String(sdk.display().to_string().replace('\\', "/"));
            format!("\n# The verge SDK under development (`verge new --sdk`).\n[patch.crates-io]\n{package} = {{ path = {sdk} }}\n")
        })
        .unwrap_or_default();
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
# The Verge SDK; in code it is `verge` (`use verge::...`).
{package} = "{version}"
serde = {{ version = "1", features = ["derive"] }}
serde_json = "1"

[profile.release]
lto = true
strip = true

# A worker is its own workspace, wherever it is created.
[workspace]
{patch}"#
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
            format!(
                r#"# Cargo takes `{package}` from the SDK the `verge` binary carries; {file}
# says where it is on this machine (so it stays out of git), and
# `verge build`, `dev` and `deploy` write it again when it is missing or
# out of date.
include = [{{ path = "{file}", optional = true }}]

[build]
target = "wasm32-wasip2"
"#,
                file = sdk::LOCAL_PATCH_FILE,
            ),
        ),
        (
            ".gitignore",
            format!(
                "/target\n/.verge\n.dev.vars\n/.cargo/{}\n",
                sdk::LOCAL_PATCH_FILE
            ),
        ),
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
