//! Verge's benchmarks: the `hello` example on a host of its own for the
//! criterion benches, and the comparison harness behind `just bench`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

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

/// A host with default options whose data lives in `data`.
async fn open_platform(data: &Path) -> Result<Arc<Platform>> {
    Platform::open(PlatformOptions {
        data_dir: data.to_path_buf(),
        engine: EngineOptions::default(),
        objects: Default::default(),
        dev: false,
        cluster: None,
    })
    .await
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
    let platform = open_platform(data.path()).await?;
    let config = std::fs::read_to_string(hello.package_dir.join("verge.toml"))?;
    platform
        .deploy("hello", std::fs::read(&hello.wasm)?, &config, true)
        .await?;
    let worker = platform.active("hello").context("hello is not active")?;
    Ok((platform, worker, data))
}

/// One object of a class of the `bench-objects` guest (`benches/guests`),
/// on a fresh host of its own, for benches that time RPC calls to it.
pub struct BenchObject {
    pub platform: Arc<Platform>,
    pub key: ObjectKey,
    _data: tempfile::TempDir,
}

impl BenchObject {
    /// Deploys `bench-objects` (its component and verge.toml) and picks
    /// the object named `bench` of `class`.
    pub async fn start(wasm: Vec<u8>, config: &str, class: &str) -> Result<Self> {
        let data = tempfile::tempdir()?;
        let platform = open_platform(data.path()).await?;
        platform.deploy("bench-objects", wasm, config, true).await?;
        let objects = platform.objects();
        let namespace = objects
            .namespace("bench-objects", class)
            .with_context(|| format!("no {class} namespace"))?;
        let key = ObjectKey {
            id: objects.id_from_name(&namespace, "bench"),
            namespace: namespace.id,
        };
        Ok(Self {
            platform,
            key,
            _data: data,
        })
    }

    /// Calls RPC `method` with `args` (a tuple, sent as the SDK's clients
    /// send it) for a criterion bench: a failure panics.
    pub fn call<A: serde::Serialize>(
        &self,
        method: &'static str,
        args: &A,
    ) -> impl Future<Output = ()> + use<'_, A> {
        let args = serde_json::to_vec(args).expect("arguments serialize");
        async move {
            self.rpc(method, args)
                .await
                .expect("the bench object failed")
        }
    }

    /// Calls RPC `method` with `args` (a JSON array) and waits for it.
    pub async fn rpc(&self, method: &str, args: Vec<u8>) -> Result<()> {
        let event = Event::Rpc {
            method: method.into(),
            args,
        };
        self.platform
            .objects()
            .call(
                self.key.clone(),
                None,
                event,
                CallPath::default(),
                std::time::Duration::from_secs(60),
            )
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(())
    }
}

/// The `bench-objects` guest, built: its component and its verge.toml.
pub fn bench_objects_guest() -> Result<(Vec<u8>, String)> {
    let built = toolchain::build(&repo().join("benches/guests"), toolchain::Symbols::Strip)?;
    let guest = built
        .iter()
        .find(|g| g.name == "bench_objects")
        .context("benches/guests has no bench-objects")?;
    Ok((
        std::fs::read(&guest.wasm)?,
        std::fs::read_to_string(guest.package_dir.join("verge.toml"))?,
    ))
}

/// The time of `iterations` runs of `call(n)`, less the time of `call(0)`
/// before each: what the `n` operations inside the RPC took, without the
/// RPC around them.
pub async fn net_of_rpc<F: Future<Output = ()>>(
    iterations: u64,
    n: u32,
    call: impl Fn(u32) -> F,
) -> std::time::Duration {
    let mut spent = std::time::Duration::ZERO;
    for _ in 0..iterations {
        let started = std::time::Instant::now();
        call(0).await;
        let overhead = started.elapsed();
        let started = std::time::Instant::now();
        call(n).await;
        spent += started.elapsed().saturating_sub(overhead);
    }
    spent
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
