//! SQLite statements on the delivery path: enqueue, claim, renew, release, complete.
//! Each function runs inside the caller's `BEGIN IMMEDIATE` transaction.

use std::collections::BTreeSet;
use std::time::Duration;

use rusqlite::{OptionalExtension, Transaction, params};
use time::OffsetDateTime;

use crate::StoreError;
use crate::idempotency::KeyColumns;
use crate::model::{Claimed, Enqueued, NewRecipient, Outcome, RequestKey, RouteFilter};
use crate::prepare::{PreparedMessage, PreparedRecipient, prepare_recipients, reply_code};
use crate::rows::{MessageInfo, RawClaim, group};
use crate::schema::{ACTIVE_STATES, refresh_status_sql};
use crate::timefmt::{duration_ms, to_ms};

/// Inserts prepared messages; a known idempotency key (in its scope, at its place in the
/// request) yields the first id instead, or a conflict when it came with another request.
/// With `request`, message `i` carries its key at place `i`; without, each message's own
/// `idempotency_key` counts, in the empty scope.
pub(super) fn insert_messages(
    tx: &Transaction<'_>,
    messages: Vec<PreparedMessage>,
    request: Option<&RequestKey>,
) -> Result<Vec<Enqueued>, StoreError> {
    let mut find_key = tx.prepare_cached(
        "SELECT id, request_hash FROM messages \
         WHERE idempotency_scope = ?1 AND idempotency_key = ?2 AND idempotency_index = ?3",
    )?;
    let mut insert = tx.prepare_cached(
        "INSERT INTO messages (id, created_at, send_at, priority, envelope_from, subject, size, data, \
         tokens, relay, idempotency_key, status, recipient_count, idempotency_scope, request_hash, \
         idempotency_index) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, 'queued', ?12, ?13, ?14, ?15)",
    )?;
    let mut enqueued = Vec::with_capacity(messages.len());
    for (index, message) in messages.into_iter().enumerate() {
        let key = KeyColumns::of(request, &message, index);
        if let Some(name) = key.key {
            let existing: Option<(String, Option<String>)> = find_key
                .query_row(params![key.scope, name, key.index], |row| {
                    Ok((row.get(0)?, row.get(1)?))
                })
                .optional()?;
            if let Some((id, hash)) = existing {
                if hash.as_deref() != key.hash {
                    return Err(StoreError::IdempotencyConflict {
                        key: name.to_string(),
                    });
                }
                enqueued.push(Enqueued { id, existing: true });
                continue;
            }
        }
        insert.execute(params![
            message.id,
            message.created_at,
            message.send_at,
            message.priority,
            message.envelope_from,
            message.subject,
            message.data.len() as i64,
            message.data,
            message.tokens,
            message.relay,
            key.key,
            message.recipients.len() as i64,
            key.scope,
            key.hash,
            key.index,
        ])?;
        insert_recipients(
            tx,
            &message.id,
            message.priority,
            message.send_at,
            &message.recipients,
        )?;
        enqueued.push(Enqueued {
            id: message.id,
            existing: false,
        });
    }
    Ok(enqueued)
}

fn insert_recipients(
    tx: &Transaction<'_>,
    message_id: &str,
    priority: i64,
    due: i64,
    recipients: &[PreparedRecipient],
) -> Result<(), StoreError> {
    let mut insert = tx.prepare_cached(
        "INSERT INTO recipients (message_id, address, domain, route, priority, state, next_attempt_at, merge) \
         VALUES (?1, ?2, ?3, ?4, ?5, 'queued', ?6, ?7)",
    )?;
    for r in recipients {
        insert.execute(params![
            message_id, r.address, r.domain, r.route, priority, due, r.merge
        ])?;
    }
    Ok(())
}

/// Adds recipients to an existing message.
pub(super) fn add_recipients(
    tx: &Transaction<'_>,
    message_id: &str,
    recipients: Vec<NewRecipient>,
) -> Result<u64, StoreError> {
    let (relay, priority, send_at): (Option<String>, i64, i64) = tx
        .query_row(
            "SELECT relay, priority, send_at FROM messages WHERE id = ?1",
            [message_id],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
        )
        .optional()?
        .ok_or_else(|| StoreError::NotFound {
            id: message_id.to_string(),
        })?;
    let prepared = prepare_recipients(relay.as_deref(), recipients)?;
    insert_recipients(tx, message_id, priority, send_at, &prepared)?;
    tx.execute(
        "UPDATE messages SET recipient_count = recipient_count + ?2 WHERE id = ?1",
        params![message_id, prepared.len() as i64],
    )?;
    tx.execute(&refresh_status_sql("?1"), [message_id])?;
    Ok(prepared.len() as u64)
}

/// Leases due recipients and groups them into work units.
pub(super) fn claim(
    tx: &Transaction<'_>,
    owner: &str,
    route: Option<&RouteFilter>,
    now: OffsetDateTime,
    lease: Duration,
    limit: usize,
) -> Result<Vec<Claimed>, StoreError> {
    let route_condition = match route {
        None => "",
        Some(RouteFilter::Key(_)) => "AND r.route = ?3",
        // Every `mx:` key sorts between "mx:" and "mx;" (';' follows ':'). The unary `+`
        // keeps SQLite off the route index here: a range on it would make the planner
        // sort every due recipient for each claim (a temp B-tree; 0.4 s per claim with a
        // million queued), where walking recipients_due in order stops after `limit`.
        Some(RouteFilter::AnyMx) => "AND +r.route >= 'mx:' AND +r.route < 'mx;'",
    };
    let sql = format!(
        "SELECT r.id, r.message_id, r.address, r.domain, r.route, r.attempts, r.merge, r.priority \
         FROM recipients r WHERE r.state IN {ACTIVE_STATES} AND r.next_attempt_at <= ?1 {route_condition} \
         ORDER BY r.priority, r.message_id, r.id LIMIT ?2"
    );
    let mut select = tx.prepare_cached(&sql)?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let map_row = |row: &rusqlite::Row<'_>| {
        Ok(RawClaim {
            id: row.get(0)?,
            message_id: row.get(1)?,
            address: row.get(2)?,
            domain: row.get(3)?,
            route: row.get(4)?,
            attempts: row.get(5)?,
            merge: row.get(6)?,
            priority: row.get(7)?,
        })
    };
    let rows: Vec<RawClaim> = match route {
        Some(RouteFilter::Key(key)) => select
            .query_map(params![to_ms(now), limit, key.to_key()], map_row)?
            .collect::<Result<_, _>>()?,
        _ => select
            .query_map(params![to_ms(now), limit], map_row)?
            .collect::<Result<_, _>>()?,
    };
    let lease_until = to_ms(now).saturating_add(duration_ms(lease));
    let mut lease_row = tx.prepare_cached(
        "UPDATE recipients SET state = 'sending', lease_owner = ?2, next_attempt_at = ?3 WHERE id = ?1",
    )?;
    for row in &rows {
        lease_row.execute(params![row.id, owner, lease_until])?;
    }
    let mut message_info = tx.prepare_cached(
        "SELECT envelope_from, relay, size, tokens IS NOT NULL FROM messages WHERE id = ?1",
    )?;
    group(rows, |message_id| {
        Ok(message_info.query_row([message_id], |row| {
            Ok(MessageInfo {
                envelope_from: row.get(0)?,
                relay: row.get(1)?,
                size: row.get(2)?,
                has_tokens: row.get(3)?,
            })
        })?)
    })
}

/// Extends leases still held by `owner`.
pub(super) fn renew(
    tx: &Transaction<'_>,
    owner: &str,
    ids: &[i64],
    now: OffsetDateTime,
    lease: Duration,
) -> Result<u64, StoreError> {
    let until = to_ms(now).saturating_add(duration_ms(lease));
    let mut update = tx.prepare_cached(
        "UPDATE recipients SET next_attempt_at = ?3 WHERE id = ?1 AND lease_owner = ?2 AND state = 'sending'",
    )?;
    let mut renewed = 0;
    for id in ids {
        renewed += update.execute(params![id, owner, until])? as u64;
    }
    Ok(renewed)
}

/// Gives leases back without an attempt.
pub(super) fn release(
    tx: &Transaction<'_>,
    owner: &str,
    ids: &[i64],
    now: OffsetDateTime,
) -> Result<u64, StoreError> {
    let mut update = tx.prepare_cached(
        "UPDATE recipients SET state = CASE WHEN attempts > 0 THEN 'deferred' ELSE 'queued' END, \
         lease_owner = NULL, next_attempt_at = ?3 \
         WHERE id = ?1 AND lease_owner = ?2 AND state = 'sending'",
    )?;
    let mut released = 0;
    for id in ids {
        released += update.execute(params![id, owner, to_ms(now)])? as u64;
    }
    Ok(released)
}

/// Records outcomes of recipients still leased by `owner`.
pub(super) fn complete(
    tx: &Transaction<'_>,
    owner: &str,
    outcomes: Vec<Outcome>,
) -> Result<u64, StoreError> {
    let mut update = tx.prepare_cached(
        "UPDATE recipients SET state = ?3, attempts = attempts + 1, last_reply = ?4, \
         next_attempt_at = COALESCE(?5, next_attempt_at), lease_owner = NULL \
         WHERE id = ?1 AND lease_owner = ?2 AND state = 'sending' RETURNING message_id",
    )?;
    let mut log = tx.prepare_cached(
        "INSERT INTO attempts (message_id, recipient_id, at, host, code, reply, outcome, duration_ms) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?;
    let mut touched = BTreeSet::new();
    let mut completed = 0;
    for outcome in outcomes {
        let reply = outcome.delivery.reply();
        let state = outcome.delivery.state().as_str();
        let message_id: Option<String> = update
            .query_row(
                params![
                    outcome.recipient_id,
                    owner,
                    state,
                    reply,
                    outcome.delivery.next_attempt_at().map(to_ms)
                ],
                |row| row.get(0),
            )
            .optional()?;
        let Some(message_id) = message_id else {
            continue;
        };
        log.execute(params![
            message_id,
            outcome.recipient_id,
            to_ms(outcome.at),
            outcome.host,
            reply_code(reply),
            reply,
            state,
            duration_ms(outcome.duration),
        ])?;
        touched.insert(message_id);
        completed += 1;
    }
    let mut refresh = tx.prepare_cached(&refresh_status_sql("?1"))?;
    for message_id in touched {
        refresh.execute([message_id])?;
    }
    Ok(completed)
}
