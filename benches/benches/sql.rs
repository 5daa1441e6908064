//! One guest → SQLite round trip: a Durable Object runs `SELECT ?` in a
//! loop inside one RPC; criterion divides the time by the statements.

use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use verge_benches::BenchObject;

const STATEMENTS: u32 = 1000;

fn sql_round_trip(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let object = runtime
        .block_on(BenchObject::start("SqlLoop", "bench"))
        .unwrap();
    let object = &object;

    let mut group = c.benchmark_group("objects");
    group.throughput(Throughput::Elements(u64::from(STATEMENTS)));
    group.bench_function("guest→sql round trip", |b| {
        b.to_async(&runtime).iter_custom(|iterations| async move {
            let mut spent = Duration::ZERO;
            for _ in 0..iterations {
                // Subtract the RPC around the loop.
                let started = Instant::now();
                object.rpc("select", &(0,)).await;
                let overhead = started.elapsed();
                let started = Instant::now();
                object.rpc("select", &(STATEMENTS,)).await;
                spent += started.elapsed().saturating_sub(overhead);
            }
            spent
        })
    });
    group.finish();
}

criterion_group!(benches, sql_round_trip);
criterion_main!(benches);
