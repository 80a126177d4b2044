//! Recording outcomes with group commit, and never losing one.
//!
//! Connections hand every outcome (and every claim they give back unsent) to one completer
//! task, which writes whatever has accumulated in one transaction: under load, one commit
//! covers many messages; when idle, each outcome is committed at once.
//!
//! An outcome is never dropped. When the store fails, the batch is kept and tried again
//! with a growing pause for as long as it takes — through a restart of the database, or a
//! SQLite file locked by a long `queue purge` — also while the worker shuts down. A batch
//! that fails for a reason other than the database being unavailable is split, so one
//! outcome the store refuses cannot hold the others back; that one is kept and retried on
//! its own, loudly. Until its outcome is stored, a recipient stays leased to this worker
//! (whose heartbeat goes on), so no other worker sends it again meanwhile.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::{Outcome, Store, StoreError};

use super::metrics::EngineMetrics;

enum Command {
    Record(Outcome),
    Release(Vec<i64>),
    Flush(oneshot::Sender<()>),
}

/// The sending side of the completer.
#[derive(Clone)]
pub(crate) struct Completer {
    tx: mpsc::UnboundedSender<Command>,
}

/// Most outcomes written in one transaction.
const MAX_BATCH: usize = 1024;
/// First pause after a failed write; it doubles up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(50);
/// Longest pause between tries of one write.
const MAX_PAUSE: Duration = Duration::from_secs(5);

impl Completer {
    /// Starts the completer task. It ends when every `Completer` clone is dropped and
    /// everything it was given is stored.
    pub fn start(
        store: Arc<dyn Store>,
        owner: String,
        metrics: Arc<EngineMetrics>,
    ) -> (Completer, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let writer = Writer {
            store,
            owner,
            metrics,
        };
        let task = tokio::spawn(run(writer, rx));
        (Completer { tx }, task)
    }

    /// Queues an outcome for the next commit.
    pub fn record(&self, outcome: Outcome) {
        // The task only ends once every sender is gone, so this cannot fail while `self` lives.
        let _ = self.tx.send(Command::Record(outcome));
    }

    /// Gives claimed recipients back without an attempt (due again now), as reliably as
    /// outcomes are recorded.
    pub fn release(&self, ids: Vec<i64>) {
        if !ids.is_empty() {
            let _ = self.tx.send(Command::Release(ids));
        }
    }

    /// Waits until every outcome and release handed over before this call is stored.
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Command::Flush(done)).is_ok() {
            let _ = wait.await;
        }
    }
}

struct Writer {
    store: Arc<dyn Store>,
    owner: String,
    metrics: Arc<EngineMetrics>,
}

impl Writer {
    /// One try at storing `outcomes`.
    async fn complete(&self, outcomes: &[Outcome]) -> Result<(), StoreError> {
        let applied = self.store.complete(&self.owner, outcomes.to_vec()).await?;
        let stale = (outcomes.len() as u64).saturating_sub(applied);
        if stale > 0 {
            self.metrics.stale(stale);
            tracing::warn!(
                stale,
                "outcomes not applied: another worker claimed those recipients since (their attempts are logged)"
            );
        }
        Ok(())
    }

    /// Stores `outcomes`, trying until it succeeds. While the database is unavailable the
    /// whole batch waits; any other error splits it, and an outcome that fails alone is
    /// returned to be retried later, so the rest go through.
    async fn store_outcomes(&self, outcomes: Vec<Outcome>) -> Vec<Outcome> {
        let mut pause = FIRST_PAUSE;
        let mut todo = vec![outcomes];
        let mut refused = Vec::new();
        while let Some(batch) = todo.pop() {
            match self.complete(&batch).await {
                Ok(()) => pause = FIRST_PAUSE,
                Err(err) if err.is_transient() => {
                    self.metrics.store_error();
                    tracing::warn!(error = %err, outcomes = batch.len(),
                        "recording delivery outcomes failed; keeping them and retrying");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(MAX_PAUSE);
                    todo.push(batch);
                }
                Err(err) if batch.len() > 1 => {
                    self.metrics.store_error();
                    tracing::warn!(error = %err, outcomes = batch.len(),
                        "the store refused a batch of outcomes; splitting it");
                    let mut first = batch;
                    let second = first.split_off(first.len() / 2);
                    todo.push(second);
                    todo.push(first);
                }
                Err(err) => {
                    self.metrics.store_error();
                    tracing::error!(error = %err, recipient = batch[0].recipient_id,
                        "the store refused an outcome; keeping it and retrying");
                    refused.extend(batch);
                }
            }
        }
        refused
    }

    /// Gives recipients back, trying until it succeeds.
    async fn release(&self, ids: &[i64]) {
        let mut pause = FIRST_PAUSE;
        loop {
            match self
                .store
                .release(&self.owner, ids, OffsetDateTime::now_utc())
                .await
            {
                Ok(_) => return,
                Err(err) => {
                    self.metrics.store_error();
                    tracing::warn!(error = %err, recipients = ids.len(),
                        "giving claims back failed; retrying");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(MAX_PAUSE);
                }
            }
        }
    }
}

async fn run(writer: Writer, mut rx: mpsc::UnboundedReceiver<Command>) {
    let mut batch: Vec<Outcome> = Vec::new();
    let mut releases: Vec<i64> = Vec::new();
    let mut waiting: Vec<oneshot::Sender<()>> = Vec::new();
    // Outcomes the store refused on their own, retried on a growing pause.
    let mut refused: VecDeque<Outcome> = VecDeque::new();
    let mut retry_at = Instant::now();
    let mut retry_pause = FIRST_PAUSE;
    let mut open = true;
    while open || !refused.is_empty() {
        // Woken by a command, by every sender being gone (`None`), or by the retry timer.
        let received = if refused.is_empty() {
            Some(rx.recv().await)
        } else {
            tokio::select! {
                command = rx.recv(), if open => Some(command),
                () = tokio::time::sleep_until(retry_at) => None,
            }
        };
        let mut next = match received {
            Some(Some(command)) => Some(command),
            Some(None) => {
                open = false;
                None
            }
            None => None,
        };
        while let Some(command) = next.take() {
            match command {
                Command::Record(outcome) => batch.push(outcome),
                Command::Release(ids) => releases.extend(ids),
                Command::Flush(done) => waiting.push(done),
            }
            if batch.len() < MAX_BATCH {
                next = rx.try_recv().ok();
            }
        }
        if !releases.is_empty() {
            writer.release(&std::mem::take(&mut releases)).await;
        }
        if Instant::now() >= retry_at && !refused.is_empty() {
            let again = writer.store_outcomes(refused.drain(..).collect()).await;
            if again.is_empty() {
                retry_pause = FIRST_PAUSE;
            } else {
                retry_pause = (retry_pause * 2).min(MAX_PAUSE * 12);
                retry_at = Instant::now() + retry_pause;
                refused.extend(again);
            }
        }
        if !batch.is_empty() {
            let again = writer.store_outcomes(std::mem::take(&mut batch)).await;
            if !again.is_empty() && refused.is_empty() {
                retry_at = Instant::now() + retry_pause;
            }
            refused.extend(again);
        }
        // A flush waits for what can be stored; refused outcomes stay with the task,
        // which keeps trying them until the process ends.
        for done in waiting.drain(..) {
            let _ = done.send(());
        }
    }
}
