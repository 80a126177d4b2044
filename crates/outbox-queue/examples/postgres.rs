//! The same as `sqlite_queue_and_deliver`, with the queue in PostgreSQL: several processes
//! (on several hosts) may share it, each running an engine; leases keep them from sending
//! anything twice.
//!
//! ```text
//! cargo run -p outbox-queue --example postgres -- postgres://outbox@127.0.0.1/outbox smtp://127.0.0.1:2525?starttls=off
//! ```
//!
//! The database must exist (Outbox creates its tables). Without a relay URL the relay is an
//! in-process SMTP server that keeps what it receives in memory.

use outbox_queue::{EmailSpec, Outbox};
use outbox_smtp::server::Server;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let Some(database) = args.next() else {
        return Err("usage: postgres DATABASE_URL [RELAY_URL]".into());
    };
    let (relay, stand_in) = match args.next() {
        Some(url) => (url, None),
        None => {
            let server = Server::builder().bind("127.0.0.1:0").await?;
            (
                format!("smtp://{}?starttls=off", server.local_addr()),
                Some(server),
            )
        }
    };

    let outbox = Outbox::builder(&database).relay(&relay).open().await?;
    let messages: Vec<EmailSpec> = ["ann@example.net", "bob@example.net"]
        .into_iter()
        .map(|to| {
            EmailSpec::builder()
                .from("app@example.com")
                .to(to)
                .subject("Your invoice")
                .text("It is attached to nothing: this is an example.\n")
                .into_spec()
        })
        .collect();
    // One transaction for both: they are queued together or not at all.
    let queued = outbox.batch(&messages).await?;
    outbox.deliver_until_empty().await?;
    for enqueued in queued {
        println!(
            "{}: {}",
            enqueued.id,
            outbox.status(&enqueued.id).await?.as_str()
        );
    }
    if let Some(server) = stand_in {
        let received = server.memory_sink().map_or(0, |sink| sink.messages().len());
        println!("the relay received {received} messages");
        server.shutdown().await;
    }
    Ok(())
}
