//! The event log (migration 8): one event per recipient state change worth telling an
//! application about, stored in the transaction of the change, and the bookkeeping of
//! their delivery to webhooks (see [`crate::webhooks`] for the sender).
//!
//! Events are always recorded, webhooks or not: `outbox events list` and
//! `GET /api/v1/events` read them. Old ones are pruned by the engine (`[events]
//! retention`), never while a webhook still waits for them.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;
use time::OffsetDateTime;

use crate::StoreError;

/// What happened to a recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum EventType {
    /// Stored in the queue (enqueue, or recipients added to a bulk message).
    Queued,
    /// The next server answered 250 to end-of-data.
    Sent,
    /// A temporary failure; retried later.
    Deferred,
    /// A permanent failure, or out of attempts.
    Failed,
    /// A bounce (DSN) reported a permanent failure after it was sent.
    Bounced,
    /// The recipient complained (a feedback loop report).
    Complained,
    /// The address unsubscribed (a suppression with reason `unsubscribed`).
    Unsubscribed,
    /// Not sent: the address is on the suppression list (at enqueue or at a claim).
    Suppressed,
}

impl EventType {
    /// Every type, in the order documented.
    pub const ALL: [EventType; 8] = [
        EventType::Queued,
        EventType::Sent,
        EventType::Deferred,
        EventType::Failed,
        EventType::Bounced,
        EventType::Complained,
        EventType::Unsubscribed,
        EventType::Suppressed,
    ];

    /// The name stored, sent and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Queued => "queued",
            EventType::Sent => "sent",
            EventType::Deferred => "deferred",
            EventType::Failed => "failed",
            EventType::Bounced => "bounced",
            EventType::Complained => "complained",
            EventType::Unsubscribed => "unsubscribed",
            EventType::Suppressed => "suppressed",
        }
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EventType {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        EventType::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown event type {:?}: expected one of {}",
                    crate::rows::shown(s),
                    EventType::ALL.map(EventType::as_str).join(", ")
                )
            })
    }
}

/// One stored event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
    /// Its place in the log: increasing in the order events were recorded.
    pub id: i64,
    /// What happened.
    #[serde(rename = "type")]
    pub kind: EventType,
    /// The message, when the event is about one (an unsubscribe may not be).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    /// The recipient's address.
    pub recipient: String,
    /// The recipient's state after the change (`None` for an unsubscribe without a
    /// recipient row).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// The server's reply or the reason, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply: Option<String>,
    /// When it was recorded (RFC 3339).
    #[serde(serialize_with = "crate::timefmt::serialize")]
    pub created_at: OffsetDateTime,
}

impl Event {
    pub(crate) fn from_row(
        id: i64,
        message_id: Option<String>,
        address: String,
        kind: &str,
        state: Option<String>,
        reply: Option<String>,
        created_at: i64,
    ) -> Result<Self, StoreError> {
        let kind = kind.parse().map_err(|detail| StoreError::Corrupt {
            what: "event type",
            detail,
        })?;
        Ok(Event {
            id,
            kind,
            message_id,
            recipient: address,
            state,
            reply,
            created_at: crate::timefmt::from_ms(created_at),
        })
    }
}

/// The columns every event read selects, in [`Event::from_row`]'s order.
pub(crate) const EVENT_COLUMNS: &str = "id, message_id, address, type, state, reply, created_at";

/// Which events to list ([`Store::events`](crate::Store::events)).
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct EventFilter {
    /// Only this message's events.
    pub message_id: Option<String>,
    /// At most this many (clamped to 1..=1000).
    pub limit: u32,
    /// Continue after this cursor (the `next_cursor` of the previous page).
    pub cursor: Option<String>,
}

impl EventFilter {
    /// The event id the cursor names, or an error naming the field.
    pub(crate) fn after(&self) -> Result<i64, StoreError> {
        match self.cursor.as_deref() {
            None => Ok(0),
            Some(text) => text
                .parse::<i64>()
                .ok()
                .filter(|id| *id >= 0)
                .ok_or_else(|| StoreError::InvalidCursor {
                    cursor: crate::rows::shown(text),
                }),
        }
    }

    /// The page size, clamped.
    pub(crate) fn page_size(&self) -> i64 {
        i64::from(self.limit.clamp(1, 1000))
    }
}

/// One page of events, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventPage {
    /// The events.
    pub items: Vec<Event>,
    /// Pass it as [`EventFilter::cursor`] for the next page; `None` on the last.
    pub next_cursor: Option<String>,
}

impl EventPage {
    /// A page from `limit + 1` rows read: the extra row says there is a next page.
    pub(crate) fn from_rows(mut items: Vec<Event>, limit: i64) -> Self {
        let next_cursor = if items.len() as i64 > limit {
            items.truncate(limit as usize);
            items.last().map(|e| e.id.to_string())
        } else {
            None
        };
        EventPage { items, next_cursor }
    }
}

/// A webhook as the dispatcher sees it: which events it wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookRoute {
    /// The webhook's name in the database: its URL.
    pub webhook: String,
    /// The event types it wants.
    pub events: Vec<EventType>,
}

/// The next events to send to one webhook ([`Store::webhook_batch`](crate::Store::webhook_batch)).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WebhookBatch {
    /// Due now, in event order; empty when nothing is due.
    pub events: Vec<Event>,
    /// When the first event still waiting (in backoff) is due, if any waits.
    pub next_attempt_at: Option<OffsetDateTime>,
    /// The attempts the first event of the batch has had so far.
    pub attempts: u32,
}

/// The statement both backends read a webhook's next batch with: its undelivered
/// deliveries in event order, each event's columns then its delivery's due time and
/// attempts; `webhook` and `limit` are the placeholders of the webhook and the row limit.
pub(crate) fn batch_sql(webhook: &str, limit: &str) -> String {
    let columns = EVENT_COLUMNS
        .split(", ")
        .map(|c| format!("e.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "SELECT {columns}, d.next_attempt_at, d.attempts FROM webhook_deliveries d \
         JOIN events e ON e.id = d.event_id \
         WHERE d.webhook = {webhook} AND d.delivered_at IS NULL ORDER BY d.event_id LIMIT {limit}"
    )
}

impl WebhookBatch {
    /// The batch of `rows` (event, due time, attempts, in event order) that is due at
    /// `now`: the rows up to the first that is not (a batch never overtakes an event in
    /// backoff); when the very first waits, when it is due.
    pub(crate) fn due_prefix<T>(
        rows: impl IntoIterator<Item = (T, i64, i64)>,
        now: OffsetDateTime,
        mut build: impl FnMut(T) -> Result<Event, StoreError>,
    ) -> Result<WebhookBatch, StoreError> {
        let now = crate::timefmt::to_ms(now);
        let mut batch = WebhookBatch::default();
        for (i, (event, due, attempts)) in rows.into_iter().enumerate() {
            if due > now {
                if i == 0 {
                    batch.next_attempt_at = Some(crate::timefmt::from_ms(due));
                }
                break;
            }
            if i == 0 {
                batch.attempts = u32::try_from(attempts).unwrap_or(u32::MAX);
            }
            batch.events.push(build(event)?);
        }
        Ok(batch)
    }
}

/// What one webhook request gave ([`Store::webhook_result`](crate::Store::webhook_result)).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum WebhookResult {
    /// A 2xx answer.
    Delivered {
        /// The HTTP status.
        status: u16,
    },
    /// Any other answer, or no answer: tried again at `next_attempt_at`.
    Failed {
        /// The HTTP status, when there was an answer.
        status: Option<u16>,
        /// What went wrong, for the operator.
        error: String,
        /// When to try again.
        next_attempt_at: OffsetDateTime,
    },
}

/// One event's delivery to one webhook (the admin page's view).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventDelivery {
    /// The event.
    pub event_id: i64,
    /// The webhook's URL.
    pub webhook: String,
    /// Requests made so far.
    pub attempts: u32,
    /// The last HTTP status, if any request got an answer.
    pub last_status: Option<u16>,
    /// The last error, if the last request failed.
    pub last_error: Option<String>,
    /// When the next request is due (while not delivered).
    #[serde(serialize_with = "crate::timefmt::serialize")]
    pub next_attempt_at: OffsetDateTime,
    /// When a 2xx answer came.
    #[serde(serialize_with = "serialize_optional_time")]
    pub delivered_at: Option<OffsetDateTime>,
}

fn serialize_optional_time<S: serde::Serializer>(
    t: &Option<OffsetDateTime>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => crate::timefmt::serialize(t, s),
        None => s.serialize_none(),
    }
}

/// What waits for one webhook ([`Store::webhook_backlog`](crate::Store::webhook_backlog)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookBacklog {
    /// The webhook's URL.
    pub webhook: String,
    /// Deliveries not done yet.
    pub pending: u64,
    /// Of those, the ones that failed at least once.
    pub failing: u64,
}

/// The event types as a SQL list literal (`('sent', 'failed')`), or `None` when empty.
/// Only [`EventType::as_str`] names go in, so nothing from outside reaches the SQL.
pub(crate) fn types_sql(types: &[EventType]) -> Option<String> {
    if types.is_empty() {
        return None;
    }
    let names: Vec<String> = types.iter().map(|t| format!("'{}'", t.as_str())).collect();
    Some(format!("({})", names.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_round_trip() {
        for t in EventType::ALL {
            assert_eq!(t.as_str().parse::<EventType>().unwrap(), t);
        }
        let err = "delivered".parse::<EventType>().unwrap_err();
        assert!(
            err.contains("delivered") && err.contains("unsubscribed"),
            "{err}"
        );
    }

    #[test]
    fn cursors() {
        let filter = |c: &str| EventFilter {
            cursor: Some(c.into()),
            ..EventFilter::default()
        };
        assert_eq!(filter("42").after().unwrap(), 42);
        assert!(filter("-1").after().is_err());
        assert!(filter("x").after().is_err());
        assert_eq!(EventFilter::default().after().unwrap(), 0);
    }

    #[test]
    fn type_lists() {
        assert_eq!(
            types_sql(&[EventType::Sent, EventType::Failed]).unwrap(),
            "('sent', 'failed')"
        );
        assert_eq!(types_sql(&[]), None);
    }
}
