//! PostgreSQL statements of the event log and its webhook deliveries (migration 8). The
//! hot paths (enqueue, complete) record their events in a data-modifying CTE of the
//! statement that changes the recipients ([`EVENTS_FROM`]): no extra round trip.

use deadpool_postgres::{Client, GenericClient};
use time::OffsetDateTime;
use tokio_postgres::Row;

use crate::StoreError;
use crate::events::{
    EVENT_COLUMNS, Event, EventDelivery, EventFilter, EventPage, EventType, WebhookBacklog,
    WebhookBatch, WebhookResult, WebhookRoute, types_sql,
};
use crate::prepare::check_id;
use crate::rows::without_nul;
use crate::timefmt::{from_ms, to_ms};

use super::ledger::DB_NOW_MS;

/// Arbitrary key of the advisory lock that makes event dispatch one transaction at a
/// time: a dispatch that overtook another could hand a webhook a message's later event
/// before its earlier one.
const DISPATCH_LOCK: i64 = 0x6f75_7465_7665;

/// The `INSERT` that records one event per row of the CTE `{source}` (with columns `id`,
/// `message_id`, `address`, `state`, `last_reply` of recipients, as changed), of the
/// recipient's new state, at the database clock. For the CTEs of enqueue and complete.
pub(crate) fn events_from(source: &str) -> String {
    format!(
        "INSERT INTO events (message_id, recipient_id, address, type, state, reply, created_at) \
         SELECT message_id, id, address, state, state, last_reply, {DB_NOW_MS} FROM {source} \
         ORDER BY id"
    )
}

/// Records one event per recipient of `recipient_ids` (in that order), in the caller's
/// transaction, with one statement: of type `kind`, or of the recipient's new state when
/// `kind` is `None` (`sent`, `deferred`, `failed`, `suppressed`, ...). Call it after the
/// state change, in the same transaction: the event carries the state and reply the
/// recipient has then. Ids of recipients that do not exist are skipped. Returns how many
/// events were recorded.
pub(crate) async fn insert_events<C: GenericClient + Sync>(
    tx: &C,
    recipient_ids: &[i64],
    kind: Option<EventType>,
    now: OffsetDateTime,
) -> Result<u64, StoreError> {
    if recipient_ids.is_empty() {
        return Ok(0);
    }
    let statement = tx
        .prepare_cached(
            "INSERT INTO events (message_id, recipient_id, address, type, state, reply, created_at) \
             SELECT r.message_id, r.id, r.address, COALESCE($2, r.state), r.state, r.last_reply, $3 \
             FROM UNNEST($1::bigint[]) WITH ORDINALITY AS j (id, ord) \
             JOIN recipients r ON r.id = j.id ORDER BY j.ord",
        )
        .await?;
    let inserted = tx
        .execute(
            &statement,
            &[&recipient_ids, &kind.map(EventType::as_str), &to_ms(now)],
        )
        .await?;
    Ok(inserted)
}

fn build(row: &Row) -> Result<Event, StoreError> {
    Event::from_row(
        row.get(0),
        row.get(1),
        row.get(2),
        row.get::<_, &str>(3),
        row.get(4),
        row.get(5),
        row.get(6),
    )
}

/// One page of events, oldest first.
pub(super) async fn list(client: &Client, filter: &EventFilter) -> Result<EventPage, StoreError> {
    let after = filter.after()?;
    let limit = filter.page_size();
    let rows = match filter.message_id.as_deref() {
        Some(message_id) => {
            check_id(message_id)?;
            client
                .query(
                    &format!(
                        "SELECT {EVENT_COLUMNS} FROM events WHERE message_id = $1 AND id > $2 \
                         ORDER BY id LIMIT $3"
                    ),
                    &[&message_id, &after, &(limit + 1)],
                )
                .await?
        }
        None => {
            client
                .query(
                    &format!(
                        "SELECT {EVENT_COLUMNS} FROM events WHERE id > $1 ORDER BY id LIMIT $2"
                    ),
                    &[&after, &(limit + 1)],
                )
                .await?
        }
    };
    let items = rows.iter().map(build).collect::<Result<Vec<_>, _>>()?;
    Ok(EventPage::from_rows(items, limit))
}

/// The deliveries of some events.
pub(super) async fn deliveries(
    client: &Client,
    event_ids: &[i64],
) -> Result<Vec<EventDelivery>, StoreError> {
    let rows = client
        .query(
            "SELECT event_id, webhook, attempts, last_status, last_error, next_attempt_at, delivered_at \
             FROM webhook_deliveries WHERE event_id = ANY($1) ORDER BY event_id, webhook",
            &[&event_ids],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|row| EventDelivery {
            event_id: row.get(0),
            webhook: row.get(1),
            attempts: u32::try_from(row.get::<_, i64>(2)).unwrap_or(u32::MAX),
            last_status: row
                .get::<_, Option<i64>>(3)
                .and_then(|s| u16::try_from(s).ok()),
            last_error: row.get(4),
            next_attempt_at: from_ms(row.get(5)),
            delivered_at: row.get::<_, Option<i64>>(6).map(from_ms),
        })
        .collect())
}

/// Fans out up to `limit` undispatched events to the webhooks that want them, one
/// dispatch at a time (an advisory lock held to the commit).
pub(super) async fn dispatch(
    client: &mut Client,
    webhooks: &[WebhookRoute],
    now: OffsetDateTime,
    limit: usize,
) -> Result<u64, StoreError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&DISPATCH_LOCK])
        .await?;
    let rows = tx
        .query(
            "UPDATE events SET dispatched = 1 WHERE id IN \
             (SELECT id FROM events WHERE dispatched = 0 ORDER BY id LIMIT $1) \
             RETURNING id",
            &[&limit],
        )
        .await?;
    let mut ids: Vec<i64> = rows.iter().map(|row| row.get(0)).collect();
    ids.sort_unstable();
    if !ids.is_empty() {
        for webhook in webhooks {
            let Some(types) = types_sql(&webhook.events) else {
                continue;
            };
            tx.execute(
                &format!(
                    "INSERT INTO webhook_deliveries (webhook, event_id, next_attempt_at) \
                     SELECT $1, e.id, $2 FROM events e WHERE e.id = ANY($3) AND e.type IN {types} \
                     ORDER BY e.id ON CONFLICT DO NOTHING"
                ),
                &[&webhook.webhook, &to_ms(now), &ids],
            )
            .await?;
        }
    }
    tx.commit().await?;
    Ok(ids.len() as u64)
}

/// Takes or renews a webhook's lock.
pub(super) async fn lock(
    client: &Client,
    webhook: &str,
    owner: &str,
    now: OffsetDateTime,
    until: OffsetDateTime,
) -> Result<bool, StoreError> {
    let held = client
        .query_opt(
            "INSERT INTO webhook_locks (webhook, owner, until) VALUES ($1, $2, $4) \
             ON CONFLICT (webhook) DO UPDATE SET owner = EXCLUDED.owner, until = EXCLUDED.until \
             WHERE webhook_locks.owner = EXCLUDED.owner OR webhook_locks.until < $3 \
             OR webhook_locks.owner NOT IN (SELECT owner FROM workers) \
             RETURNING owner",
            &[&webhook, &owner, &to_ms(now), &to_ms(until)],
        )
        .await?;
    Ok(held.is_some())
}

/// The next due events of a webhook, in event order.
pub(super) async fn batch(
    client: &Client,
    webhook: &str,
    now: OffsetDateTime,
    limit: usize,
) -> Result<WebhookBatch, StoreError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = client
        .query(&crate::events::batch_sql("$1", "$2"), &[&webhook, &limit])
        .await?;
    let rows = rows.iter().map(|row| (row, row.get(7), row.get(8)));
    WebhookBatch::due_prefix(rows, now, build)
}

/// Records one request's result for its events.
pub(super) async fn result(
    client: &Client,
    webhook: &str,
    event_ids: &[i64],
    result: &WebhookResult,
    now: OffsetDateTime,
) -> Result<(), StoreError> {
    match result {
        WebhookResult::Delivered { status } => {
            client
                .execute(
                    "UPDATE webhook_deliveries SET attempts = attempts + 1, last_status = $3, \
                     last_error = NULL, delivered_at = $4 \
                     WHERE webhook = $1 AND event_id = ANY($2) AND delivered_at IS NULL",
                    &[&webhook, &event_ids, &i64::from(*status), &to_ms(now)],
                )
                .await?;
        }
        WebhookResult::Failed {
            status,
            error,
            next_attempt_at,
        } => {
            client
                .execute(
                    "UPDATE webhook_deliveries SET attempts = attempts + 1, last_status = $3, \
                     last_error = $4, next_attempt_at = $5 \
                     WHERE webhook = $1 AND event_id = ANY($2) AND delivered_at IS NULL",
                    &[
                        &webhook,
                        &event_ids,
                        &status.map(i64::from),
                        &without_nul(error).as_ref(),
                        &to_ms(*next_attempt_at),
                    ],
                )
                .await?;
        }
    }
    Ok(())
}

/// Undelivered deliveries per webhook.
pub(super) async fn backlog(client: &Client) -> Result<Vec<WebhookBacklog>, StoreError> {
    let rows = client
        .query(
            "SELECT webhook, count(*), count(*) FILTER (WHERE attempts > 0) \
             FROM webhook_deliveries WHERE delivered_at IS NULL GROUP BY webhook ORDER BY webhook",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|row| WebhookBacklog {
            webhook: row.get(0),
            pending: row.get::<_, i64>(1).max(0) as u64,
            failing: row.get::<_, i64>(2).max(0) as u64,
        })
        .collect())
}

/// Deletes old events no webhook waits for, and their deliveries, in one statement.
pub(super) async fn prune(
    client: &Client,
    before: OffsetDateTime,
    limit: usize,
) -> Result<u64, StoreError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    // Ids grow with time: the old events are the ones before the first young one, so the
    // walk stops there instead of reading the whole log.
    let row = client
        .query_one(
            "WITH old AS (SELECT e.id FROM events e WHERE e.id < COALESCE( \
                 (SELECT id FROM events WHERE created_at >= $1 ORDER BY id LIMIT 1), \
                 (SELECT MAX(id) + 1 FROM events)) \
               AND e.created_at < $1 AND e.dispatched = 1 \
               AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d \
                 WHERE d.event_id = e.id AND d.delivered_at IS NULL) \
               ORDER BY e.id LIMIT $2), \
             gone AS (DELETE FROM webhook_deliveries WHERE event_id IN (SELECT id FROM old)), \
             deleted AS (DELETE FROM events WHERE id IN (SELECT id FROM old) RETURNING 1) \
             SELECT count(*) FROM deleted",
            &[&to_ms(before), &limit],
        )
        .await?;
    Ok(row.get::<_, i64>(0).max(0) as u64)
}
