//! KV namespace get and put against the same operation on a Durable
//! Object's own storage, from guest code: a loop inside one RPC, the RPC's
//! own cost subtracted, criterion dividing by the operations.
//!
//! The puts differ in what they promise: a namespace put is durable when it
//! returns (one fsync each), while an object's puts commit together with
//! the event that made them (one fsync for the whole loop).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use verge_benches::{BenchObject, bench_objects_guest, net_of_rpc};

/// Operations per RPC, by kind: puts that fsync each are slower.
fn operations(op: &str) -> u32 {
    if op == "namespace-put" { 50 } else { 500 }
}

fn key_value(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (wasm, config) = bench_objects_guest().unwrap();
    let object = runtime
        .block_on(BenchObject::start(wasm, &config, "StorageLoop"))
        .unwrap();
    let mut group = c.benchmark_group("key-value");
    for size in [16_u32, 1024] {
        for op in ["namespace-get", "object-get", "namespace-put", "object-put"] {
            let n = operations(op);
            let call = |n: u32| object.call("run", &(op, n, size));
            group.throughput(Throughput::Elements(u64::from(n)));
            group.bench_function(format!("{op} {size} B"), |b| {
                b.to_async(&runtime)
                    .iter_custom(|iterations| net_of_rpc(iterations, n, call))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, key_value);
criterion_main!(benches);
