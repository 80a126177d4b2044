//! Building the running parts from the configuration: the store, the SMTP transport, the
//! engine settings and the `Outbox` facade that ties them together.

use std::sync::Arc;

use anyhow::Context;
use outbox_queue::engine::{EngineConfig, SmtpTransport, SmtpTransportConfig};
use outbox_queue::{Outbox, Store, StoreOptions};
use outbox_smtp::{ClientConfig, ServerSpec, Timeouts, TlsConfig};

use crate::config::Config;

/// Opens (and migrates) the configured store with the configured size limit.
pub async fn store(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    let options = StoreOptions {
        max_message_size: config.delivery.max_message_size.0,
    };
    Ok(outbox_queue::open_store_with(&config.database, options).await?)
}

/// The SMTP client settings: EHLO name, timeouts, extra trust anchors.
pub fn client_config(config: &Config) -> ClientConfig {
    let delivery = &config.delivery;
    let mut client = ClientConfig::new(delivery.helo_name.clone()).with_timeouts(
        Timeouts::from_config(delivery.connect_timeout.0, delivery.command_timeout.0),
    );
    if let Some(ca_file) = &config.tls.ca_file {
        client = client.with_tls(TlsConfig::with_ca_file(ca_file));
    }
    client
}

/// The configured relay, parsed.
pub fn relay(config: &Config) -> anyhow::Result<Option<ServerSpec>> {
    config
        .delivery
        .relay
        .as_deref()
        .map(|text| {
            ServerSpec::parse(text)
                .with_context(|| format!("configuration: delivery.relay {text:?}"))
        })
        .transpose()
}

/// The transport the engine and `send --now` deliver through.
pub fn transport(config: &Config) -> anyhow::Result<Arc<SmtpTransport>> {
    let transport = SmtpTransport::new(SmtpTransportConfig {
        client: client_config(config),
        relay: relay(config)?,
        mx_port: config.delivery.mx_port,
        resolver: None,
        nameservers: config.dns.nameservers.clone(),
    })?;
    Ok(Arc::new(transport))
}

/// The engine settings from `[delivery]`.
pub fn engine_config(config: &Config) -> EngineConfig {
    let delivery = &config.delivery;
    EngineConfig {
        max_connections: delivery.max_connections,
        messages_per_connection: delivery.messages_per_connection,
        max_attempts: delivery.max_attempts,
        retry_backoff: delivery.retry_backoff(),
        lease: delivery.lease.0,
        relay_configured: delivery.relay.is_some(),
        ..EngineConfig::default()
    }
}

/// Store, transport and engine settings together.
pub async fn outbox(config: &Config) -> anyhow::Result<Outbox> {
    let transport = transport(config)?;
    let store = store(config).await?;
    Ok(Outbox::new(store, transport, engine_config(config)))
}

/// Resolves on Ctrl-C or SIGTERM: the signal to finish open transactions and stop.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
