//! An in-process SMTP relay for engine tests (fault injection, what it received), and
//! the engine's SMTP transport pointed at a relay.

use std::sync::Arc;
use std::time::Duration;

use outbox_queue::Store;
use outbox_queue::engine::{
    Engine, EngineConfig, RunMode, SmtpTransport, SmtpTransportConfig, Transport,
};
use outbox_smtp::server::{Fault, MemorySink, Server, ServerBuilder};
use outbox_smtp::{ClientConfig, ServerSpec};

/// An in-process SMTP server recording what it receives.
pub struct Peer {
    pub server: Server,
    pub sink: Arc<MemorySink>,
}

impl Peer {
    /// A server on a free loopback port with these faults.
    pub async fn start(faults: Vec<Fault>) -> Peer {
        Peer::start_on("127.0.0.1:0", Server::builder(), faults).await
    }

    /// A server built by `builder` at `address` (`127.0.0.3:PORT`: several MX hosts of
    /// one test share a port on different loopback addresses) with these faults.
    pub async fn start_on(address: &str, builder: ServerBuilder, faults: Vec<Fault>) -> Peer {
        Peer::try_start_on(address, builder, faults)
            .await
            .expect("bind test server")
    }

    /// [`Peer::start_on`], or `None` when the address cannot be bound (a port taken).
    pub async fn try_start_on(
        address: &str,
        builder: ServerBuilder,
        faults: Vec<Fault>,
    ) -> Option<Peer> {
        let sink = Arc::new(MemorySink::new());
        let mut builder = builder.sink(sink.clone());
        for fault in faults {
            builder = builder.fault(fault);
        }
        let server = builder.bind(address).await.ok()?;
        Some(Peer { server, sink })
    }

    /// Its address as a relay spec.
    pub fn spec(&self) -> String {
        self.server.local_addr().to_string()
    }

    /// The engine's transport with this server as the configured relay.
    pub fn transport(&self) -> Arc<dyn Transport> {
        relay_transport(&self.spec())
    }

    /// How many messages it has taken.
    pub fn received(&self) -> usize {
        self.sink.messages().len()
    }

    /// The subjects of the messages it has taken, in order.
    pub fn subjects(&self) -> Vec<String> {
        self.sink
            .messages()
            .iter()
            .map(|m| {
                let text = String::from_utf8_lossy(&m.data);
                text.lines()
                    .find_map(|l| l.strip_prefix("Subject: "))
                    .unwrap_or_default()
                    .to_string()
            })
            .collect()
    }
}

/// The engine's SMTP transport with `relay` (a server spec) as the configured relay.
pub fn relay_transport(relay: &str) -> Arc<dyn Transport> {
    let mut settings = SmtpTransportConfig::default();
    settings.client = ClientConfig::new("outbox.test");
    settings.relay = Some(ServerSpec::parse(relay).expect("relay spec"));
    Arc::new(SmtpTransport::new(settings).expect("transport"))
}

/// Runs an engine on `store` through `transport` until nothing is left to do, bounded
/// (60 s) so a bug fails the test instead of hanging it; a store error fails it too.
pub async fn drain(store: &Arc<dyn Store>, transport: Arc<dyn Transport>, config: EngineConfig) {
    let engine = Engine::new(store.clone(), transport, config);
    tokio::time::timeout(
        Duration::from_secs(60),
        engine.run(RunMode::UntilEmpty, std::future::pending()),
    )
    .await
    .expect("engine finished in time")
    .expect("engine ran without store errors");
}
