//! Counters the engine keeps for `/metrics`: outcomes, open connections, and how long
//! messages took from enqueue to acceptance.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use crate::Delivery;

/// Upper bounds (seconds) of the delivery-latency histogram buckets.
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0, 300.0, 3600.0,
];

/// The engine's counters; cheap to update from every connection.
#[derive(Debug, Default)]
pub struct EngineMetrics {
    sent: AtomicU64,
    deferred: AtomicU64,
    failed: AtomicU64,
    unknown: AtomicU64,
    not_attempted: AtomicU64,
    connection_failures: AtomicU64,
    suspensions: AtomicU64,
    store_errors: AtomicU64,
    stale_outcomes: AtomicU64,
    connections_open: AtomicU64,
    connections_total: AtomicU64,
    latency_buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    latency_count: AtomicU64,
    latency_sum_micros: AtomicU64,
    webhooks: std::sync::Arc<crate::webhooks::WebhookMetrics>,
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetricsSnapshot {
    /// Recipients accepted by a server.
    pub sent: u64,
    /// Temporary failures (the recipient will be retried).
    pub deferred: u64,
    /// Permanent failures and recipients out of attempts.
    pub failed: u64,
    /// Attempts whose connection failed after the final dot, before the reply (retried).
    pub unknown: u64,
    /// Recipients put back without an attempt because their route's connection could not
    /// be set up (relay login rejected, TLS configuration, relay refusing connections).
    pub not_attempted: u64,
    /// Connections that could not be set up, whatever the reason.
    pub connection_failures: u64,
    /// Times a destination was suspended because it asked us to slow down (a `421`, a
    /// reply matching a `[[shaping]] on_reply` pattern).
    pub suspensions: u64,
    /// Store operations that failed (and were retried).
    pub store_errors: u64,
    /// Outcomes the store did not apply because another worker had claimed the recipient
    /// since (a final 250 is always applied).
    pub stale_outcomes: u64,
    /// Connections open now.
    pub connections_open: u64,
    /// Connections opened since start.
    pub connections_total: u64,
    /// Cumulative counts per bucket of [`LATENCY_BUCKETS`] (enqueue to acceptance).
    pub latency_buckets: Vec<u64>,
    /// Number of latency observations.
    pub latency_count: u64,
    /// Sum of latencies, in seconds.
    pub latency_sum: f64,
}

impl EngineMetrics {
    pub(crate) fn record(&self, delivery: &Delivery, message_id: &str) {
        match delivery {
            Delivery::Sent { .. } => {
                self.sent.fetch_add(1, Ordering::Relaxed);
                if let Some(latency) = since_enqueue(message_id) {
                    self.observe_latency(latency);
                }
            }
            Delivery::Deferred { .. } => {
                self.deferred.fetch_add(1, Ordering::Relaxed);
            }
            Delivery::Failed { .. } | Delivery::HardBounce { .. } => {
                self.failed.fetch_add(1, Ordering::Relaxed);
            }
            Delivery::Unknown { .. } => {
                self.unknown.fetch_add(1, Ordering::Relaxed);
            }
            Delivery::NotAttempted { .. } => {
                self.not_attempted.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    pub(crate) fn connection_failed(&self) {
        self.connection_failures.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn suspension(&self) {
        self.suspensions.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn store_error(&self) {
        self.store_errors.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn stale(&self, count: u64) {
        self.stale_outcomes.fetch_add(count, Ordering::Relaxed);
    }

    fn observe_latency(&self, latency: Duration) {
        let seconds = latency.as_secs_f64();
        for (bucket, bound) in self.latency_buckets.iter().zip(LATENCY_BUCKETS) {
            if seconds <= bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        self.latency_sum_micros
            .fetch_add(latency.as_micros() as u64, Ordering::Relaxed);
    }

    pub(crate) fn connection_opened(&self) {
        self.connections_open.fetch_add(1, Ordering::Relaxed);
        self.connections_total.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn connection_closed(&self) {
        self.connections_open.fetch_sub(1, Ordering::Relaxed);
    }

    /// The counters now.
    /// The webhook sender's counters (it runs beside the engine).
    pub fn webhooks(&self) -> &std::sync::Arc<crate::webhooks::WebhookMetrics> {
        &self.webhooks
    }

    /// A copy of the engine's counters.
    pub fn snapshot(&self) -> MetricsSnapshot {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        MetricsSnapshot {
            sent: load(&self.sent),
            deferred: load(&self.deferred),
            failed: load(&self.failed),
            unknown: load(&self.unknown),
            not_attempted: load(&self.not_attempted),
            connection_failures: load(&self.connection_failures),
            suspensions: load(&self.suspensions),
            store_errors: load(&self.store_errors),
            stale_outcomes: load(&self.stale_outcomes),
            connections_open: load(&self.connections_open),
            connections_total: load(&self.connections_total),
            latency_buckets: self.latency_buckets.iter().map(load).collect(),
            latency_count: load(&self.latency_count),
            latency_sum: load(&self.latency_sum_micros) as f64 / 1e6,
        }
    }
}

/// Time since the message was queued, read from its ULID's timestamp.
fn since_enqueue(message_id: &str) -> Option<Duration> {
    let queued = ulid::Ulid::from_string(message_id).ok()?.datetime();
    SystemTime::now().duration_since(queued).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_and_latency_are_counted() {
        let metrics = EngineMetrics::default();
        let id = ulid::Ulid::new().to_string();
        metrics.record(
            &Delivery::Sent {
                reply: "250 ok".into(),
            },
            &id,
        );
        metrics.record(
            &Delivery::Failed {
                reply: "550 no".into(),
            },
            &id,
        );
        let snapshot = metrics.snapshot();
        assert_eq!(
            (snapshot.sent, snapshot.failed, snapshot.deferred),
            (1, 1, 0)
        );
        assert_eq!(snapshot.latency_count, 1);
        assert_eq!(*snapshot.latency_buckets.last().unwrap(), 1);
    }
}
