//! Fills a queue for benchmarks: `fill DATABASE_URL COUNT SIZE_BYTES` queues COUNT
//! messages of about SIZE_BYTES each (one recipient each), in batches of 1 000, and prints
//! the rate.

use std::time::Instant;

use outbox_queue::{NewMessage, NewRecipient, StoreOptions, open_store_with};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, url, count, size] = args.as_slice() else {
        return Err("usage: fill DATABASE_URL COUNT SIZE_BYTES".into());
    };
    let count: usize = count.parse()?;
    let size: usize = size.parse()?;
    let store = open_store_with(
        url,
        StoreOptions {
            max_message_size: u64::MAX,
        },
    )
    .await?;
    let body_line = "x".repeat(76);
    let started = Instant::now();
    let mut queued = 0;
    while queued < count {
        let batch: Vec<NewMessage> = (queued..count.min(queued + 1000))
            .map(|i| {
                let mut data = format!(
                    "From: bench@example.com\r\nTo: sink@example.net\r\nSubject: m{i}\r\n\
                     Message-ID: <m{i}@bench.example>\r\n\r\n"
                )
                .into_bytes();
                while data.len() < size {
                    data.extend_from_slice(body_line.as_bytes());
                    data.extend_from_slice(b"\r\n");
                }
                NewMessage {
                    data,
                    envelope_from: "bench@example.com".into(),
                    recipients: vec![NewRecipient::new("sink@example.net")],
                    subject: format!("m{i}"),
                    ..NewMessage::default()
                }
            })
            .collect();
        queued += batch.len();
        store.enqueue_batch(batch).await?;
    }
    let seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "queued {count} messages of {size} bytes in {seconds:.2}s ({:.0} msg/s)",
        count as f64 / seconds
    );
    Ok(())
}
