//! Recording outcomes with group commit, and keeping this worker's leases alive.
//!
//! Connections hand every outcome to one completer task, which writes whatever has
//! accumulated in one transaction: under load, one commit covers many messages; when idle,
//! each outcome is committed at once. A recipient's lease is held (and renewed) until its
//! outcome is committed, so a crash between the server's 250 and the commit can only
//! cause a resend of what was in flight, never a loss.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::{Outcome, Store, WorkerInfo};

/// The recipient ids this worker holds leases on.
#[derive(Default)]
pub(crate) struct Leases {
    held: Mutex<HashSet<i64>>,
}

impl Leases {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<i64>> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn hold(&self, ids: impl IntoIterator<Item = i64>) {
        self.lock().extend(ids);
    }

    pub fn drop_ids(&self, ids: impl IntoIterator<Item = i64>) {
        let mut held = self.lock();
        for id in ids {
            held.remove(&id);
        }
    }

    pub fn snapshot(&self) -> Vec<i64> {
        self.lock().iter().copied().collect()
    }
}

enum Command {
    Record(Outcome),
    Flush(oneshot::Sender<()>),
}

/// The sending side of the completer.
#[derive(Clone)]
pub(crate) struct Completer {
    tx: mpsc::UnboundedSender<Command>,
}

/// Most outcomes written in one transaction.
const MAX_BATCH: usize = 1024;
/// Tries for one batch before it is given up to the lease mechanism.
const COMMIT_TRIES: u32 = 5;

impl Completer {
    /// Starts the completer task. It ends when every `Completer` clone is dropped.
    pub fn start(
        store: Arc<dyn Store>,
        owner: String,
        leases: Arc<Leases>,
    ) -> (Completer, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(run(store, owner, leases, rx));
        (Completer { tx }, task)
    }

    /// Queues an outcome for the next commit.
    pub fn record(&self, outcome: Outcome) {
        // The task only ends once every sender is gone, so this cannot fail while `self` lives.
        let _ = self.tx.send(Command::Record(outcome));
    }

    /// Waits until every outcome recorded before this call is committed (or given up).
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Command::Flush(done)).is_ok() {
            let _ = wait.await;
        }
    }
}

async fn run(
    store: Arc<dyn Store>,
    owner: String,
    leases: Arc<Leases>,
    mut rx: mpsc::UnboundedReceiver<Command>,
) {
    let mut batch: Vec<Outcome> = Vec::new();
    let mut waiting: Vec<oneshot::Sender<()>> = Vec::new();
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        while let Some(command) = next.take() {
            match command {
                Command::Record(outcome) => batch.push(outcome),
                Command::Flush(done) => waiting.push(done),
            }
            if batch.len() < MAX_BATCH {
                next = rx.try_recv().ok();
            }
        }
        if !batch.is_empty() {
            commit(&*store, &owner, &leases, std::mem::take(&mut batch)).await;
        }
        for done in waiting.drain(..) {
            let _ = done.send(());
        }
    }
}

async fn commit(store: &dyn Store, owner: &str, leases: &Leases, batch: Vec<Outcome>) {
    let ids: Vec<i64> = batch.iter().map(|o| o.recipient_id).collect();
    for attempt in 1..=COMMIT_TRIES {
        match store.complete(owner, batch.clone()).await {
            Ok(_) => {
                leases.drop_ids(ids);
                return;
            }
            Err(err) if attempt < COMMIT_TRIES => {
                tracing::warn!(error = %err, attempt, "recording delivery outcomes failed; retrying");
                tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
            }
            Err(err) => {
                // The leases lapse and the recipients are due again: at worst a resend.
                tracing::error!(error = %err, recipients = ids.len(),
                    "could not record delivery outcomes; they will be retried when their leases expire");
                leases.drop_ids(ids);
                return;
            }
        }
    }
}

/// Keeps this worker alive in the store (a heartbeat every third of the lease) and
/// resumes dead workers' recipients (`Store::recover`) until `stop` fires. (Stopgap
/// until engine v2: the per-row renew is gone from the store.)
pub(crate) async fn renew_leases(
    store: Arc<dyn Store>,
    owner: String,
    leases: Arc<Leases>,
    lease: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let period = lease / 3;
    let worker = WorkerInfo::this_process(owner);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            _ = stop.changed() => return,
        }
        if let Err(err) = store.heartbeat(&worker, lease).await {
            tracing::warn!(error = %err, held = leases.snapshot().len(), "heartbeat failed");
        }
        if let Err(err) = store.recover().await {
            tracing::warn!(error = %err, "recovering dead workers' recipients failed");
        }
    }
}
