//! SQLite statements of the producers: enqueue and adding recipients. Each function runs inside the caller's `BEGIN IMMEDIATE` transaction.

use std::collections::HashMap;

use rusqlite::{OptionalExtension, ToSql, Transaction, params, params_from_iter};

use crate::StoreError;
use crate::idempotency::KeyColumns;
use crate::model::{Enqueued, NewRecipient, RequestKey};
use crate::prepare::{PreparedMessage, PreparedRecipient, prepare_recipients};
use crate::schema::refresh_status_sql;

/// Rows per multi-row `INSERT`: one statement execution stores this many rows, which
/// saves most of SQLite's per-statement work (reset, bind, VDBE start) on a big batch.
/// 32 messages x 16 columns stays far under SQLite's limit of bound variables.
const CHUNK: usize = 32;

/// Inserts prepared messages; a known idempotency key (in its scope, at its place in the
/// request) yields the first id instead, or a conflict when it came with another request.
/// With `request`, message `i` carries its key at place `i`; without, each message's own
/// `idempotency_key` counts, in the empty scope. The new rows go in multi-row `INSERT`s
/// of [`CHUNK`] rows each.
pub(super) fn insert_messages(
    tx: &Transaction<'_>,
    messages: Vec<PreparedMessage>,
    request: Option<&RequestKey>,
) -> Result<Vec<Enqueued>, StoreError> {
    let mut enqueued = Vec::with_capacity(messages.len());
    let mut new = Vec::with_capacity(messages.len());
    // Keys inserted by this batch, so that a key repeated inside it is known as well.
    let mut batch_keys: HashMap<(&str, &str, i64), &str> = HashMap::new();
    {
        let mut find_key = tx.prepare_cached(
            "SELECT id, request_hash FROM messages \
             WHERE idempotency_scope = ?1 AND idempotency_key = ?2 AND idempotency_index = ?3",
        )?;
        for (index, message) in messages.iter().enumerate() {
            let key = KeyColumns::of(request, message, index);
            if let Some(name) = key.key {
                if let Some(id) = batch_keys.get(&(key.scope, name, key.index)) {
                    // Same scope, key and place in the same batch: the same request.
                    enqueued.push(Enqueued {
                        id: (*id).to_string(),
                        existing: true,
                    });
                    continue;
                }
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
                batch_keys.insert((key.scope, name, key.index), &message.id);
            }
            new.push((index, message, key));
            enqueued.push(Enqueued {
                id: message.id.clone(),
                existing: false,
            });
        }
    }
    let last_id = super::suppress::last_recipient_id(tx)?;
    for chunk in in_chunks(&new) {
        insert_message_rows(tx, chunk)?;
    }
    let recipients: Vec<RecipientRow<'_>> = new
        .iter()
        .flat_map(|(_, m, _)| {
            m.recipients.iter().map(move |recipient| RecipientRow {
                message_id: &m.id,
                priority: m.priority,
                due: m.send_at,
                recipient,
            })
        })
        .collect();
    for chunk in in_chunks(&recipients) {
        insert_recipient_rows(tx, chunk)?;
    }
    if !new.is_empty() {
        let ids: Vec<&str> = new.iter().map(|(_, m, _)| m.id.as_str()).collect();
        super::suppress::mark_new(tx, &ids, last_id)?;
        super::events::insert_enqueued(tx, &ids, last_id, time::OffsetDateTime::now_utc())?;
    }
    Ok(enqueued)
}

/// `rows` cut into slices of [`CHUNK`] rows, then of one row each for the rest: two
/// statement shapes per table, so the prepared-statement cache keeps them all.
fn in_chunks<T>(rows: &[T]) -> impl Iterator<Item = &[T]> {
    let full = rows.chunks_exact(CHUNK);
    let rest = full.remainder().chunks(1);
    full.chain(rest)
}

/// A recipient row to insert.
struct RecipientRow<'a> {
    message_id: &'a str,
    priority: i64,
    due: i64,
    recipient: &'a PreparedRecipient,
}

/// The SQL of an `INSERT` of `rows` rows, each `row` (a parenthesised list of values).
fn multi_row_insert(head: &str, row: &str, rows: usize) -> String {
    let mut sql = String::with_capacity(head.len() + rows * (row.len() + 1));
    sql.push_str(head);
    for i in 0..rows {
        if i > 0 {
            sql.push(',');
        }
        sql.push_str(row);
    }
    sql
}

/// Inserts the `messages` and `bodies` rows of a slice of new messages, one statement each.
fn insert_message_rows(
    tx: &Transaction<'_>,
    chunk: &[(usize, &PreparedMessage, KeyColumns<'_>)],
) -> Result<(), StoreError> {
    let messages = multi_row_insert(
        "INSERT INTO messages (id, created_at, send_at, priority, envelope_from, subject, size, \
         tokens, relay, idempotency_key, status, recipient_count, idempotency_scope, request_hash, \
         idempotency_index, list, list_unsubscribe, header_message_id) VALUES ",
        "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'queued', ?, ?, ?, ?, ?, ?, ?)",
        chunk.len(),
    );
    let bodies = multi_row_insert(
        "INSERT INTO bodies (message_id, data) VALUES ",
        "(?, ?)",
        chunk.len(),
    );
    let sizes: Vec<i64> = chunk.iter().map(|(_, m, _)| m.data.len() as i64).collect();
    let counts: Vec<i64> = chunk
        .iter()
        .map(|(_, m, _)| m.recipients.len() as i64)
        .collect();
    let mut values: Vec<&dyn ToSql> = Vec::with_capacity(chunk.len() * 17);
    for (i, (_, m, key)) in chunk.iter().enumerate() {
        values.extend_from_slice(&[
            &m.id as &dyn ToSql,
            &m.created_at,
            &m.send_at,
            &m.priority,
            &m.envelope_from,
            &m.subject,
            &sizes[i],
            &m.tokens,
            &m.relay,
            &key.key,
            &counts[i],
            &key.scope,
            &key.hash,
            &key.index,
            &m.list,
            &m.list_unsubscribe,
            &m.header_message_id,
        ]);
    }
    tx.prepare_cached(&messages)?
        .execute(params_from_iter(values))?;
    let mut values: Vec<&dyn ToSql> = Vec::with_capacity(chunk.len() * 2);
    for (_, m, _) in chunk {
        values.extend_from_slice(&[&m.id as &dyn ToSql, &m.data]);
    }
    tx.prepare_cached(&bodies)?
        .execute(params_from_iter(values))?;
    Ok(())
}

/// Inserts a slice of recipient rows in one statement.
fn insert_recipient_rows(
    tx: &Transaction<'_>,
    chunk: &[RecipientRow<'_>],
) -> Result<(), StoreError> {
    let sql = multi_row_insert(
        "INSERT INTO recipients (message_id, address, domain, route, priority, state, \
         next_attempt_at, merge) VALUES ",
        "(?, ?, ?, ?, ?, 'queued', ?, ?)",
        chunk.len(),
    );
    let mut values: Vec<&dyn ToSql> = Vec::with_capacity(chunk.len() * 7);
    for row in chunk {
        let r = row.recipient;
        values.extend_from_slice(&[
            &row.message_id as &dyn ToSql,
            &r.address,
            &r.domain,
            &r.route,
            &row.priority,
            &row.due,
            &r.merge,
        ]);
    }
    tx.prepare_cached(&sql)?.execute(params_from_iter(values))?;
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
    let last_id = super::suppress::last_recipient_id(tx)?;
    let rows: Vec<RecipientRow<'_>> = prepared
        .iter()
        .map(|recipient| RecipientRow {
            message_id,
            priority,
            due: send_at,
            recipient,
        })
        .collect();
    for chunk in in_chunks(&rows) {
        insert_recipient_rows(tx, chunk)?;
    }
    super::suppress::mark_new(tx, &[message_id], last_id)?;
    super::events::insert_enqueued(tx, &[message_id], last_id, time::OffsetDateTime::now_utc())?;
    tx.execute(
        "UPDATE messages SET recipient_count = recipient_count + ?2 WHERE id = ?1",
        params![message_id, prepared.len() as i64],
    )?;
    tx.execute(&refresh_status_sql("?1"), [message_id])?;
    Ok(prepared.len() as u64)
}
