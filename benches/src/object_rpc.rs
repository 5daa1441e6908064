//! The micro-benches' way into a Durable Object: a host in this process
//! with `benches/guests/bench-objects` deployed, and RPC calls to its
//! objects, with no HTTP in between.

use std::sync::Arc;
use std::time::{Duration, Instant};

use verge_host::objects::{CallPath, Event, ObjectKey};
use verge_host::platform::{Platform, PlatformOptions};

use crate::repo;

/// A host serving the bench object, and the object's key.
pub struct ObjectRpc {
    pub platform: Arc<Platform>,
    key: ObjectKey,
    /// The host's data; removed when the bench ends.
    _data: tempfile::TempDir,
}

impl ObjectRpc {
    /// Builds the bench guests, opens a host on a fresh data directory,
    /// deploys `bench-objects` and aims at its object of `class` named
    /// "bench".
    pub fn start(runtime: &tokio::runtime::Runtime, class: &str) -> Self {
        let built = verge_host::toolchain::build(
            &repo().join("benches/guests"),
            verge_host::toolchain::Symbols::Strip,
        )
        .unwrap();
        let guest = built.iter().find(|g| g.name == "bench_objects").unwrap();
        let wasm = std::fs::read(&guest.wasm).unwrap();
        let config = std::fs::read_to_string(guest.package_dir.join("verge.toml")).unwrap();
        let data = tempfile::tempdir().unwrap();
        runtime.block_on(async {
            let platform = Platform::open(PlatformOptions {
                data_dir: data.path().to_path_buf(),
                engine: Default::default(),
                objects: Default::default(),
                dev: false,
            })
            .await
            .unwrap();
            platform
                .deploy("bench-objects", wasm, &config, true)
                .await
                .unwrap();
            let objects = platform.objects();
            let namespace = objects.namespace("bench-objects", class).unwrap();
            let key = ObjectKey {
                id: objects.id_from_name(&namespace, "bench"),
                namespace: namespace.id,
            };
            Self {
                platform,
                key,
                _data: data,
            }
        })
    }

    /// Calls `method` on the object with `args` (a JSON array) and waits
    /// for its answer.
    pub fn call<A: serde::Serialize>(
        &self,
        method: &str,
        args: &A,
    ) -> impl Future<Output = ()> + use<A> {
        let (objects, key) = (self.platform.objects().clone(), self.key.clone());
        let event = Event::Rpc {
            method: method.into(),
            args: serde_json::to_vec(args).unwrap(),
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
                .unwrap();
        }
    }
}

/// The time of `iterations` runs of `call(n)`, less the time of `call(0)`
/// before each: what the `n` operations inside the RPC took, without the
/// RPC around them.
pub async fn net_of_rpc<F: Future<Output = ()>>(
    iterations: u64,
    n: u32,
    call: impl Fn(u32) -> F,
) -> Duration {
    let mut spent = Duration::ZERO;
    for _ in 0..iterations {
        let started = Instant::now();
        call(0).await;
        let overhead = started.elapsed();
        let started = Instant::now();
        call(n).await;
        spent += started.elapsed().saturating_sub(overhead);
    }
    spent
}
