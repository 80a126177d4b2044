//! `/metrics` in the Prometheus text exposition format (version 0.0.4), and `/healthz`.
//!
//! Metric names are listed in `docs/http-api.md`; scripts and dashboards rely on them.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use outbox_queue::StatusCounts;
use outbox_queue::engine::MetricsSnapshot;
use outbox_queue::engine::metrics::LATENCY_BUCKETS;

use super::AppState;
use super::error::ApiError;

/// Counters the HTTP API keeps itself (the engine counts deliveries, not submissions).
#[derive(Debug, Default)]
pub struct ApiMetrics {
    enqueued: AtomicU64,
}

impl ApiMetrics {
    /// Counts messages newly queued through the API (an idempotent repeat is not new).
    pub fn add_enqueued(&self, n: u64) {
        self.enqueued.fetch_add(n, Ordering::Relaxed);
    }

    /// Messages queued through the API since start.
    pub fn enqueued(&self) -> u64 {
        self.enqueued.load(Ordering::Relaxed)
    }
}

/// `GET /metrics`.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Prometheus text exposition format", content_type = "text/plain", body = String),
        (status = 401, description = "missing or invalid token", body = super::error::ErrorBody),
    )
)]
pub async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    // While the database does not answer, the engine's counters (its store errors first)
    // are what an operator needs: they are served without the queue gauges.
    let counts = match state.outbox.store().counts().await {
        Ok(counts) => Some(counts),
        Err(err) => {
            tracing::warn!(error = %err, "metrics: the queue database does not answer");
            None
        }
    };
    // Stored by every worker sharing the database, not only this process's engine.
    let suspended = match state
        .outbox
        .store()
        .suspensions(time::OffsetDateTime::now_utc())
        .await
    {
        Ok(suspensions) => Some(suspensions.len()),
        Err(err) => {
            tracing::warn!(error = %err, "metrics: reading the suspended destinations failed");
            None
        }
    };
    let queue = counts
        .as_ref()
        .map(|counts| QueueGauges { counts, suspended });
    let mut text = render(
        queue.as_ref(),
        &state.metrics.snapshot(),
        state.api_metrics.enqueued(),
    );
    // The backlog is stored (every worker's), the request counters are this process's.
    let backlog = match state.outbox.store().webhook_backlog().await {
        Ok(backlog) => Some(backlog),
        Err(err) => {
            tracing::warn!(error = %err, "metrics: reading the webhook backlog failed");
            None
        }
    };
    let webhooks = state.metrics.webhooks();
    render_webhooks(
        &mut text,
        WebhookCounters {
            delivered: webhooks.delivered(),
            failed: webhooks.failed(),
            events_delivered: webhooks.events_delivered(),
        },
        backlog.as_deref(),
    );
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

/// `GET /healthz`: 200 `ok` when the store answers, 503 otherwise. No token needed.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    responses(
        (status = 200, description = "the store answers", content_type = "text/plain", body = String),
        (status = 503, description = "the store does not answer", content_type = "text/plain", body = String),
    )
)]
pub async fn healthz(State(state): State<AppState>) -> Response {
    match state.outbox.store().counts().await {
        Ok(_) => (StatusCode::OK, "ok\n").into_response(),
        Err(err) => {
            tracing::warn!(error = %err, "healthz: the store does not answer");
            (StatusCode::SERVICE_UNAVAILABLE, "store unavailable\n").into_response()
        }
    }
}

/// The gauges read from the queue database at a scrape.
#[derive(Debug, Clone, Copy)]
pub struct QueueGauges<'a> {
    /// Messages per status.
    pub counts: &'a StatusCounts,
    /// Destinations suspended now (`None` when that read failed: the gauge is left out).
    pub suspended: Option<usize>,
}

/// The exposition text for these values.
/// `queue` is `None` when the database did not answer: the queue gauges are left out and
/// `outbox_queue_database_up` is 0.
pub fn render(queue: Option<&QueueGauges<'_>>, engine: &MetricsSnapshot, enqueued: u64) -> String {
    let mut out = String::new();
    family(
        &mut out,
        "outbox_queue_database_up",
        "gauge",
        "1 when the queue database answered this scrape, else 0.",
    );
    let _ = writeln!(
        out,
        "outbox_queue_database_up {}",
        u8::from(queue.is_some())
    );
    if let Some(suspended) = queue.and_then(|queue| queue.suspended) {
        family(
            &mut out,
            "outbox_destinations_suspended",
            "gauge",
            "Destinations suspended now for asking us to slow down, by any worker sharing the database.",
        );
        let _ = writeln!(out, "outbox_destinations_suspended {suspended}");
    }
    if let Some(counts) = queue.map(|queue| queue.counts) {
        family(
            &mut out,
            "outbox_queue_messages",
            "gauge",
            "Messages in the queue by status.",
        );
        for (status, n) in [
            ("queued", counts.queued),
            ("sent", counts.sent),
            ("error", counts.error),
        ] {
            let _ = writeln!(out, "outbox_queue_messages{{status=\"{status}\"}} {n}");
        }
    }
    for (name, help, value) in [
        (
            "outbox_messages_enqueued_total",
            "Messages queued through the HTTP API since start.",
            enqueued,
        ),
        (
            "outbox_recipients_sent_total",
            "Recipients accepted by a server (250 to end-of-data).",
            engine.sent,
        ),
        (
            "outbox_recipients_deferred_total",
            "Temporary failures; the recipient will be retried.",
            engine.deferred,
        ),
        (
            "outbox_recipients_failed_total",
            "Permanent failures and recipients out of attempts.",
            engine.failed,
        ),
        (
            "outbox_recipients_unknown_total",
            "Attempts whose connection failed after the final dot, before the reply; retried.",
            engine.unknown,
        ),
        (
            "outbox_recipients_not_attempted_total",
            "Recipients put back without an attempt: their route's connection could not be set up.",
            engine.not_attempted,
        ),
        (
            "outbox_connection_failures_total",
            "Connections that could not be set up (refused, TLS, AUTH, configuration).",
            engine.connection_failures,
        ),
        (
            "outbox_destination_suspensions_total",
            "Times a destination was suspended for asking us to slow down (421, [[shaping]] on_reply).",
            engine.suspensions,
        ),
        (
            "outbox_store_errors_total",
            "Queue database operations of the engine that failed and were retried.",
            engine.store_errors,
        ),
        (
            "outbox_stale_outcomes_total",
            "Outcomes not applied because another worker had claimed the recipient since.",
            engine.stale_outcomes,
        ),
        (
            "outbox_connections_opened_total",
            "SMTP connections opened since start.",
            engine.connections_total,
        ),
    ] {
        family(&mut out, name, "counter", help);
        let _ = writeln!(out, "{name} {value}");
    }
    family(
        &mut out,
        "outbox_connections_open",
        "gauge",
        "SMTP connections open now.",
    );
    let _ = writeln!(out, "outbox_connections_open {}", engine.connections_open);
    family(
        &mut out,
        "outbox_delivery_latency_seconds",
        "histogram",
        "Time from enqueue to acceptance by the server.",
    );
    for (bound, count) in LATENCY_BUCKETS.iter().zip(&engine.latency_buckets) {
        let _ = writeln!(
            out,
            "outbox_delivery_latency_seconds_bucket{{le=\"{bound}\"}} {count}"
        );
    }
    let _ = writeln!(
        out,
        "outbox_delivery_latency_seconds_bucket{{le=\"+Inf\"}} {}",
        engine.latency_count
    );
    let _ = writeln!(
        out,
        "outbox_delivery_latency_seconds_sum {}",
        engine.latency_sum
    );
    let _ = writeln!(
        out,
        "outbox_delivery_latency_seconds_count {}",
        engine.latency_count
    );
    out
}

/// The webhook sender's counters at a scrape.
#[derive(Debug, Clone, Copy, Default)]
pub struct WebhookCounters {
    /// Requests answered with a 2xx.
    pub delivered: u64,
    /// Requests that failed (non-2xx, no answer, timeout).
    pub failed: u64,
    /// Events those 2xx requests carried.
    pub events_delivered: u64,
}

/// Appends the webhook families: requests by result, events delivered, and per webhook
/// (its URL without the query, which may hold a token) the events waiting and those
/// that failed at least once (`backlog` is `None` when the read failed: left out).
pub fn render_webhooks(
    out: &mut String,
    counters: WebhookCounters,
    backlog: Option<&[outbox_queue::WebhookBacklog]>,
) {
    family(
        out,
        "outbox_webhook_deliveries_total",
        "counter",
        "Webhook requests since start, by result (delivered: a 2xx answer; failed: any other answer, no answer or a timeout).",
    );
    for (result, n) in [
        ("delivered", counters.delivered),
        ("failed", counters.failed),
    ] {
        let _ = writeln!(
            out,
            "outbox_webhook_deliveries_total{{result=\"{result}\"}} {n}"
        );
    }
    family(
        out,
        "outbox_webhook_events_delivered_total",
        "counter",
        "Events delivered to webhooks since start (a batch counts each of its events).",
    );
    let _ = writeln!(
        out,
        "outbox_webhook_events_delivered_total {}",
        counters.events_delivered
    );
    let Some(backlog) = backlog else {
        return;
    };
    family(
        out,
        "outbox_webhook_pending",
        "gauge",
        "Events waiting to be delivered, per webhook.",
    );
    for b in backlog {
        let _ = writeln!(
            out,
            "outbox_webhook_pending{{webhook=\"{}\"}} {}",
            label(&b.webhook),
            b.pending
        );
    }
    family(
        out,
        "outbox_webhook_failing",
        "gauge",
        "Events waiting whose delivery failed at least once, per webhook.",
    );
    for b in backlog {
        let _ = writeln!(
            out,
            "outbox_webhook_failing{{webhook=\"{}\"}} {}",
            label(&b.webhook),
            b.failing
        );
    }
}

/// A webhook URL as a label value: without its query, escaped.
fn label(url: &str) -> String {
    let url = url.split('?').next().unwrap_or(url);
    url.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_text() {
        let counts = StatusCounts {
            queued: 3,
            sent: 2,
            error: 1,
        };
        let engine = MetricsSnapshot {
            sent: 5,
            deferred: 1,
            failed: 1,
            connections_open: 2,
            connections_total: 4,
            latency_buckets: vec![0, 0, 0, 0, 1, 1, 2, 2, 2, 2, 2, 2],
            latency_count: 2,
            latency_sum: 0.75,
            store_errors: 3,
            ..MetricsSnapshot::default()
        };
        let queue = QueueGauges {
            counts: &counts,
            suspended: Some(2),
        };
        let text = render(Some(&queue), &engine, 7);
        let mut hooks = String::new();
        render_webhooks(
            &mut hooks,
            WebhookCounters {
                delivered: 4,
                failed: 2,
                events_delivered: 9,
            },
            Some(&[outbox_queue::WebhookBacklog {
                webhook: "https://app.test/hook?token=s3cret".into(),
                pending: 5,
                failing: 3,
            }]),
        );
        for line in [
            "outbox_webhook_deliveries_total{result=\"delivered\"} 4",
            "outbox_webhook_deliveries_total{result=\"failed\"} 2",
            "outbox_webhook_events_delivered_total 9",
            "outbox_webhook_pending{webhook=\"https://app.test/hook\"} 5",
            "outbox_webhook_failing{webhook=\"https://app.test/hook\"} 3",
        ] {
            assert!(hooks.lines().any(|l| l == line), "{line} in {hooks}");
        }
        assert!(!hooks.contains("s3cret"), "{hooks}");
        let down = render(None, &engine, 7);
        assert!(down.contains("outbox_queue_database_up 0"), "{down}");
        assert!(!down.contains("outbox_queue_messages"), "{down}");
        assert!(!down.contains("outbox_destinations_suspended"), "{down}");
        let unread = render(
            Some(&QueueGauges {
                suspended: None,
                ..queue
            }),
            &engine,
            7,
        );
        assert!(
            !unread.contains("outbox_destinations_suspended"),
            "{unread}"
        );
        assert!(
            unread.contains("outbox_queue_messages{status=\"sent\"} 2"),
            "{unread}"
        );
        assert!(down.contains("outbox_store_errors_total 3"), "{down}");
        for line in [
            "outbox_queue_database_up 1",
            "outbox_store_errors_total 3",
            "outbox_connection_failures_total 0",
            "outbox_destination_suspensions_total 0",
            "# TYPE outbox_destinations_suspended gauge",
            "outbox_destinations_suspended 2",
            "# TYPE outbox_queue_messages gauge",
            "outbox_queue_messages{status=\"queued\"} 3",
            "outbox_queue_messages{status=\"error\"} 1",
            "outbox_messages_enqueued_total 7",
            "outbox_recipients_sent_total 5",
            "outbox_recipients_deferred_total 1",
            "outbox_recipients_failed_total 1",
            "outbox_connections_open 2",
            "# TYPE outbox_delivery_latency_seconds histogram",
            "outbox_delivery_latency_seconds_bucket{le=\"0.1\"} 1",
            "outbox_delivery_latency_seconds_bucket{le=\"0.5\"} 2",
            "outbox_delivery_latency_seconds_bucket{le=\"+Inf\"} 2",
            "outbox_delivery_latency_seconds_sum 0.75",
            "outbox_delivery_latency_seconds_count 2",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
    }
}
