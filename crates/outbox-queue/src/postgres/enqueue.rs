//! PostgreSQL statements of the producers: enqueue and adding recipients.

use deadpool_postgres::{Client, Transaction};

use super::listen::CHANNEL;
use crate::StoreError;
use crate::idempotency::KeyColumns;
use crate::model::{Enqueued, NewRecipient, RequestKey};
use crate::prepare::{PreparedMessage, PreparedRecipient, prepare_recipients};
use crate::schema::refresh_status_sql;

/// Inserts prepared messages in one transaction; a known idempotency key yields the
/// first id instead.
/// With `request`, message `i` carries its key at place `i`; without, each message's own
/// `idempotency_key` counts, in the empty scope. A known key with another request hash is
/// a conflict.
pub(super) async fn insert_messages(
    client: &mut Client,
    messages: Vec<PreparedMessage>,
    request: Option<&RequestKey>,
) -> Result<Vec<Enqueued>, StoreError> {
    let tx = client.transaction().await?;
    let insert = tx
        .prepare_cached(
            "WITH m AS (INSERT INTO messages (id, created_at, send_at, priority, envelope_from, subject, \
             size, tokens, relay, idempotency_key, status, recipient_count, idempotency_scope, \
             request_hash, idempotency_index) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $9, $10, $11, 'queued', $12, $13, $14, $15) \
             ON CONFLICT (idempotency_scope, idempotency_key, idempotency_index) \
             WHERE idempotency_key IS NOT NULL DO NOTHING RETURNING id), \
             b AS (INSERT INTO bodies (message_id, data) SELECT id, $8 FROM m) \
             SELECT id FROM m",
        )
        .await?;
    let mut enqueued = Vec::with_capacity(messages.len());
    for (index, message) in messages.into_iter().enumerate() {
        let key = KeyColumns::of(request, &message, index);
        let size = message.data.len() as i64;
        let count = message.recipients.len() as i64;
        let inserted = tx
            .query_opt(
                &insert,
                &[
                    &message.id,
                    &message.created_at,
                    &message.send_at,
                    &message.priority,
                    &message.envelope_from,
                    &message.subject,
                    &size,
                    &message.data,
                    &message.tokens,
                    &message.relay,
                    &key.key,
                    &count,
                    &key.scope,
                    &key.hash,
                    &key.index,
                ],
            )
            .await?;
        if inserted.is_none() {
            // Only a known key makes the insert do nothing: the first message's row.
            let row = tx
                .query_one(
                    "SELECT id, request_hash FROM messages \
                     WHERE idempotency_scope = $1 AND idempotency_key = $2 AND idempotency_index = $3",
                    &[&key.scope, &key.key, &key.index],
                )
                .await?;
            let hash: Option<String> = row.get(1);
            if hash.as_deref() != key.hash {
                return Err(StoreError::IdempotencyConflict {
                    key: key.key.unwrap_or_default().to_string(),
                });
            }
            enqueued.push(Enqueued {
                id: row.get(0),
                existing: true,
            });
            continue;
        }
        insert_recipients(
            &tx,
            &message.id,
            message.priority,
            message.send_at,
            &message.recipients,
        )
        .await?;
        enqueued.push(Enqueued {
            id: message.id,
            existing: false,
        });
    }
    // One notification per transaction, delivered on commit: a batch of 100 000 wakes
    // the engines once, not 100 000 times.
    if let Some(first) = enqueued.iter().find(|e| !e.existing) {
        tx.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &first.id])
            .await?;
    }
    tx.commit().await?;
    Ok(enqueued)
}

async fn insert_recipients(
    tx: &Transaction<'_>,
    message_id: &str,
    priority: i64,
    due: i64,
    recipients: &[PreparedRecipient],
) -> Result<(), StoreError> {
    let addresses: Vec<&str> = recipients.iter().map(|r| r.address.as_str()).collect();
    let domains: Vec<&str> = recipients.iter().map(|r| r.domain.as_str()).collect();
    let routes: Vec<&str> = recipients.iter().map(|r| r.route.as_str()).collect();
    let merges: Vec<Option<&str>> = recipients.iter().map(|r| r.merge.as_deref()).collect();
    let insert = tx
        .prepare_cached(
            "INSERT INTO recipients (message_id, address, domain, route, priority, state, next_attempt_at, merge) \
             SELECT $1, a, d, r, $2, 'queued', $3, m \
             FROM UNNEST($4::text[], $5::text[], $6::text[], $7::text[]) AS u (a, d, r, m)",
        )
        .await?;
    tx.execute(
        &insert,
        &[
            &message_id,
            &priority,
            &due,
            &addresses,
            &domains,
            &routes,
            &merges,
        ],
    )
    .await?;
    Ok(())
}

/// Adds recipients to an existing message in one transaction.
pub(super) async fn add_recipients(
    client: &mut Client,
    message_id: &str,
    recipients: Vec<NewRecipient>,
) -> Result<u64, StoreError> {
    let tx = client.transaction().await?;
    let row = tx
        .query_opt(
            "SELECT relay, priority, send_at FROM messages WHERE id = $1 FOR UPDATE",
            &[&message_id],
        )
        .await?
        .ok_or_else(|| StoreError::NotFound {
            id: message_id.to_string(),
        })?;
    let relay: Option<String> = row.get(0);
    let prepared = prepare_recipients(relay.as_deref(), recipients)?;
    insert_recipients(&tx, message_id, row.get(1), row.get(2), &prepared).await?;
    let added = prepared.len() as i64;
    tx.execute(
        "UPDATE messages SET recipient_count = recipient_count + $2 WHERE id = $1",
        &[&message_id, &added],
    )
    .await?;
    tx.execute(&refresh_status_sql("$1"), &[&message_id])
        .await?;
    tx.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &message_id])
        .await?;
    tx.commit().await?;
    Ok(added as u64)
}
