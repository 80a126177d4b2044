//! Criterion benchmarks of the SQLite store's write path: a batch of 1 000 messages of
//! 1 KB in one transaction, and one durable enqueue (one commit). `bench/enqueue.sh`
//! runs the end-to-end numbers (100 000 messages) and the Postfix comparison.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use outbox_queue::{SqliteStore, Store, StoreOptions};
use outbox_testkit::bench_message;

fn enqueue(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let store = runtime
        .block_on(SqliteStore::open(
            &dir.path().join("bench.db"),
            StoreOptions::default(),
        ))
        .expect("open store");
    let batch: Vec<_> = (0..1_000).map(bench_message).collect();

    let mut group = c.benchmark_group("sqlite_enqueue");
    group.sample_size(20);
    group.throughput(Throughput::Elements(1_000));
    group.bench_function("batch_1000_of_1kb", |b| {
        b.to_async(&runtime).iter(|| async {
            store
                .enqueue_batch(batch.clone())
                .await
                .expect("enqueue batch")
        })
    });
    group.throughput(Throughput::Elements(1));
    group.bench_function("single_durable", |b| {
        b.to_async(&runtime)
            .iter(|| async { store.enqueue(bench_message(0)).await.expect("enqueue") })
    });
    group.finish();
}

criterion_group!(benches, enqueue);
criterion_main!(benches);
