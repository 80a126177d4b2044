//! Building the running parts from the configuration: the store, the SMTP transport, the
//! engine settings and the `Outbox` facade that ties them together.

use std::sync::Arc;

use anyhow::Context;
use outbox_queue::engine::{EngineConfig, SmtpTransport, SmtpTransportConfig};
use outbox_queue::{Outbox, Store, StoreOptions};
use outbox_smtp::{ClientConfig, ServerSpec, TlsConfig};

use crate::config::Config;

/// Opens (and migrates) the configured store with the configured size limit.
pub async fn store(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    let mut options = StoreOptions::default();
    options.max_message_size = config.delivery.max_message_size.0;
    Ok(outbox_queue::open_store_with(&config.database, options).await?)
}

/// The SMTP client settings: EHLO name, timeouts, extra trust anchors.
pub fn client_config(config: &Config) -> ClientConfig {
    let delivery = &config.delivery;
    let mut client =
        ClientConfig::new(delivery.helo_name.clone()).with_timeouts(delivery.timeouts());
    if let Some(ca_file) = &config.tls.ca_file {
        client = client.with_tls(TlsConfig::with_ca_file(ca_file));
    }
    client
}

/// The configured relay, parsed. Shown in errors with its password as `***`.
pub fn relay(config: &Config) -> anyhow::Result<Option<ServerSpec>> {
    config
        .delivery
        .relay
        .as_deref()
        .map(|text| {
            ServerSpec::parse(text).with_context(|| {
                format!(
                    "configuration: delivery.relay {:?}",
                    outbox_smtp::redact(text)
                )
            })
        })
        .transpose()
}

/// Loads `[tls] ca_file` once, before anything is delivered: a missing or unreadable file
/// would otherwise surface per recipient, at each connection, and burn their attempts.
pub fn check_ca_file(config: &Config) -> anyhow::Result<()> {
    if let Some(ca_file) = &config.tls.ca_file {
        TlsConfig::with_ca_file(ca_file)
            .client_config()
            .context("configuration: tls.ca_file")?;
    }
    Ok(())
}

/// The transport the engine and `send` deliver through; checks the CA file first.
pub fn transport(config: &Config) -> anyhow::Result<Arc<SmtpTransport>> {
    check_ca_file(config)?;
    let mut settings = SmtpTransportConfig::default();
    settings.client = client_config(config);
    settings.relay = relay(config)?;
    settings.mx_port = config.delivery.mx_port;
    settings.nameservers = config.dns.nameservers.clone();
    settings.mta_sts = config.mta_sts.settings();
    let transport = SmtpTransport::new(settings)?;
    Ok(Arc::new(transport))
}

/// The engine settings from `[delivery]`, `[[shaping]]` and `[[dkim]]` (whose key files are
/// read here: a missing or bad one stops `serve`, `deliver` and `send` before they start).
pub fn engine_config(config: &Config) -> anyhow::Result<EngineConfig> {
    let delivery = &config.delivery;
    let mut engine = EngineConfig::default();
    engine.max_connections = delivery.max_connections;
    engine.messages_per_connection = delivery.messages_per_connection;
    engine.max_message_rate = delivery.max_message_rate.map(|rate| rate.0);
    engine.max_recipients_per_transaction = delivery.max_recipients_per_transaction;
    engine.shaping = crate::config::shaping::rules(&config.shaping)?;
    engine.max_attempts = delivery.max_attempts;
    engine.retry_backoff = delivery.retry_backoff();
    engine.lease = delivery.lease.0;
    engine.relay_configured = delivery.relay.is_some();
    engine.allow_program_relay = delivery.allow_program_relay;
    engine.dkim = Arc::new(crate::config::dkim::signers(&config.dkim)?);
    engine.unsubscribe = config.unsubscribe.links()?;
    engine.verp = config.bounces.verp();
    engine.webhooks = Some(webhook_settings(config)?);
    Ok(engine)
}

/// The webhook sender's settings: `[[webhooks]]`, `[events]`, and the trust anchors of
/// `[tls] ca_file` (plus the web PKI roots) for `https` endpoints.
pub fn webhook_settings(
    config: &Config,
) -> anyhow::Result<outbox_queue::webhooks::WebhookSettings> {
    let tls = match &config.tls.ca_file {
        Some(ca_file) => TlsConfig::with_ca_file(ca_file),
        None => TlsConfig::default(),
    }
    .client_config()
    .context("configuration: tls.ca_file")?;
    crate::config::webhooks::settings(&config.webhooks, &config.events, tls)
}

/// Store, transport and engine settings together.
pub async fn outbox(config: &Config) -> anyhow::Result<Outbox> {
    let transport = transport(config)?;
    let store = store(config).await?;
    Ok(Outbox::new(store, transport, engine_config(config)?))
}

/// Resolves on the first Ctrl-C or SIGTERM: the signal to stop claiming, cancel connections
/// still being set up, and let transactions past their start finish. From then on a second
/// signal ends the process at once (exit status 130): whatever it held stays claimed only
/// until its heartbeat expires (or a restarted outbox on this machine resumes it at once) —
/// never lost, never marked sent.
///
/// The handlers are installed when this is called, not when the future is first polled: a
/// signal that arrives while the engine is still claiming must not kill the process.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    let signals = Signals::new();
    async move {
        let mut signals = match signals {
            Ok(signals) => signals,
            Err(err) => {
                tracing::warn!(error = %err, "cannot listen for signals; stop with SIGKILL");
                return std::future::pending().await;
            }
        };
        signals.next().await;
        tokio::spawn(async move {
            signals.next().await;
            eprintln!(
                "outbox: second signal: exiting now; unfinished recipients stay queued and are resumed when this worker's heartbeat expires"
            );
            std::process::exit(130);
        });
    }
}

/// SIGINT and SIGTERM, both registered up front so that neither is missed between the
/// first and the second.
struct Signals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> std::io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Signals {
                interrupt: signal(SignalKind::interrupt())?,
                terminate: signal(SignalKind::terminate())?,
            })
        }
        #[cfg(not(unix))]
        Ok(Signals {})
    }

    async fn next(&mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    }
}
