//! Enqueue throughput of a store, end to end through the public API (each commit
//! durable): `cargo run --release -p outbox-queue --example enqueue_rate -- [DB_URL]
//! [MESSAGES] [BATCH] [SINGLES] [CONCURRENCY]`. Prints one line per measurement.
//!
//! - batched: MESSAGES messages of 1 KB, BATCH per `enqueue_batch` transaction;
//! - single: SINGLES `enqueue` calls one after the other, one commit each (the
//!   `email_send` path): the commit latency;
//! - concurrent: SINGLES `enqueue` calls from CONCURRENCY tasks at once (the HTTP API's
//!   and the SMTP listener's pattern), which may share commits;
//! - bulk: one message with MESSAGES recipients, added 10 000 per transaction.

use std::time::Instant;

use outbox_queue::{NewRecipient, enqueue_in_batches, open_store};
use outbox_testkit::bench_message;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let url = args
        .get(1)
        .cloned()
        .unwrap_or_else(|| "sqlite://bench-enqueue.db".into());
    let messages: usize = args.get(2).map_or(Ok(100_000), |s| s.parse())?;
    let batch: usize = args.get(3).map_or(Ok(1_000), |s| s.parse())?;
    let singles: usize = args.get(4).map_or(Ok(2_000), |s| s.parse())?;
    let concurrency: usize = args.get(5).map_or(Ok(32), |s| s.parse())?;
    let store = open_store(&url).await?;

    let start = Instant::now();
    let mut done = 0;
    while done < messages {
        let n = batch.min(messages - done);
        store
            .enqueue_batch((done..done + n).map(bench_message).collect())
            .await?;
        done += n;
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "batched: {messages} messages of 1 KB, {batch} per transaction: {secs:.2} s, {:.0} msg/s",
        messages as f64 / secs
    );

    let start = Instant::now();
    for i in 0..singles {
        store.enqueue(bench_message(i)).await?;
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "single: {singles} durable enqueues, one commit each: {secs:.2} s, {:.0} msg/s",
        singles as f64 / secs
    );

    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..concurrency {
        let store = store.clone();
        let share = singles / concurrency + usize::from(t < singles % concurrency);
        tasks.spawn(async move {
            for i in 0..share {
                store.enqueue(bench_message(t * singles + i)).await?;
            }
            Ok::<_, outbox_queue::StoreError>(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "concurrent: {singles} durable enqueues from {concurrency} tasks: {secs:.2} s, {:.0} msg/s",
        singles as f64 / secs
    );

    let mut bulk = bench_message(0);
    bulk.recipients = (0..messages)
        .map(|i| NewRecipient::new(format!("user{i}@d{}.example", i % 100)))
        .collect();
    let start = Instant::now();
    enqueue_in_batches(&*store, bulk, 10_000).await?;
    let secs = start.elapsed().as_secs_f64();
    println!(
        "bulk: one message, {messages} recipients, 10000 per transaction: {secs:.2} s, {:.0} recipients/s",
        messages as f64 / secs
    );
    Ok(())
}
