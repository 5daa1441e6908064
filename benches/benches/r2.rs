//! R2 against a Durable Object's own storage: one `put` and one `get` of
//! 1 MiB, from guest code, in an R2 bucket, in the object's key-value
//! storage and as a BLOB in its SQL database. Each iteration is one RPC to
//! an active object (about 16 µs of it is the RPC itself, see
//! `benches/sql.rs`); its writes are on disk (fsynced) before it returns,
//! whichever the store.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use verge_benches::{BenchObject, bench_objects_guest};

const BYTES: u32 = 1 << 20;

fn blobs(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (wasm, config) = bench_objects_guest().unwrap();
    let object = runtime
        .block_on(BenchObject::start(wasm, &config, "BlobStore"))
        .unwrap();

    let mut group = c.benchmark_group("1 MiB");
    group.throughput(Throughput::Bytes(u64::from(BYTES)));
    for (place, name) in [
        ("r2", "R2"),
        ("kv", "object KV"),
        ("sql", "object SQL BLOB"),
    ] {
        runtime.block_on(object.call("put", &(place, BYTES)));
        group.bench_function(format!("{name} put"), |b| {
            b.to_async(&runtime)
                .iter(|| object.call("put", &(place, BYTES)))
        });
        group.bench_function(format!("{name} get"), |b| {
            b.to_async(&runtime).iter(|| object.call("get", &(place,)))
        });
    }
    group.finish();
}

criterion_group!(benches, blobs);
criterion_main!(benches);
