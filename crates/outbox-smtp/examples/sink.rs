//! A benchmark peer: the SMTP server with a sink that keeps only a count.
//!
//! ```text
//! cargo run --release -p outbox-smtp --example sink -- 127.0.0.1:2525
//! ```
//! Prints the address it listens on, then runs until killed (SIGTERM/SIGINT), printing the
//! number of messages received as it exits.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use outbox_smtp::server::{DeliverFuture, MessageSink, ReceivedEnvelope, Server};

/// Counts messages and drops them.
#[derive(Default)]
struct CountingSink {
    messages: AtomicU64,
}

impl MessageSink for CountingSink {
    fn deliver(&self, _envelope: ReceivedEnvelope, _data: Vec<u8>) -> DeliverFuture<'_> {
        self.messages.fetch_add(1, Ordering::Relaxed);
        Box::pin(async { Ok(None) })
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let address = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".to_string());
    let sink = Arc::new(CountingSink::default());
    let server = Server::builder()
        .hostname("sink.test")
        .sink(sink.clone())
        .bind(&address)
        .await?;
    println!("{}", server.local_addr());
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
    server.shutdown().await;
    eprintln!("{} messages", sink.messages.load(Ordering::Relaxed));
    Ok(())
}
