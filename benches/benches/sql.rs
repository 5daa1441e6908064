//! One guest → SQLite round trip: a Durable Object runs `SELECT ?` in a
//! loop inside one RPC; criterion divides the time by the statements.

use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use verge_benches::repo;
use verge_host::objects::{CallPath, Event, ObjectKey};
use verge_host::platform::{Platform, PlatformOptions};

const STATEMENTS: u32 = 1000;

fn sql_round_trip(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let built = verge_host::toolchain::build(
        &repo().join("benches/guests"),
        verge_host::toolchain::Symbols::Strip,
    )
    .unwrap();
    let guest = built.iter().find(|g| g.name == "bench_objects").unwrap();
    let wasm = std::fs::read(&guest.wasm).unwrap();
    let config = std::fs::read_to_string(guest.package_dir.join("verge.toml")).unwrap();
    let data = tempfile::tempdir().unwrap();
    let (platform, key) = runtime.block_on(async {
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
        let namespace = objects.namespace("bench-objects", "SqlLoop").unwrap();
        let key = ObjectKey {
            id: objects.id_from_name(&namespace, "bench"),
            namespace: namespace.id,
        };
        (platform, key)
    });
    let call = |n: u32| {
        let (objects, key) = (platform.objects().clone(), key.clone());
        async move {
            let event = Event::Rpc {
                method: "select".into(),
                args: serde_json::to_vec(&(n,)).unwrap(),
            };
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
    };

    let mut group = c.benchmark_group("objects");
    group.throughput(Throughput::Elements(u64::from(STATEMENTS)));
    group.bench_function("guest→sql round trip", |b| {
        b.to_async(&runtime).iter_custom(|iterations| async move {
            let mut spent = Duration::ZERO;
            for _ in 0..iterations {
                // Subtract the RPC around the loop.
                let started = Instant::now();
                call(0).await;
                let overhead = started.elapsed();
                let started = Instant::now();
                call(STATEMENTS).await;
                spent += started.elapsed().saturating_sub(overhead);
            }
            spent
        })
    });
    group.finish();
}

criterion_group!(benches, sql_round_trip);
criterion_main!(benches);
