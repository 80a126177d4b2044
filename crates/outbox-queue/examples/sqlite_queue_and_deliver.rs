//! Queue a message in SQLite and deliver it through a relay, with the `Outbox` facade.
//!
//! ```text
//! cargo run -p outbox-queue --example sqlite_queue_and_deliver -- smtp://127.0.0.1:2525?starttls=off
//! ```
//!
//! Without an argument the relay is an in-process SMTP server (outbox-smtp's test server,
//! keeping what it receives in memory), so the example runs anywhere and prints what arrived.

use outbox_queue::{EmailSpec, Outbox};
use outbox_smtp::server::Server;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (relay, stand_in) = match std::env::args().nth(1) {
        Some(url) => (url, None),
        None => {
            let server = Server::builder().bind("127.0.0.1:0").await?;
            (
                format!("smtp://{}?starttls=off", server.local_addr()),
                Some(server),
            )
        }
    };
    let dir = tempfile::tempdir()?;
    let database = format!("sqlite://{}", dir.path().join("outbox.db").display());

    let outbox = Outbox::builder(&database).relay(&relay).open().await?;
    let message = EmailSpec::builder()
        .from("app@example.com")
        .to("ann@example.net")
        .subject("Welcome")
        .text("Hello Ann,\nwelcome aboard.\n")
        .into_spec();
    let id = outbox.send(&message).await?.id;
    println!("queued {id} in {database}");

    outbox.deliver_until_empty().await?;
    println!("{id}: {}", outbox.status(&id).await?.as_str());
    for recipient in outbox.detail(&id).await?.recipients {
        println!("  {}: {}", recipient.address, recipient.state.as_str());
    }
    if let Some(server) = stand_in {
        for received in server
            .memory_sink()
            .into_iter()
            .flat_map(|sink| sink.messages())
        {
            println!(
                "the relay received {} bytes from {} for {:?}",
                received.data.len(),
                received.envelope.mail_from,
                received.envelope.rcpt_to
            );
        }
        server.shutdown().await;
    }
    Ok(())
}
