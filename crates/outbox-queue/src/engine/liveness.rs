//! This worker's heartbeat, and the resumption of dead workers' recipients.
//!
//! A claimed recipient belongs to its worker for as long as that worker's heartbeat is
//! fresh, however long its transaction runs: a slow server is never taken from a live
//! worker. The heartbeat goes on until the engine has stored its last outcome — through a
//! graceful shutdown too — and the worker's row is retired only then.
//!
//! Every tick also asks the store to resume dead workers' recipients
//! ([`Store::recover`]): one whose heartbeat is older than its lease (a crashed machine:
//! at most one lease plus one tick), or one on this machine whose process is gone (a
//! `deliver` killed with -9 and restarted: at once, on the first tick).
//!
//! Every tick also reads the destinations suspended in the store ([`Store::suspensions`])
//! and installs them into this worker's suspensions: a destination that asked another
//! worker sharing the database to slow down is not asked by this one either, after at
//! most one tick. This is the cheapest correct place: one small read per tick, nothing on
//! the delivery path, and on the first tick it runs before the first heartbeat, so before
//! anything is claimed (later ticks read after their heartbeat, which a slow read must not
//! delay). A suspension lifted by another worker is not removed here: this
//! worker's copy runs out at its end (its recipients were put back until then anyway).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use time::OffsetDateTime;

use crate::{Store, WorkerInfo};

use super::metrics::EngineMetrics;
use super::pause::{Pause, Pauses};
use super::shaping::DestinationKey;

/// When this worker's heartbeats last succeeded.
pub(crate) struct Liveness {
    lease: Duration,
    state: Mutex<Beats>,
}

#[derive(Clone, Copy)]
struct Beats {
    /// The last heartbeat that was stored.
    last: Option<Instant>,
    /// Since when heartbeats have been stored without a gap longer than the lease.
    since: Option<Instant>,
}

impl Liveness {
    pub fn new(lease: Duration) -> Self {
        Liveness {
            lease,
            state: Mutex::new(Beats {
                last: None,
                since: None,
            }),
        }
    }

    fn beats(&self) -> std::sync::MutexGuard<'_, Beats> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn beat(&self, at: Instant) {
        let mut beats = self.beats();
        let continuous = beats
            .last
            .is_some_and(|last| at.duration_since(last) <= self.lease);
        if !continuous {
            beats.since = Some(at);
        }
        beats.last = Some(at);
    }

    /// True while claiming is safe: the last heartbeat is recent enough that no other
    /// worker can take this one for dead before the claim is written.
    pub fn fresh(&self) -> bool {
        self.beats()
            .last
            .is_some_and(|last| last.elapsed() < self.lease / 2)
    }

    /// True when this worker has been heartbeating without a gap for a whole lease: only
    /// then does it judge others dead by the age of their heartbeat. After a database
    /// outage every heartbeat is old; the first worker back must not take the others'
    /// recipients before they had a chance to beat again.
    fn steady(&self) -> bool {
        self.beats()
            .since
            .is_some_and(|since| since.elapsed() >= self.lease)
    }
}

/// How often the heartbeat runs: three times per lease.
pub(crate) fn period(lease: Duration) -> Duration {
    (lease / 3).max(Duration::from_millis(20))
}

/// What the heartbeat task works with.
pub(crate) struct Heartbeat {
    pub store: Arc<dyn Store>,
    pub worker: WorkerInfo,
    pub lease: Duration,
    pub liveness: Arc<Liveness>,
    pub metrics: Arc<EngineMetrics>,
    /// This worker's suspended destinations, where the stored ones are installed.
    pub suspensions: Arc<Pauses<DestinationKey>>,
}

/// Installs the suspensions stored by any worker into this worker's (see the module
/// documentation).
async fn sync_suspensions(
    store: &dyn Store,
    suspensions: &Pauses<DestinationKey>,
    metrics: &EngineMetrics,
) {
    match store.suspensions(OffsetDateTime::now_utc()).await {
        Ok(stored) => {
            for s in stored {
                let key = DestinationKey(s.destination);
                let pause = Pause {
                    reason: s.reason,
                    until: s.until,
                    failures: s.times,
                };
                if suspensions.install(&key, pause) {
                    tracing::info!(destination = %key, until = %s.until,
                        "destination suspended by another worker; waiting for it too");
                }
            }
        }
        Err(err) => {
            metrics.store_error();
            tracing::warn!(error = %err, "reading the stored suspensions failed");
        }
    }
}

/// Beats until `done` turns true (the engine stored its last outcome), then retires the
/// worker. Resumed recipients wake the dispatcher through `wake`.
pub(crate) async fn run(beat: Heartbeat, mut done: watch::Receiver<bool>) {
    let Heartbeat {
        store,
        worker,
        lease,
        liveness,
        metrics,
        suspensions,
    } = beat;
    let wake = store.enqueued();
    let mut first = true;
    loop {
        // On the first tick before the heartbeat, so nothing is claimed before the stored
        // suspensions are in; later after it, so a slow read never delays a heartbeat.
        if first {
            sync_suspensions(&*store, &suspensions, &metrics).await;
        }
        match store.heartbeat(&worker, lease).await {
            Ok(()) => liveness.beat(Instant::now()),
            Err(err) => {
                metrics.store_error();
                tracing::warn!(error = %err, "heartbeat failed; claiming pauses until it succeeds");
            }
        }
        if !first {
            sync_suspensions(&*store, &suspensions, &metrics).await;
        }
        // The first tick resumes a crashed predecessor on this machine at once; later
        // ticks judge heartbeat ages only once ours are steady.
        if first || liveness.steady() {
            match store.recover().await {
                Ok(0) => {}
                Ok(resumed) => {
                    tracing::info!(resumed, "resumed the recipients of dead workers");
                    wake.notify_one();
                }
                Err(err) => {
                    metrics.store_error();
                    tracing::warn!(error = %err, "looking for dead workers failed");
                }
            }
            first = false;
        }
        tokio::select! {
            () = tokio::time::sleep(period(lease)) => {}
            _ = done.wait_for(|done| *done) => break,
        }
    }
    if let Err(err) = store.retire(&worker.owner).await {
        // Harmless: the row ages out, and this worker holds nothing any more.
        tracing::warn!(error = %err, "retiring this worker's heartbeat failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn fresh_and_steady_follow_the_heartbeats() {
        let lease = Duration::from_secs(9);
        let liveness = Liveness::new(lease);
        assert!(!liveness.fresh() && !liveness.steady(), "no beat yet");
        liveness.beat(Instant::now());
        assert!(liveness.fresh());
        assert!(!liveness.steady());
        for _ in 0..3 {
            tokio::time::advance(period(lease)).await;
            liveness.beat(Instant::now());
        }
        assert!(liveness.steady(), "a whole lease of beats");
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(!liveness.fresh(), "older than half a lease");
        tokio::time::advance(Duration::from_secs(10)).await;
        liveness.beat(Instant::now());
        assert!(liveness.fresh());
        assert!(
            !liveness.steady(),
            "a gap longer than the lease starts over"
        );
    }
}
