//! `outbox deliver`: the background sender in the foreground.

use outbox_queue::engine::RunMode;

use crate::cli::Globals;

#[derive(Debug, clap::Args)]
pub struct DeliverArgs {
    /// Return once every recipient of every message whose send_at has come is sent,
    /// failed or removed (waiting through retries as configured).
    #[arg(long)]
    pub until_empty: bool,
}

pub async fn run(globals: &Globals, args: DeliverArgs) -> anyhow::Result<()> {
    let config = globals.config()?;
    // Before anything is claimed: a signal from now on stops delivery, never kills it.
    let shutdown = crate::app::shutdown_signal();
    let outbox = crate::app::outbox(&config).await?;
    let engine = outbox.engine();
    let mode = if args.until_empty {
        RunMode::UntilEmpty
    } else {
        RunMode::Forever
    };
    tracing::info!(database = %outbox_queue::engine::transport::redact(&config.database), relay = config.delivery.relay.is_some(), "delivering");
    engine.run(mode, shutdown).await?;
    let metrics = engine.metrics().snapshot();
    tracing::info!(
        sent = metrics.sent,
        deferred = metrics.deferred,
        failed = metrics.failed,
        "delivery stopped"
    );
    Ok(())
}
