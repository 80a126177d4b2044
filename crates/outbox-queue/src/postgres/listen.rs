//! LISTEN `outbox_enqueued` on a dedicated connection, so an engine wakes when another
//! process queues a message.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::Notify;
use tokio_postgres::{AsyncMessage, NoTls};

/// The channel every enqueue notifies.
pub(crate) const CHANNEL: &str = "outbox_enqueued";

/// Listens forever (the store aborts the task when dropped), reconnecting after a
/// second when the connection fails. Each notification, and each (re)connection, since
/// notifications may have been missed while disconnected, wakes one waiter.
pub(super) async fn listen(config: tokio_postgres::Config, enqueued: Arc<Notify>) {
    loop {
        match config.connect(NoTls).await {
            Ok((client, mut connection)) => {
                let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<()>();
                let wake = Arc::clone(&enqueued);
                let driver = tokio::spawn(async move {
                    let mut messages =
                        futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
                    while let Some(message) = messages.next().await {
                        match message {
                            Ok(AsyncMessage::Notification(_)) => wake.notify_one(),
                            Ok(_) => {}
                            Err(err) => {
                                tracing::warn!(error = %err, "LISTEN connection failed");
                                break;
                            }
                        }
                    }
                    drop(ready_tx);
                });
                match client.batch_execute(&format!("LISTEN {CHANNEL}")).await {
                    Ok(()) => {
                        enqueued.notify_one();
                        // Keep `client` alive until the connection ends.
                        let _ = ready_rx.await;
                    }
                    Err(err) => tracing::warn!(error = %err, "LISTEN {CHANNEL} failed"),
                }
                driver.abort();
            }
            Err(err) => tracing::warn!(error = %err, "cannot connect to LISTEN for new messages"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
