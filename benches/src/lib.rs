//! Verge's benchmarks: the `hello` example on a host of its own for the
//! criterion benches, and the comparison harness behind `just bench`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use verge_host::bindings::{Method, Request};
use verge_host::objects::{CallPath, Event, ObjectKey};
use verge_host::platform::{Platform, PlatformOptions};
use verge_host::runtime::{EngineOptions, LoadedWorker};
use verge_host::toolchain;

pub mod fanout;
pub mod loadgen;
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

/// One Durable Object of the `bench-objects` guest (benches/guests), on a
/// fresh host of its own, called over RPC as a worker would.
pub struct BenchObject {
    platform: Arc<Platform>,
    key: ObjectKey,
    _data: tempfile::TempDir,
}

impl BenchObject {
    /// The object named `name` of class `class`.
    pub async fn start(class: &str, name: &str) -> Result<Self> {
        let built = toolchain::build(&repo().join("benches/guests"), toolchain::Symbols::Strip)?;
        let guest = built
            .iter()
            .find(|g| g.name == "bench_objects")
            .context("benches/guests has no bench-objects")?;
        let config = std::fs::read_to_string(guest.package_dir.join("verge.toml"))?;
        let data = tempfile::tempdir()?;
        let platform = Platform::open(PlatformOptions {
            data_dir: data.path().to_path_buf(),
            engine: EngineOptions::default(),
            objects: Default::default(),
            dev: false,
        })
        .await?;
        platform
            .deploy("bench-objects", std::fs::read(&guest.wasm)?, &config, true)
            .await?;
        let objects = platform.objects();
        let namespace = objects
            .namespace("bench-objects", class)
            .with_context(|| format!("bench-objects defines no class {class}"))?;
        let key = ObjectKey {
            id: objects.id_from_name(&namespace, name),
            namespace: namespace.id,
        };
        Ok(Self {
            platform,
            key,
            _data: data,
        })
    }

    /// Calls `method` with `args` (a tuple, as the SDK's client sends it)
    /// and waits for its reply.
    pub fn rpc(
        &self,
        method: &str,
        args: &impl serde::Serialize,
    ) -> impl Future<Output = ()> + Send + 'static {
        let (objects, key) = (self.platform.objects().clone(), self.key.clone());
        let event = Event::Rpc {
            method: method.into(),
            args: serde_json::to_vec(args).expect("arguments serialize"),
        };
        async move {
            objects
                .call(
                    key,
                    None,
                    event,
                    CallPath::default(),
                    Duration::from_secs(60),
                )
                .await
                .expect("the benchmark's object failed");
        }
    }
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
