//! D1 `first` on a primary key against the same lookup on a Durable
//! Object's own SQL: an object runs n lookups inside one RPC, on one store
//! or the other; criterion divides the time by the lookups, less the RPC
//! around them (n = 0).
//!
//! The object's SQL is a call into SQLite on the object's thread; a D1
//! query also crosses to tokio's blocking pool and back (SQLite blocks, and
//! a shared database must not hold a runtime thread), and takes a read
//! connection from the database's pool.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use verge_benches::{BenchObject, bench_objects_guest, net_of_rpc};

const LOOKUPS: u32 = 1000;

fn first_on_primary_key(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (wasm, config) = bench_objects_guest().unwrap();
    let object = runtime
        .block_on(BenchObject::start(wasm, &config, "SqlLoop"))
        .unwrap();
    runtime.block_on(object.call("seed", &()));

    let mut group = c.benchmark_group("first on a primary key");
    group.throughput(Throughput::Elements(u64::from(LOOKUPS)));
    for store in ["sql", "d1"] {
        let lookups = |n: u32| object.call("first", &(store, n));
        let name = match store {
            "sql" => "Durable Object SQL",
            _ => "D1",
        };
        group.bench_function(name, |b| {
            b.to_async(&runtime)
                .iter_custom(|iterations| net_of_rpc(iterations, LOOKUPS, lookups))
        });
    }
    group.finish();
}

criterion_group!(benches, first_on_primary_key);
criterion_main!(benches);
