//! One guest → SQLite round trip: a Durable Object runs `SELECT ?` in a
//! loop inside one RPC; criterion divides the time by the statements.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use verge_benches::{BenchObject, bench_objects_guest, net_of_rpc};

const STATEMENTS: u32 = 1000;

fn sql_round_trip(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (wasm, config) = bench_objects_guest().unwrap();
    let object = runtime
        .block_on(BenchObject::start(wasm, &config, "SqlLoop"))
        .unwrap();
    let call = |n: u32| object.call("select", &(n,));

    let mut group = c.benchmark_group("objects");
    group.throughput(Throughput::Elements(u64::from(STATEMENTS)));
    group.bench_function("guest→sql round trip", |b| {
        b.to_async(&runtime)
            .iter_custom(|iterations| net_of_rpc(iterations, STATEMENTS, call))
    });
    group.finish();
}

criterion_group!(benches, sql_round_trip);
criterion_main!(benches);
