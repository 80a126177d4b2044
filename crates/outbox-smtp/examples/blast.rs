//! Sends N messages of a given size over C reused, pipelined connections as fast as the server
//! takes them, and prints the rate. The Rust half of `bench/smtp-client.sh`.
//!
//! ```text
//! cargo run --release -p outbox-smtp --example blast -- SERVER [MESSAGES] [CONNECTIONS] [SIZE]
//! ```

use std::time::Instant;

use outbox_smtp::{ClientConfig, ServerSpec, SmtpClient};

fn message(size: usize) -> Vec<u8> {
    let mut message = b"From: a@x.test\r\nTo: b@y.test\r\nSubject: blast\r\n\r\n".to_vec();
    let line = b"The quick brown fox jumps over the lazy dog, again and again.\r\n";
    while message.len() < size {
        message.extend_from_slice(line);
    }
    message.truncate(size);
    message
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(server) = args.first() else {
        return Err("usage: blast SERVER [MESSAGES] [CONNECTIONS] [SIZE]".into());
    };
    let count: usize = args.get(1).map_or(Ok(20_000), |a| a.parse())?;
    let connections: usize = args.get(2).map_or(Ok(5), |a| a.parse())?;
    let size: usize = args.get(3).map_or(Ok(1024), |a| a.parse())?;
    let ServerSpec::Smtp(spec) = ServerSpec::parse(server)? else {
        return Err("blast needs an SMTP server spec".into());
    };
    let config = ClientConfig::new("blast.outbox.test");
    let body = std::sync::Arc::new(message(size));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..connections {
        let share = count / connections + usize::from(worker < count % connections);
        let (spec, config, body) = (spec.clone(), config.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            let mut client = SmtpClient::connect_with(&spec, &config).await?;
            for _ in 0..share {
                let delivery = client.send_to("a@x.test", &["b@y.test"], &body).await?;
                if !delivery.all_sent() {
                    return Err(format!("not accepted: {:?}", delivery.data).into());
                }
            }
            client.quit().await?;
            Ok::<usize, Box<dyn std::error::Error + Send + Sync>>(share)
        }));
    }
    let mut sent = 0;
    for task in tasks {
        sent += task.await?.map_err(|e| e.to_string())?;
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "outbox-smtp: {sent} messages of {size} bytes over {connections} connections in {seconds:.3}s = {:.0} msg/s",
        sent as f64 / seconds
    );
    Ok(())
}
