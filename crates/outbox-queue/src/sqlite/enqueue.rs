//! SQLite statements of the producers: enqueue and adding recipients. Each function runs inside the caller's `BEGIN IMMEDIATE` transaction.

use rusqlite::{OptionalExtension, Transaction, params};

use crate::StoreError;
use crate::idempotency::KeyColumns;
use crate::model::{Enqueued, NewRecipient, RequestKey};
use crate::prepare::{PreparedMessage, PreparedRecipient, prepare_recipients};
use crate::schema::refresh_status_sql;

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
        "INSERT INTO messages (id, created_at, send_at, priority, envelope_from, subject, size, \
         tokens, relay, idempotency_key, status, recipient_count, idempotency_scope, request_hash, \
         idempotency_index) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, 'queued', ?11, ?12, ?13, ?14)",
    )?;
    let mut insert_body =
        tx.prepare_cached("INSERT INTO bodies (message_id, data) VALUES (?1, ?2)")?;
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
            message.tokens,
            message.relay,
            key.key,
            message.recipients.len() as i64,
            key.scope,
            key.hash,
            key.index,
        ])?;
        insert_body.execute(params![message.id, message.data])?;
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
