//! The webhook sender: tells applications what happened to their messages, from the
//! event log, durably.
//!
//! - Events are recorded by the store in the transaction of each state change
//!   ([`crate::Event`]); this sender never creates them, so a crash loses none.
//! - A dispatcher fans new events out to the webhooks that want them (a delivery row per
//!   webhook and event), one dispatch at a time, oldest first.
//! - One task per webhook holds that webhook's lock in the database (so one process at a
//!   time sends to it) and sends its undelivered events in event order, batched: one
//!   event as a JSON object, several as an array, at most `batch_size` per request.
//!   A failed request (no 2xx within the timeout) is retried after `retry_backoff` (the
//!   last step repeats) with the same events first: a batch never overtakes an event in
//!   backoff, so events stay in order per message. Nothing is dropped: a dead endpoint
//!   keeps its events until it answers (see `/metrics` for the backlog).
//! - Each request is signed per Standard Webhooks (`webhook-id`, `webhook-timestamp`,
//!   `webhook-signature`; [`signature`]).
//!
//! At least once: a crash between the request and the recording of its answer sends the
//! same events again (same `webhook-id` when the batch is the same); receivers dedupe by
//! `data.event_id`.

pub mod client;
pub mod signature;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;
use time::OffsetDateTime;
use tokio::sync::watch;

use crate::events::{Event, EventType, WebhookResult, WebhookRoute};
use crate::{Store, rfc3339};
use client::{PostResult, WebhookUrl};
pub use signature::WebhookSecret;

/// One `[[webhooks]]` entry, checked.
#[derive(Debug, Clone)]
pub struct Webhook {
    /// Where events go; also the webhook's name in the database.
    pub url: WebhookUrl,
    /// The signing key.
    pub secret: WebhookSecret,
    /// The event types it wants (all by default).
    pub events: Vec<EventType>,
}

/// How the sender behaves; the binary fills it from `[[webhooks]]` and `[events]`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct WebhookSettings {
    /// The webhooks; none: the dispatcher still marks events dispatched and prunes.
    pub webhooks: Vec<Webhook>,
    /// Trust anchors for `https` (webpki roots plus `[tls] ca_file`).
    pub tls: Arc<rustls::ClientConfig>,
    /// One request, connection included, must answer within this.
    pub timeout: Duration,
    /// Waits after each failed request; the last repeats.
    pub retry_backoff: Vec<Duration>,
    /// Events per request at most.
    pub batch_size: usize,
    /// Events older than this are deleted once no webhook waits for them; `None` keeps
    /// them forever.
    pub retention: Option<Duration>,
    /// How often the dispatcher looks for new events (and an idle webhook for work).
    pub poll_interval: Duration,
}

impl WebhookSettings {
    /// Defaults around the given trust anchors: no webhook, 10 s timeout, backoff 5s,
    /// 30s, 2m, 10m, 30m, 1h (repeating), 100 events per request, 30 days of events,
    /// a look every 200 ms.
    pub fn new(tls: Arc<rustls::ClientConfig>) -> Self {
        WebhookSettings {
            webhooks: Vec::new(),
            tls,
            timeout: Duration::from_secs(10),
            retry_backoff: [5, 30, 120, 600, 1800, 3600]
                .into_iter()
                .map(Duration::from_secs)
                .collect(),
            batch_size: 100,
            retention: Some(Duration::from_secs(30 * 24 * 3600)),
            poll_interval: Duration::from_millis(200),
        }
    }

    fn routes(&self) -> Vec<WebhookRoute> {
        self.webhooks
            .iter()
            .map(|w| WebhookRoute {
                webhook: w.url.as_str().to_string(),
                events: w.events.clone(),
            })
            .collect()
    }
}

/// The wait after the `attempts`-th failed request (1 for the first): the list's entry,
/// the last one repeating; 1 minute for an empty list.
pub fn backoff(retry_backoff: &[Duration], attempts: u32) -> Duration {
    let index = (attempts.max(1) - 1) as usize;
    retry_backoff
        .get(index)
        .or(retry_backoff.last())
        .copied()
        .unwrap_or(Duration::from_secs(60))
}

/// The sender's counters for `/metrics`.
#[derive(Debug, Default)]
pub struct WebhookMetrics {
    delivered: AtomicU64,
    failed: AtomicU64,
    events_delivered: AtomicU64,
}

impl WebhookMetrics {
    /// Requests answered with a 2xx.
    pub fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed)
    }

    /// Requests that failed (non-2xx, no answer, timeout).
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }

    /// Events delivered (a batch counts each of its events).
    pub fn events_delivered(&self) -> u64 {
        self.events_delivered.load(Ordering::Relaxed)
    }
}

/// One event as sent: Standard Webhooks' `{type, timestamp, data}`.
#[derive(Debug, Serialize)]
struct Payload<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    timestamp: String,
    data: PayloadData<'a>,
}

#[derive(Debug, Serialize)]
struct PayloadData<'a> {
    event_id: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    message_id: Option<&'a str>,
    recipient: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    state: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reply: Option<&'a str>,
}

fn payload(event: &Event) -> Payload<'_> {
    Payload {
        kind: event.kind.as_str(),
        timestamp: rfc3339(event.created_at),
        data: PayloadData {
            event_id: event.id,
            message_id: event.message_id.as_deref(),
            recipient: &event.recipient,
            state: event.state.as_deref(),
            reply: event.reply.as_deref(),
        },
    }
}

/// The body of a request: one event as an object, several as an array.
pub fn body(events: &[Event]) -> Vec<u8> {
    let encoded = if let [event] = events {
        serde_json::to_vec(&payload(event))
    } else {
        serde_json::to_vec(&events.iter().map(payload).collect::<Vec<_>>())
    };
    encoded.expect("events serialize to JSON")
}

/// The `webhook-id` of a request: `evt_ID` for one event, `evt_FIRST-LAST` for a batch
/// (the same again when the same batch is retried).
pub fn request_id(events: &[Event]) -> String {
    match events {
        [] => "evt_none".to_string(),
        [event] => format!("evt_{}", event.id),
        [first, .., last] => format!("evt_{}-{}", first.id, last.id),
    }
}

/// Runs the dispatcher and one sender per webhook until `stop` turns true.
pub async fn run(
    store: Arc<dyn Store>,
    settings: WebhookSettings,
    owner: String,
    metrics: Arc<WebhookMetrics>,
    stop: watch::Receiver<bool>,
) {
    let settings = Arc::new(settings);
    let mut tasks = tokio::task::JoinSet::new();
    for index in 0..settings.webhooks.len() {
        tasks.spawn(send_loop(
            store.clone(),
            settings.clone(),
            index,
            owner.clone(),
            metrics.clone(),
            stop.clone(),
        ));
    }
    tasks.spawn(dispatch_loop(store, settings, stop));
    while tasks.join_next().await.is_some() {}
}

/// Sleeps for `duration` or until stopped; false when stopped.
async fn pause(stop: &mut watch::Receiver<bool>, duration: Duration) -> bool {
    if *stop.borrow() {
        return false;
    }
    let stopped = tokio::select! {
        _ = tokio::time::sleep(duration) => false,
        _ = stop.wait_for(|s| *s) => true,
    };
    !stopped && !*stop.borrow()
}

/// Events fanned out per dispatch transaction.
const DISPATCH_BATCH: usize = 1000;

/// Events pruned per transaction.
const PRUNE_BATCH: usize = 10_000;

/// How often old events are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

async fn dispatch_loop(
    store: Arc<dyn Store>,
    settings: Arc<WebhookSettings>,
    mut stop: watch::Receiver<bool>,
) {
    let routes = settings.routes();
    let mut last_prune: Option<tokio::time::Instant> = None;
    loop {
        let mut wait = settings.poll_interval;
        match store
            .dispatch_events(&routes, OffsetDateTime::now_utc(), DISPATCH_BATCH)
            .await
        {
            // A full batch: more may wait, go on at once.
            Ok(n) if n as usize >= DISPATCH_BATCH => wait = Duration::ZERO,
            Ok(_) => {}
            Err(err) => tracing::warn!(error = %err, "webhooks: dispatching events failed"),
        }
        if let Some(retention) = settings.retention
            && last_prune.is_none_or(|at| at.elapsed() >= PRUNE_EVERY)
        {
            last_prune = Some(tokio::time::Instant::now());
            prune(&*store, retention).await;
        }
        if !pause(&mut stop, wait).await {
            return;
        }
    }
}

async fn prune(store: &dyn Store, retention: Duration) {
    let Some(before) =
        OffsetDateTime::now_utc().checked_sub(retention.try_into().unwrap_or(time::Duration::MAX))
    else {
        return;
    };
    loop {
        match store.prune_events(before, PRUNE_BATCH).await {
            Ok(n) if n as usize >= PRUNE_BATCH => continue,
            Ok(n) => {
                if n > 0 {
                    tracing::info!(events = n, "webhooks: pruned old events");
                }
                return;
            }
            Err(err) => {
                tracing::warn!(error = %err, "webhooks: pruning old events failed");
                return;
            }
        }
    }
}

/// How long a sender's lock on its webhook lasts; renewed before every request.
const LOCK_FOR: Duration = Duration::from_secs(60);

/// How often a sender whose webhook another worker holds tries again.
const LOCKED_RETRY: Duration = Duration::from_secs(1);

async fn send_loop(
    store: Arc<dyn Store>,
    settings: Arc<WebhookSettings>,
    index: usize,
    owner: String,
    metrics: Arc<WebhookMetrics>,
    mut stop: watch::Receiver<bool>,
) {
    let webhook = &settings.webhooks[index];
    let name = webhook.url.as_str();
    loop {
        let wait = match send_once(&*store, &settings, webhook, &owner, &metrics).await {
            Ok(Some(wait)) => wait,
            Ok(None) => Duration::ZERO,
            Err(err) => {
                tracing::warn!(webhook = %name, error = %err, "webhooks: store error");
                settings.poll_interval.max(Duration::from_secs(1))
            }
        };
        if !pause(&mut stop, wait).await {
            return;
        }
    }
}

/// One step of a webhook's sender: `Ok(None)` after a successful request (go on at
/// once), `Ok(Some(wait))` when there is nothing to do for `wait`.
async fn send_once(
    store: &dyn Store,
    settings: &WebhookSettings,
    webhook: &Webhook,
    owner: &str,
    metrics: &WebhookMetrics,
) -> Result<Option<Duration>, crate::StoreError> {
    let name = webhook.url.as_str();
    let now = OffsetDateTime::now_utc();
    if !store
        .lock_webhook(name, owner, now, now + LOCK_FOR + settings.timeout)
        .await?
    {
        // Another process sends to it: look again soon, as it may have just died (its
        // lock is free once its worker row is gone, which the first heartbeat tick of
        // any engine on its machine sees at once).
        return Ok(Some(LOCKED_RETRY));
    }
    let batch = store.webhook_batch(name, now, settings.batch_size).await?;
    if batch.events.is_empty() {
        let wait = batch
            .next_attempt_at
            .map(|at| (at - now).try_into().unwrap_or(Duration::ZERO))
            .unwrap_or(settings.poll_interval)
            .min(settings.poll_interval.max(Duration::from_secs(1)))
            .min(LOCK_FOR / 4);
        return Ok(Some(wait));
    }
    let body = body(&batch.events);
    let id = request_id(&batch.events);
    let timestamp = OffsetDateTime::now_utc().unix_timestamp();
    let signature = webhook.secret.sign(&id, timestamp, &body);
    let headers = [
        ("webhook-id", id),
        ("webhook-timestamp", timestamp.to_string()),
        ("webhook-signature", signature),
    ];
    let result = client::post(
        &webhook.url,
        &settings.tls,
        &headers,
        body,
        settings.timeout,
    )
    .await;
    let event_ids: Vec<i64> = batch.events.iter().map(|e| e.id).collect();
    let now = OffsetDateTime::now_utc();
    let (stored, delivered) = match result {
        PostResult::Accepted(status) => (WebhookResult::Delivered { status }, true),
        PostResult::Refused { status, body } => {
            let error = if body.is_empty() {
                format!("HTTP {status}")
            } else {
                format!("HTTP {status}: {body}")
            };
            (failed(settings, &batch, Some(status), error, now), false)
        }
        PostResult::Error(error) => (failed(settings, &batch, None, error, now), false),
    };
    if delivered {
        metrics.delivered.fetch_add(1, Ordering::Relaxed);
        metrics
            .events_delivered
            .fetch_add(event_ids.len() as u64, Ordering::Relaxed);
    } else {
        metrics.failed.fetch_add(1, Ordering::Relaxed);
        if let WebhookResult::Failed {
            error,
            next_attempt_at,
            ..
        } = &stored
        {
            tracing::warn!(webhook = %name, events = event_ids.len(), %error, retry_at = %rfc3339(*next_attempt_at), "webhook request failed");
        }
    }
    store.webhook_result(name, &event_ids, stored, now).await?;
    Ok(if delivered {
        None
    } else {
        Some(Duration::ZERO)
    })
}

fn failed(
    settings: &WebhookSettings,
    batch: &crate::events::WebhookBatch,
    status: Option<u16>,
    error: String,
    now: OffsetDateTime,
) -> WebhookResult {
    let wait = backoff(&settings.retry_backoff, batch.attempts + 1);
    WebhookResult::Failed {
        status,
        error,
        next_attempt_at: now + wait,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: i64, kind: EventType) -> Event {
        Event {
            id,
            kind,
            message_id: Some("01JDZ0000000000000000000AA".into()),
            recipient: "ann@example.net".into(),
            state: Some(kind.as_str().into()),
            reply: (kind == EventType::Sent).then(|| "250 2.0.0 Ok".to_string()),
            created_at: time::macros::datetime!(2026-11-30 12:00:00 UTC),
        }
    }

    #[test]
    fn one_event_is_an_object_several_an_array() {
        let one: serde_json::Value =
            serde_json::from_slice(&body(&[event(7, EventType::Sent)])).unwrap();
        assert_eq!(
            one,
            serde_json::json!({
                "type": "sent",
                "timestamp": "2026-11-30T12:00:00Z",
                "data": {
                    "event_id": 7,
                    "message_id": "01JDZ0000000000000000000AA",
                    "recipient": "ann@example.net",
                    "state": "sent",
                    "reply": "250 2.0.0 Ok"
                }
            })
        );
        let many: serde_json::Value = serde_json::from_slice(&body(&[
            event(7, EventType::Queued),
            event(9, EventType::Deferred),
        ]))
        .unwrap();
        assert_eq!(many.as_array().unwrap().len(), 2);
        assert_eq!(many[1]["type"], "deferred");
        assert!(many[0]["data"].get("reply").is_none());
    }

    #[test]
    fn request_ids() {
        assert_eq!(request_id(&[event(7, EventType::Sent)]), "evt_7");
        assert_eq!(
            request_id(&[
                event(7, EventType::Sent),
                event(8, EventType::Sent),
                event(12, EventType::Sent)
            ]),
            "evt_7-12"
        );
    }

    #[test]
    fn backoff_repeats_its_last_step() {
        let steps = [Duration::from_secs(5), Duration::from_secs(30)];
        assert_eq!(backoff(&steps, 1), Duration::from_secs(5));
        assert_eq!(backoff(&steps, 2), Duration::from_secs(30));
        assert_eq!(backoff(&steps, 9), Duration::from_secs(30));
        assert_eq!(backoff(&[], 1), Duration::from_secs(60));
    }
}
