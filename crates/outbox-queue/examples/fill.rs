//! Fills a queue for benchmarks: `fill DATABASE_URL COUNT SIZE_BYTES [DOMAINS]` queues
//! COUNT messages of about SIZE_BYTES each (one recipient each), in batches of 1 000, and
//! prints the rate. Recipients are `sink@example.net`, or with DOMAINS = N, spread over
//! `sink@d0.test` .. `sink@d{N-1}.test` (for direct MX delivery to many domains).

use std::time::Instant;

use outbox_queue::{NewMessage, NewRecipient, StoreOptions, open_store_with};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (url, count, size, domains) = match args.as_slice() {
        [_, url, count, size] => (url, count, size, None),
        [_, url, count, size, domains] => (url, count, size, Some(domains.parse::<usize>()?)),
        _ => return Err("usage: fill DATABASE_URL COUNT SIZE_BYTES [DOMAINS]".into()),
    };
    let count: usize = count.parse()?;
    let size: usize = size.parse()?;
    let recipient = |i: usize| match domains {
        Some(n) if n > 0 => format!("sink@d{}.test", i % n),
        _ => "sink@example.net".to_string(),
    };
    let mut options = StoreOptions::default();
    options.max_message_size = u64::MAX;
    let store = open_store_with(url, options).await?;
    let body_line = "x".repeat(76);
    let started = Instant::now();
    let mut queued = 0;
    while queued < count {
        let batch: Vec<NewMessage> = (queued..count.min(queued + 1000))
            .map(|i| {
                let mut data = format!(
                    "From: bench@example.com\r\nTo: {}\r\nSubject: m{i}\r\n\
                     Message-ID: <m{i}@bench.example>\r\n\r\n",
                    recipient(i)
                )
                .into_bytes();
                while data.len() < size {
                    data.extend_from_slice(body_line.as_bytes());
                    data.extend_from_slice(b"\r\n");
                }
                {
                    let mut new_message = NewMessage::default();
                    new_message.data = data;
                    new_message.envelope_from = "bench@example.com".into();
                    new_message.recipients = vec![NewRecipient::new(recipient(i))];
                    new_message.subject = format!("m{i}");
                    new_message
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
