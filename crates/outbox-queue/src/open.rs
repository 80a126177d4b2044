//! Opening an [`Outbox`] from a database URL: the store, the SMTP transport and the engine
//! settings in one builder, for programs that do not assemble them by hand.

use std::future::Future;
use std::sync::Arc;

use outbox_smtp::ServerSpec;

use crate::StoreOptions;
use crate::engine::{EngineConfig, RunMode, SmtpTransport, SmtpTransportConfig};
use crate::outbox::{Outbox, OutboxError};
use crate::store::open_store_with;

/// Builds an [`Outbox`]: [`Outbox::builder`], then the optional settings, then
/// [`OutboxBuilder::open`].
///
/// ```no_run
/// # async fn demo() -> Result<(), outbox_queue::OutboxError> {
/// use outbox_queue::Outbox;
///
/// let outbox = Outbox::builder("postgres://outbox@db.internal/outbox")
///     .relay("smtp://user:pw@relay.example.com:587?starttls=required")
///     .helo_name("app.example.com")
///     .open()
///     .await?;
/// # Ok(()) }
/// ```
#[must_use = "an OutboxBuilder does nothing until open() is called"]
pub struct OutboxBuilder {
    database: String,
    relay: Option<String>,
    helo_name: Option<String>,
    store: StoreOptions,
    engine: EngineConfig,
    transport: SmtpTransportConfig,
}

impl OutboxBuilder {
    pub(crate) fn new(database: String) -> OutboxBuilder {
        OutboxBuilder {
            database,
            relay: None,
            helo_name: None,
            store: StoreOptions::default(),
            engine: EngineConfig::default(),
            transport: SmtpTransportConfig::default(),
        }
    }

    /// Deliver everything through this server (`smtp://user:pw@host:587?starttls=required`,
    /// `smtps://host`, `host:port`, or `program:/usr/sbin/sendmail -i`; see
    /// [`outbox_smtp::ServerSpec::parse`]). Without a relay, each recipient's domain is
    /// delivered to directly, through its MX hosts.
    pub fn relay(mut self, url: impl Into<String>) -> Self {
        self.relay = Some(url.into());
        self
    }

    /// The name this host gives in EHLO: its fully qualified domain name (RFC 5321
    /// §4.1.1.1). The default, `localhost`, is fine for a relay you run; receivers on the
    /// internet expect a real name.
    pub fn helo_name(mut self, name: impl Into<String>) -> Self {
        self.helo_name = Some(name.into());
        self
    }

    /// The store's settings (message size limit, connection pool).
    pub fn store_options(mut self, options: StoreOptions) -> Self {
        self.store = options;
        self
    }

    /// The engine's settings (connections, retries, shaping, DKIM); the relay given with
    /// [`OutboxBuilder::relay`] decides [`EngineConfig::relay_configured`].
    pub fn engine_config(mut self, config: EngineConfig) -> Self {
        self.engine = config;
        self
    }

    /// The transport's settings (timeouts, trust anchors, MX port, DNS, MTA-STS); the relay
    /// and EHLO name given to this builder replace its own.
    pub fn transport_config(mut self, config: SmtpTransportConfig) -> Self {
        self.transport = config;
        self
    }

    /// Opens the store (creating or migrating its schema) and sets up the transport.
    pub async fn open(self) -> Result<Outbox, OutboxError> {
        let OutboxBuilder {
            database,
            relay,
            helo_name,
            store,
            mut engine,
            mut transport,
        } = self;
        if let Some(relay) = relay {
            transport.relay = Some(ServerSpec::parse(&relay)?);
        }
        if let Some(name) = helo_name {
            transport.client.helo_name = name;
        }
        engine.relay_configured = transport.relay.is_some();
        let store = open_store_with(&database, store).await?;
        let transport = Arc::new(SmtpTransport::new(transport)?);
        Ok(Outbox::new(store, transport, engine))
    }
}

impl Outbox {
    /// Opens the queue at `database_url` (`sqlite://outbox.db`, `postgres://...`) with
    /// delivery straight to each recipient's MX hosts; [`Outbox::builder`] for a relay and
    /// other settings.
    pub async fn open(database_url: &str) -> Result<Outbox, OutboxError> {
        Outbox::builder(database_url).open().await
    }

    /// A builder for an Outbox over the queue at `database_url`.
    pub fn builder(database_url: impl Into<String>) -> OutboxBuilder {
        OutboxBuilder::new(database_url.into())
    }

    /// Runs the delivery engine until every recipient whose time has come is final (sent,
    /// or failed for good), then returns; deferred recipients stay queued for their retry.
    pub async fn deliver_until_empty(&self) -> Result<(), OutboxError> {
        self.engine()
            .run(RunMode::UntilEmpty, std::future::pending())
            .await?;
        Ok(())
    }

    /// Runs the delivery engine until `shutdown` resolves, then finishes the open
    /// transactions and gives back what it had claimed — for a program that embeds the
    /// sender (see the `axum_embed` example).
    pub async fn run(&self, shutdown: impl Future<Output = ()> + Send) -> Result<(), OutboxError> {
        self.engine().run(RunMode::Forever, shutdown).await?;
        Ok(())
    }
}
