//! SQLite statements of the event log and its webhook deliveries (migration 8). Writers
//! run inside the caller's `BEGIN IMMEDIATE` transaction, each with a constant number of
//! statements whatever the batch size.

use rusqlite::{Connection, OptionalExtension, Transaction, params};
use time::OffsetDateTime;

use crate::StoreError;
use crate::events::{
    EVENT_COLUMNS, Event, EventDelivery, EventFilter, EventPage, EventType, WebhookBacklog,
    WebhookBatch, WebhookResult, WebhookRoute, types_sql,
};
use crate::prepare::check_id;
use crate::rows::without_nul;
use crate::timefmt::{from_ms, to_ms};

fn json<T: serde::Serialize>(values: &T) -> Result<String, StoreError> {
    serde_json::to_string(values)
        .map_err(|err| StoreError::Worker(format!("encoding a batch as JSON: {err}")))
}

/// The statement that records one event per recipient row `source` selects (a `FROM`
/// clause whose rows are `r`, a `recipients` row, ordered as the events should be):
/// type `?kind` or, when NULL, the recipient's state; the recipient's state and reply
/// as they are now, in this transaction.
fn insert_sql(source: &str, kind: &str, now: &str) -> String {
    format!(
        "INSERT INTO events (message_id, recipient_id, address, type, state, reply, created_at) \
         SELECT r.message_id, r.id, r.address, COALESCE({kind}, r.state), r.state, r.last_reply, {now} \
         {source}"
    )
}

/// Records one event per recipient of `recipient_ids` (in that order), in the caller's
/// transaction, with one statement: of type `kind`, or of the recipient's new state when
/// `kind` is `None` (`sent`, `deferred`, `failed`, `suppressed`, ...). Call it after the
/// state change, in the same transaction: the event carries the state and reply the
/// recipient has then. Ids of recipients that do not exist are skipped. Returns how many
/// events were recorded.
pub(crate) fn insert_events(
    tx: &Transaction<'_>,
    recipient_ids: &[i64],
    kind: Option<EventType>,
    now: OffsetDateTime,
) -> Result<u64, StoreError> {
    if recipient_ids.is_empty() {
        return Ok(0);
    }
    let sql = insert_sql(
        "FROM json_each(?1) j JOIN recipients r ON r.id = j.value ORDER BY j.key",
        "?2",
        "?3",
    );
    let inserted = tx.prepare_cached(&sql)?.execute(params![
        json(&recipient_ids)?,
        kind.map(EventType::as_str),
        to_ms(now)
    ])?;
    Ok(inserted as u64)
}

/// Records the events of an enqueue: one per recipient of `message_ids` with a row id over
/// `after` (those this transaction inserted), `queued` or `suppressed` as stored.
pub(super) fn insert_enqueued(
    tx: &Transaction<'_>,
    message_ids: &[&str],
    after: i64,
    now: OffsetDateTime,
) -> Result<u64, StoreError> {
    if message_ids.is_empty() {
        return Ok(0);
    }
    let sql = insert_sql(
        "FROM recipients r WHERE r.message_id IN (SELECT value FROM json_each(?1)) AND r.id > ?2 \
         ORDER BY r.id",
        "NULL",
        "?3",
    );
    let inserted =
        tx.prepare_cached(&sql)?
            .execute(params![json(&message_ids)?, after, to_ms(now)])?;
    Ok(inserted as u64)
}

/// Records an `unsubscribed` event for `address` (already normalised), about
/// `message_id` when known (and its recipient row with that address, if any).
pub(super) fn insert_unsubscribed(
    tx: &Transaction<'_>,
    address: &str,
    message_id: Option<&str>,
    reply: &str,
    now: OffsetDateTime,
) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT INTO events (message_id, recipient_id, address, type, state, reply, created_at) \
         VALUES (?1, (SELECT id FROM recipients WHERE message_id = ?1 AND lower(address) = ?2 \
         ORDER BY id LIMIT 1), ?2, 'unsubscribed', NULL, ?3, ?4)",
    )?
    .execute(params![message_id, address, reply, to_ms(now)])?;
    Ok(())
}

fn event_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<RawEvent> {
    Ok(RawEvent {
        id: row.get(0)?,
        message_id: row.get(1)?,
        address: row.get(2)?,
        kind: row.get(3)?,
        state: row.get(4)?,
        reply: row.get(5)?,
        created_at: row.get(6)?,
    })
}

struct RawEvent {
    id: i64,
    message_id: Option<String>,
    address: String,
    kind: String,
    state: Option<String>,
    reply: Option<String>,
    created_at: i64,
}

impl RawEvent {
    fn build(self) -> Result<Event, StoreError> {
        Event::from_row(
            self.id,
            self.message_id,
            self.address,
            &self.kind,
            self.state,
            self.reply,
            self.created_at,
        )
    }
}

/// One page of events, oldest first.
pub(super) fn list(conn: &Connection, filter: &EventFilter) -> Result<EventPage, StoreError> {
    let after = filter.after()?;
    let limit = filter.page_size();
    let rows: Vec<RawEvent> = match filter.message_id.as_deref() {
        Some(message_id) => {
            check_id(message_id)?;
            conn.prepare_cached(&format!(
                "SELECT {EVENT_COLUMNS} FROM events WHERE message_id = ?1 AND id > ?2 \
                 ORDER BY id LIMIT ?3"
            ))?
            .query_map(params![message_id, after, limit + 1], event_row)?
            .collect::<Result<_, _>>()?
        }
        None => conn
            .prepare_cached(&format!(
                "SELECT {EVENT_COLUMNS} FROM events WHERE id > ?1 ORDER BY id LIMIT ?2"
            ))?
            .query_map(params![after, limit + 1], event_row)?
            .collect::<Result<_, _>>()?,
    };
    let items = rows
        .into_iter()
        .map(RawEvent::build)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(EventPage::from_rows(items, limit))
}

/// The deliveries of some events.
pub(super) fn deliveries(
    conn: &Connection,
    event_ids: &[i64],
) -> Result<Vec<EventDelivery>, StoreError> {
    let mut select = conn.prepare_cached(
        "SELECT event_id, webhook, attempts, last_status, last_error, next_attempt_at, delivered_at \
         FROM webhook_deliveries WHERE event_id IN (SELECT value FROM json_each(?1)) \
         ORDER BY event_id, webhook",
    )?;
    let rows = select.query_map([json(&event_ids)?], |row| {
        Ok(EventDelivery {
            event_id: row.get(0)?,
            webhook: row.get(1)?,
            attempts: u32::try_from(row.get::<_, i64>(2)?).unwrap_or(u32::MAX),
            last_status: row
                .get::<_, Option<i64>>(3)?
                .and_then(|s| u16::try_from(s).ok()),
            last_error: row.get(4)?,
            next_attempt_at: from_ms(row.get(5)?),
            delivered_at: row.get::<_, Option<i64>>(6)?.map(from_ms),
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Fans out up to `limit` undispatched events to the webhooks that want them.
pub(super) fn dispatch(
    tx: &Transaction<'_>,
    webhooks: &[WebhookRoute],
    now: OffsetDateTime,
    limit: usize,
) -> Result<u64, StoreError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let ids: Vec<i64> = tx
        .prepare_cached("SELECT id FROM events WHERE dispatched = 0 ORDER BY id LIMIT ?1")?
        .query_map([limit], |row| row.get(0))?
        .collect::<Result<_, _>>()?;
    if ids.is_empty() {
        return Ok(0);
    }
    let ids = json(&ids)?;
    for webhook in webhooks {
        let Some(types) = types_sql(&webhook.events) else {
            continue;
        };
        tx.prepare_cached(&format!(
            "INSERT INTO webhook_deliveries (webhook, event_id, next_attempt_at) \
             SELECT ?1, e.id, ?2 FROM json_each(?3) j JOIN events e ON e.id = j.value \
             WHERE e.type IN {types} ORDER BY e.id ON CONFLICT DO NOTHING"
        ))?
        .execute(params![webhook.webhook, to_ms(now), ids])?;
    }
    let dispatched = tx
        .prepare_cached(
            "UPDATE events SET dispatched = 1 WHERE id IN (SELECT value FROM json_each(?1))",
        )?
        .execute([ids])?;
    Ok(dispatched as u64)
}

/// Takes or renews a webhook's lock.
pub(super) fn lock(
    tx: &Transaction<'_>,
    webhook: &str,
    owner: &str,
    now: OffsetDateTime,
    until: OffsetDateTime,
) -> Result<bool, StoreError> {
    let held = tx
        .prepare_cached(
            "INSERT INTO webhook_locks (webhook, owner, until) VALUES (?1, ?2, ?4) \
             ON CONFLICT (webhook) DO UPDATE SET owner = excluded.owner, until = excluded.until \
             WHERE webhook_locks.owner = excluded.owner OR webhook_locks.until < ?3 \
             OR webhook_locks.owner NOT IN (SELECT owner FROM workers) \
             RETURNING owner",
        )?
        .query_row(params![webhook, owner, to_ms(now), to_ms(until)], |row| {
            row.get::<_, String>(0)
        })
        .optional()?;
    Ok(held.is_some())
}

/// The next due events of a webhook, in event order.
pub(super) fn batch(
    conn: &Connection,
    webhook: &str,
    now: OffsetDateTime,
    limit: usize,
) -> Result<WebhookBatch, StoreError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut select = conn.prepare_cached(&crate::events::batch_sql("?1", "?2"))?;
    let rows: Vec<(RawEvent, i64, i64)> = select
        .query_map(params![webhook, limit], |row| {
            Ok((event_row(row)?, row.get(7)?, row.get(8)?))
        })?
        .collect::<Result<_, _>>()?;
    WebhookBatch::due_prefix(rows, now, RawEvent::build)
}

/// Records one request's result for its events.
pub(super) fn result(
    tx: &Transaction<'_>,
    webhook: &str,
    event_ids: &[i64],
    result: &WebhookResult,
    now: OffsetDateTime,
) -> Result<(), StoreError> {
    let ids = json(&event_ids)?;
    match result {
        WebhookResult::Delivered { status } => {
            tx.prepare_cached(
                "UPDATE webhook_deliveries SET attempts = attempts + 1, last_status = ?3, \
                 last_error = NULL, delivered_at = ?4 \
                 WHERE webhook = ?1 AND event_id IN (SELECT value FROM json_each(?2)) \
                 AND delivered_at IS NULL",
            )?
            .execute(params![webhook, ids, i64::from(*status), to_ms(now)])?;
        }
        WebhookResult::Failed {
            status,
            error,
            next_attempt_at,
        } => {
            tx.prepare_cached(
                "UPDATE webhook_deliveries SET attempts = attempts + 1, last_status = ?3, \
                 last_error = ?4, next_attempt_at = ?5 \
                 WHERE webhook = ?1 AND event_id IN (SELECT value FROM json_each(?2)) \
                 AND delivered_at IS NULL",
            )?
            .execute(params![
                webhook,
                ids,
                status.map(i64::from),
                without_nul(error),
                to_ms(*next_attempt_at)
            ])?;
        }
    }
    Ok(())
}

/// Undelivered deliveries per webhook.
pub(super) fn backlog(conn: &Connection) -> Result<Vec<WebhookBacklog>, StoreError> {
    let mut select = conn.prepare_cached(
        "SELECT webhook, count(*), sum(attempts > 0) FROM webhook_deliveries \
         WHERE delivered_at IS NULL GROUP BY webhook ORDER BY webhook",
    )?;
    let rows = select.query_map([], |row| {
        Ok(WebhookBacklog {
            webhook: row.get(0)?,
            pending: row.get::<_, i64>(1)?.max(0) as u64,
            failing: row.get::<_, Option<i64>>(2)?.unwrap_or(0).max(0) as u64,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Deletes old events no webhook waits for.
pub(super) fn prune(
    tx: &Transaction<'_>,
    before: OffsetDateTime,
    limit: usize,
) -> Result<u64, StoreError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    // Ids grow with time: the old events are the ones before the first young one, so the
    // walk stops there instead of reading the whole log.
    let ids: Vec<i64> = tx
        .prepare_cached(
            "SELECT e.id FROM events e WHERE e.id < COALESCE( \
               (SELECT id FROM events WHERE created_at >= ?1 ORDER BY id LIMIT 1), \
               (SELECT MAX(id) + 1 FROM events)) \
             AND e.created_at < ?1 AND e.dispatched = 1 \
             AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d \
               WHERE d.event_id = e.id AND d.delivered_at IS NULL) \
             ORDER BY e.id LIMIT ?2",
        )?
        .query_map(params![to_ms(before), limit], |row| row.get(0))?
        .collect::<Result<_, _>>()?;
    if ids.is_empty() {
        return Ok(0);
    }
    let ids = json(&ids)?;
    tx.prepare_cached(
        "DELETE FROM webhook_deliveries WHERE event_id IN (SELECT value FROM json_each(?1))",
    )?
    .execute([&ids])?;
    let deleted = tx
        .prepare_cached("DELETE FROM events WHERE id IN (SELECT value FROM json_each(?1))")?
        .execute([&ids])?;
    Ok(deleted as u64)
}
