//! PostgreSQL statements on the delivery path: enqueue, claim, renew, release, complete.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use deadpool_postgres::{Client, Transaction};
use time::OffsetDateTime;

use super::listen::CHANNEL;
use crate::StoreError;
use crate::idempotency::KeyColumns;
use crate::model::{Claimed, Enqueued, NewRecipient, Outcome, RequestKey, RouteFilter};
use crate::prepare::{PreparedMessage, PreparedRecipient, prepare_recipients, reply_code};
use crate::rows::{MessageInfo, RawClaim, group};
use crate::schema::{ACTIVE_STATES, refresh_status_sql};
use crate::timefmt::{duration_ms, to_ms};

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
            "INSERT INTO messages (id, created_at, send_at, priority, envelope_from, subject, size, data, \
             tokens, relay, idempotency_key, status, recipient_count, idempotency_scope, \
             request_hash, idempotency_index) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 'queued', $12, $13, $14, $15) \
             ON CONFLICT (idempotency_scope, idempotency_key, idempotency_index) \
             WHERE idempotency_key IS NOT NULL DO NOTHING RETURNING id",
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

/// Leases due recipients (skipping rows other workers are claiming) and groups them.
pub(super) async fn claim(
    client: &mut Client,
    owner: &str,
    route: Option<&RouteFilter>,
    now: OffsetDateTime,
    lease: Duration,
    limit: usize,
) -> Result<Vec<Claimed>, StoreError> {
    let route_condition = match route {
        None => "",
        Some(RouteFilter::Key(_)) => "AND route = $5",
        Some(RouteFilter::AnyMx) => "AND route >= 'mx:' AND route < 'mx;'",
    };
    let sql = format!(
        "UPDATE recipients r SET state = 'sending', lease_owner = $3, next_attempt_at = $4 \
         FROM (SELECT id FROM recipients WHERE state IN {ACTIVE_STATES} AND next_attempt_at <= $1 \
               {route_condition} ORDER BY priority, message_id, id LIMIT $2 FOR UPDATE SKIP LOCKED) due \
         WHERE r.id = due.id \
         RETURNING r.id, r.message_id, r.address, r.domain, r.route, r.attempts, r.merge, r.priority"
    );
    let now_ms = to_ms(now);
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let until = now_ms.saturating_add(duration_ms(lease));
    let tx = client.transaction().await?;
    let statement = tx.prepare_cached(&sql).await?;
    let rows = match route {
        Some(RouteFilter::Key(key)) => {
            tx.query(
                &statement,
                &[&now_ms, &limit, &owner, &until, &key.to_key()],
            )
            .await?
        }
        _ => {
            tx.query(&statement, &[&now_ms, &limit, &owner, &until])
                .await?
        }
    };
    let mut raw: Vec<RawClaim> = rows
        .iter()
        .map(|row| RawClaim {
            id: row.get(0),
            message_id: row.get(1),
            address: row.get(2),
            domain: row.get(3),
            route: row.get(4),
            attempts: row.get(5),
            merge: row.get(6),
            priority: row.get(7),
        })
        .collect();
    raw.sort_by(|a, b| (a.priority, &a.message_id, a.id).cmp(&(b.priority, &b.message_id, b.id)));
    let ids: Vec<&str> = raw
        .iter()
        .map(|r| r.message_id.as_str())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut infos: HashMap<String, MessageInfo> = tx
        .query(
            "SELECT id, envelope_from, relay, size, tokens IS NOT NULL FROM messages WHERE id = ANY($1)",
            &[&ids],
        )
        .await?
        .iter()
        .map(|row| {
            (
                row.get(0),
                MessageInfo {
                    envelope_from: row.get(1),
                    relay: row.get(2),
                    size: row.get(3),
                    has_tokens: row.get(4),
                },
            )
        })
        .collect();
    tx.commit().await?;
    group(raw, |message_id| {
        infos.remove(message_id).ok_or_else(|| StoreError::Corrupt {
            what: "recipient",
            detail: format!("recipient of missing message {message_id}"),
        })
    })
}

/// Extends leases still held by `owner`.
pub(super) async fn renew(
    client: &Client,
    owner: &str,
    ids: &[i64],
    now: OffsetDateTime,
    lease: Duration,
) -> Result<u64, StoreError> {
    let until = to_ms(now).saturating_add(duration_ms(lease));
    Ok(client
        .execute(
            "UPDATE recipients SET next_attempt_at = $3 WHERE id = ANY($1) AND lease_owner = $2 AND state = 'sending'",
            &[&ids, &owner, &until],
        )
        .await?)
}

/// Gives leases back without an attempt.
pub(super) async fn release(
    client: &Client,
    owner: &str,
    ids: &[i64],
    now: OffsetDateTime,
) -> Result<u64, StoreError> {
    Ok(client
        .execute(
            "UPDATE recipients SET state = CASE WHEN attempts > 0 THEN 'deferred' ELSE 'queued' END, \
             lease_owner = NULL, next_attempt_at = $3 \
             WHERE id = ANY($1) AND lease_owner = $2 AND state = 'sending'",
            &[&ids, &owner, &to_ms(now)],
        )
        .await?)
}

/// Records outcomes of recipients still leased by `owner`, in one transaction.
pub(super) async fn complete(
    client: &mut Client,
    owner: &str,
    outcomes: Vec<Outcome>,
) -> Result<u64, StoreError> {
    let ids: Vec<i64> = outcomes.iter().map(|o| o.recipient_id).collect();
    let states: Vec<&str> = outcomes
        .iter()
        .map(|o| o.delivery.state().as_str())
        .collect();
    let replies: Vec<&str> = outcomes.iter().map(|o| o.delivery.reply()).collect();
    let next: Vec<Option<i64>> = outcomes
        .iter()
        .map(|o| o.delivery.next_attempt_at().map(to_ms))
        .collect();
    let tx = client.transaction().await?;
    let updated = tx
        .query(
            "UPDATE recipients r SET state = u.state, attempts = r.attempts + 1, last_reply = u.reply, \
             next_attempt_at = COALESCE(u.next, r.next_attempt_at), lease_owner = NULL \
             FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::bigint[]) AS u (id, state, reply, next) \
             WHERE r.id = u.id AND r.lease_owner = $5 AND r.state = 'sending' \
             RETURNING r.id, r.message_id",
            &[&ids, &states, &replies, &next, &owner],
        )
        .await?;
    let message_of: HashMap<i64, String> =
        updated.iter().map(|row| (row.get(0), row.get(1))).collect();
    let mut log_message = Vec::new();
    let mut log_recipient = Vec::new();
    let mut log_at = Vec::new();
    let mut log_host = Vec::new();
    let mut log_code = Vec::new();
    let mut log_reply = Vec::new();
    let mut log_outcome = Vec::new();
    let mut log_duration = Vec::new();
    for outcome in &outcomes {
        let Some(message_id) = message_of.get(&outcome.recipient_id) else {
            continue;
        };
        log_message.push(message_id.as_str());
        log_recipient.push(outcome.recipient_id);
        log_at.push(to_ms(outcome.at));
        log_host.push(outcome.host.as_deref());
        log_code.push(reply_code(outcome.delivery.reply()).map(i64::from));
        log_reply.push(outcome.delivery.reply());
        log_outcome.push(outcome.delivery.state().as_str());
        log_duration.push(duration_ms(outcome.duration));
    }
    tx.execute(
        "INSERT INTO attempts (message_id, recipient_id, at, host, code, reply, outcome, duration_ms) \
         SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::bigint[], $4::text[], $5::bigint[], \
                              $6::text[], $7::text[], $8::bigint[])",
        &[
            &log_message,
            &log_recipient,
            &log_at,
            &log_host,
            &log_code,
            &log_reply,
            &log_outcome,
            &log_duration,
        ],
    )
    .await?;
    let touched: BTreeSet<&str> = message_of.values().map(String::as_str).collect();
    let refresh = tx.prepare_cached(&refresh_status_sql("$1")).await?;
    for message_id in touched {
        tx.execute(&refresh, &[&message_id]).await?;
    }
    tx.commit().await?;
    Ok(message_of.len() as u64)
}
