//! The per-request cold start: a fresh store and instance of the `hello`
//! example from its `InstancePre`, alone and with the call.

use criterion::{Criterion, criterion_group, criterion_main};
use verge_benches::{hello_request, hello_worker};
use verge_host::runtime::{HostState, RequestId, invoke, new_store};

fn instantiate(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (_platform, worker, _data) = runtime.block_on(hello_worker()).unwrap();

    c.bench_function("hello/instantiate", |b| {
        b.to_async(&runtime).iter(|| async {
            let mut store = new_store(
                &worker,
                HostState::new(worker.context.clone(), RequestId::random()),
            );
            worker.instantiate(&mut store).await.unwrap();
        })
    });
    c.bench_function("hello/instantiate+call", |b| {
        b.to_async(&runtime).iter(|| async {
            invoke(&worker, hello_request(), RequestId::random(), 0)
                .await
                .result
                .unwrap()
        })
    });
}

criterion_group!(benches, instantiate);
criterion_main!(benches);
