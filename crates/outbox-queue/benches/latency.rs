//! Latency from enqueue to acceptance by the sink, with the engine idle: one message at a
//! time into a SQLite queue, an engine running in the same process (woken by the enqueue),
//! a relay that is Outbox's own SMTP server on loopback. Prints p50, p90, p99 and max.
//!
//!     cargo bench -p outbox-queue --bench latency

use std::sync::Arc;
use std::time::{Duration, Instant};

use outbox_queue::engine::{Engine, EngineConfig, RunMode, SmtpTransport, SmtpTransportConfig};
use outbox_queue::{NewMessage, NewRecipient, SqliteStore, Store, StoreOptions};
use outbox_smtp::server::Server;
use outbox_smtp::{ClientConfig, ServerSpec};

const SAMPLES: usize = 300;

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(
        SqliteStore::open(&dir.path().join("latency.db"), StoreOptions::default())
            .await
            .unwrap(),
    );
    let server = Server::builder().bind("127.0.0.1:0").await.unwrap();
    let sink = server.memory_sink().unwrap();
    let mut settings = SmtpTransportConfig::default();
    settings.client = ClientConfig::new("bench.example");
    settings.relay = Some(ServerSpec::parse(&server.local_addr().to_string()).unwrap());
    let transport = Arc::new(SmtpTransport::new(settings).unwrap());
    let mut config = EngineConfig::default();
    config.relay_configured = true;
    let engine = Engine::new(store.clone(), transport, config);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(async move {
        engine
            .run(RunMode::Forever, async {
                let _ = stopped.await;
            })
            .await
    });

    let mut samples = Vec::with_capacity(SAMPLES);
    for i in 0..SAMPLES {
        // Let the engine go idle between messages.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let mut message = NewMessage::default();
        message.data = format!("Subject: m{i}\r\n\r\nhello\r\n").into_bytes();
        message.envelope_from = "bench@example.com".into();
        message.recipients = vec![NewRecipient::new("sink@example.net")];
        message.subject = format!("m{i}");
        let started = Instant::now();
        store.enqueue(message).await.unwrap();
        tokio::time::timeout(Duration::from_secs(10), sink.wait_for(i + 1))
            .await
            .expect("delivered");
        samples.push(started.elapsed());
    }
    let _ = stop.send(());
    running.await.unwrap().unwrap();
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize];
    println!(
        "RESULT enqueue -> accepted by the sink, {SAMPLES} messages, engine idle: p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        at(0.5).as_secs_f64() * 1e3,
        at(0.9).as_secs_f64() * 1e3,
        at(0.99).as_secs_f64() * 1e3,
        samples.last().unwrap().as_secs_f64() * 1e3,
    );
}
