//! Verge's benchmarks: the `hello` example on a host of its own for the
//! criterion benches, and the comparison harness behind `just bench`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use verge_host::bindings::{Method, Request};
use verge_host::platform::{Platform, PlatformOptions};
use verge_host::runtime::{EngineOptions, LoadedWorker};
use verge_host::toolchain;

pub mod fanout;
pub mod loadgen;
pub mod object_rpc;
pub mod peers;
pub mod process;
pub mod report;
pub mod samples;
pub mod suite;
pub mod tools;

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The `hello` example, deployed on a fresh host whose data lives in the
/// returned directory.
pub async fn hello_worker() -> Result<(Arc<Platform>, Arc<LoadedWorker>, tempfile::TempDir)> {
    let examples = repo().join("guest-examples");
    let built = toolchain::build(&examples, toolchain::Symbols::Strip)?;
    let hello = built
        .iter()
        .find(|c| c.name == "hello")
        .context("guest-examples has no hello")?;
    let data = tempfile::tempdir()?;
    let platform = Platform::open(PlatformOptions {
        data_dir: data.path().to_path_buf(),
        engine: EngineOptions::default(),
        objects: Default::default(),
        dev: false,
    })
    .await?;
    let config = std::fs::read_to_string(hello.package_dir.join("verge.toml"))?;
    platform
        .deploy("hello", std::fs::read(&hello.wasm)?, &config, true)
        .await?;
    let worker = platform.active("hello").context("hello is not active")?;
    Ok((platform, worker, data))
}

/// `GET /hello`, as the front door would hand it to the guest.
pub fn hello_request() -> Request {
    Request {
        method: Method::Get,
        url: "http://localhost/hello".into(),
        headers: vec![("host".into(), "localhost".into())],
        body: Vec::new(),
    }
}
