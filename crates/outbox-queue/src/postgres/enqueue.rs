//! PostgreSQL statements of the producers: enqueue and adding recipients.

use deadpool_postgres::Client;

use crate::StoreError;
use crate::idempotency::KeyColumns;
use crate::model::{Enqueued, NewRecipient, RequestKey};
use crate::prepare::{PreparedMessage, PreparedRecipient, prepare_recipients};
use crate::schema::refresh_status_sql;

/// Inserts prepared messages inside the caller's transaction (open on `tx`) with a constant number of
/// statements, whatever the batch size: the rows of every message, body and recipient go
/// as arrays into one statement (`UNNEST`); only when some message carried a known
/// idempotency key does a second statement read the first ids. A known key yields the
/// first id instead (`existing = true`).
/// With `request`, message `i` carries its key at place `i`; without, each message's own
/// `idempotency_key` counts, in the empty scope. A known key with another request hash is
/// a conflict; the caller then rolls back what this call inserted.
pub(super) async fn insert_messages(
    tx: &Client,
    messages: Vec<PreparedMessage>,
    request: Option<&RequestKey>,
) -> Result<Vec<Enqueued>, StoreError> {
    if messages.is_empty() {
        return Ok(Vec::new());
    }
    let insert = tx.prepare_cached(&insert_messages_sql()).await?;
    let columns = Columns::of(&messages, request);
    let inserted = tx.query(&insert, &columns.params()).await?;
    // Messages with recipients suppressed at insert: their status is recomputed (a
    // message whose every recipient is suppressed ends `error` at once).
    let with_suppressed: Vec<String> = inserted
        .iter()
        .filter(|row| row.get::<_, bool>(1))
        .map(|row| row.get::<_, String>(0))
        .collect();
    super::suppress::refresh(tx, &with_suppressed).await?;
    let inserted: std::collections::HashSet<String> =
        inserted.iter().map(|row| row.get::<_, String>(0)).collect();
    let mut enqueued: Vec<Enqueued> = messages
        .iter()
        .map(|m| Enqueued {
            id: m.id.clone(),
            existing: !inserted.contains(&m.id),
        })
        .collect();
    if inserted.len() < messages.len() {
        resolve_known_keys(tx, &messages, request, &mut enqueued).await?;
    }
    Ok(enqueued)
}

/// Replaces the ids of the messages that were not inserted (only a known key makes the
/// insert skip a row) with the first message's, in one statement; a known key that came
/// with another request hash is a conflict.
async fn resolve_known_keys(
    tx: &Client,
    messages: &[PreparedMessage],
    request: Option<&RequestKey>,
    enqueued: &mut [Enqueued],
) -> Result<(), StoreError> {
    let mut places = Vec::new();
    let mut scopes = Vec::new();
    let mut keys = Vec::new();
    let mut indexes = Vec::new();
    for (place, message) in messages.iter().enumerate() {
        if !enqueued[place].existing {
            continue;
        }
        let key = KeyColumns::of(request, message, place);
        places.push(place as i64);
        scopes.push(key.scope);
        keys.push(key.key.unwrap_or_default());
        indexes.push(key.index);
    }
    let rows = tx
        .query(
            "SELECT u.place, m.id, m.request_hash \
             FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::bigint[]) AS u (place, s, k, i) \
             JOIN messages m ON m.idempotency_scope = u.s AND m.idempotency_key = u.k \
               AND m.idempotency_index = u.i",
            &[&places, &scopes, &keys, &indexes],
        )
        .await?;
    let mut found = 0;
    for row in rows {
        let place = usize::try_from(row.get::<_, i64>(0)).unwrap_or(usize::MAX);
        let hash: Option<String> = row.get(2);
        let key = KeyColumns::of(request, &messages[place], place);
        if hash.as_deref() != key.hash {
            return Err(StoreError::IdempotencyConflict {
                key: key.key.unwrap_or_default().to_string(),
            });
        }
        enqueued[place].id = row.get(1);
        found += 1;
    }
    if found != places.len() {
        // A key known at insert time whose row is gone now: removed by another
        // transaction in between. Nothing of this batch is committed; the caller may retry.
        return Err(StoreError::Worker(format!(
            "{} message(s) with a known idempotency key vanished during the enqueue; nothing was stored",
            places.len() - found
        )));
    }
    Ok(())
}

/// One statement for a whole batch: the messages that are new (`ON CONFLICT DO NOTHING`
/// skips a known key), their bodies, and their recipients, which are kept in the order
/// given (their ids follow it), and one event per recipient (`queued` or `suppressed`).
/// Returns the ids inserted.
fn insert_messages_sql() -> String {
    "WITH input AS ( \
       SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::bigint[], $4::bigint[], $5::text[], \
         $6::text[], $7::bigint[], $8::bytea[], $9::text[], $10::text[], $11::text[], $12::bigint[], \
         $13::text[], $14::text[], $15::bigint[], $21::text[], $22::bigint[], $23::text[]) \
         AS u (id, created_at, send_at, priority, envelope_from, subject, size, data, tokens, \
           relay, idempotency_key, recipient_count, idempotency_scope, request_hash, idempotency_index, \
           list, list_unsubscribe, header_message_id)), \
     m AS (INSERT INTO messages (id, created_at, send_at, priority, envelope_from, subject, \
         size, tokens, relay, idempotency_key, status, recipient_count, idempotency_scope, \
         request_hash, idempotency_index, list, list_unsubscribe, header_message_id) \
       SELECT id, created_at, send_at, priority, envelope_from, subject, size, tokens, relay, \
         idempotency_key, 'queued', recipient_count, idempotency_scope, request_hash, idempotency_index, \
         list, list_unsubscribe, header_message_id \
       FROM input \
       ON CONFLICT (idempotency_scope, idempotency_key, idempotency_index) \
       WHERE idempotency_key IS NOT NULL DO NOTHING RETURNING id, priority, send_at, list), \
     b AS (INSERT INTO bodies (message_id, data) SELECT input.id, input.data FROM input JOIN m USING (id)), \
     r AS (INSERT INTO recipients (message_id, address, domain, route, priority, state, next_attempt_at, merge, last_reply) \
       SELECT u.message_id, u.a, u.d, u.r, m.priority, \
         CASE WHEN sup.reply IS NULL THEN 'queued' ELSE 'suppressed' END, m.send_at, u.merge, sup.reply \
       FROM UNNEST($16::text[], $17::text[], $18::text[], $19::text[], $20::text[]) WITH ORDINALITY \
         AS u (message_id, a, d, r, merge, place) \
       JOIN m ON m.id = u.message_id \
       LEFT JOIN LATERAL (SELECT {REPLY} AS reply) sup ON true \
       ORDER BY u.place RETURNING id, message_id, address, state, last_reply), \
     e AS ({EVENTS}) \
     SELECT id, id IN (SELECT message_id FROM r WHERE state = 'suppressed') FROM m"
        .replace("{REPLY}", &super::suppress::reply_of("u.a", "m.list"))
        .replace("{EVENTS}", &super::events::events_from("r"))
}

/// The batch as column arrays, the parameters of [`insert_messages_sql`].
struct Columns<'a> {
    ids: Vec<&'a str>,
    created_at: Vec<i64>,
    send_at: Vec<i64>,
    priority: Vec<i64>,
    envelope_from: Vec<&'a str>,
    subject: Vec<&'a str>,
    size: Vec<i64>,
    data: Vec<&'a [u8]>,
    tokens: Vec<Option<&'a str>>,
    relay: Vec<Option<&'a str>>,
    key: Vec<Option<&'a str>>,
    recipient_count: Vec<i64>,
    scope: Vec<&'a str>,
    hash: Vec<Option<&'a str>>,
    index: Vec<i64>,
    list: Vec<&'a str>,
    list_unsubscribe: Vec<i64>,
    header_message_id: Vec<Option<&'a str>>,
    r_message: Vec<&'a str>,
    r_address: Vec<&'a str>,
    r_domain: Vec<&'a str>,
    r_route: Vec<&'a str>,
    r_merge: Vec<Option<&'a str>>,
}

impl<'a> Columns<'a> {
    fn of(messages: &'a [PreparedMessage], request: Option<&'a RequestKey>) -> Self {
        let n = messages.len();
        let recipients: usize = messages.iter().map(|m| m.recipients.len()).sum();
        let mut c = Columns {
            ids: Vec::with_capacity(n),
            created_at: Vec::with_capacity(n),
            send_at: Vec::with_capacity(n),
            priority: Vec::with_capacity(n),
            envelope_from: Vec::with_capacity(n),
            subject: Vec::with_capacity(n),
            size: Vec::with_capacity(n),
            data: Vec::with_capacity(n),
            tokens: Vec::with_capacity(n),
            relay: Vec::with_capacity(n),
            key: Vec::with_capacity(n),
            recipient_count: Vec::with_capacity(n),
            scope: Vec::with_capacity(n),
            hash: Vec::with_capacity(n),
            index: Vec::with_capacity(n),
            list: Vec::with_capacity(n),
            list_unsubscribe: Vec::with_capacity(n),
            header_message_id: Vec::with_capacity(n),
            r_message: Vec::with_capacity(recipients),
            r_address: Vec::with_capacity(recipients),
            r_domain: Vec::with_capacity(recipients),
            r_route: Vec::with_capacity(recipients),
            r_merge: Vec::with_capacity(recipients),
        };
        for (place, m) in messages.iter().enumerate() {
            let key = KeyColumns::of(request, m, place);
            c.ids.push(&m.id);
            c.created_at.push(m.created_at);
            c.send_at.push(m.send_at);
            c.priority.push(m.priority);
            c.envelope_from.push(&m.envelope_from);
            c.subject.push(&m.subject);
            c.size.push(m.data.len() as i64);
            c.data.push(&m.data);
            c.tokens.push(m.tokens.as_deref());
            c.relay.push(m.relay.as_deref());
            c.key.push(key.key);
            c.recipient_count.push(m.recipients.len() as i64);
            c.scope.push(key.scope);
            c.hash.push(key.hash);
            c.index.push(key.index);
            c.list.push(&m.list);
            c.list_unsubscribe.push(m.list_unsubscribe);
            c.header_message_id.push(m.header_message_id.as_deref());
            for r in &m.recipients {
                c.r_message.push(&m.id);
                c.r_address.push(&r.address);
                c.r_domain.push(&r.domain);
                c.r_route.push(&r.route);
                c.r_merge.push(r.merge.as_deref());
            }
        }
        c
    }

    fn params(&self) -> [&(dyn tokio_postgres::types::ToSql + Sync); 23] {
        [
            &self.ids,
            &self.created_at,
            &self.send_at,
            &self.priority,
            &self.envelope_from,
            &self.subject,
            &self.size,
            &self.data,
            &self.tokens,
            &self.relay,
            &self.key,
            &self.recipient_count,
            &self.scope,
            &self.hash,
            &self.index,
            &self.r_message,
            &self.r_address,
            &self.r_domain,
            &self.r_route,
            &self.r_merge,
            &self.list,
            &self.list_unsubscribe,
            &self.header_message_id,
        ]
    }
}

async fn insert_recipients(
    tx: &Client,
    message_id: &str,
    priority: i64,
    due: i64,
    list: &str,
    recipients: &[PreparedRecipient],
) -> Result<(), StoreError> {
    let addresses: Vec<&str> = recipients.iter().map(|r| r.address.as_str()).collect();
    let domains: Vec<&str> = recipients.iter().map(|r| r.domain.as_str()).collect();
    let routes: Vec<&str> = recipients.iter().map(|r| r.route.as_str()).collect();
    let merges: Vec<Option<&str>> = recipients.iter().map(|r| r.merge.as_deref()).collect();
    let insert = tx
        .prepare_cached(&format!(
            "WITH added AS (INSERT INTO recipients (message_id, address, domain, route, priority, state, next_attempt_at, merge, last_reply) \
             SELECT $1, a, d, r, $2, CASE WHEN sup.reply IS NULL THEN 'queued' ELSE 'suppressed' END, $3, m, sup.reply \
             FROM UNNEST($4::text[], $5::text[], $6::text[], $7::text[]) AS u (a, d, r, m) \
             LEFT JOIN LATERAL (SELECT {} AS reply) sup ON true \
             RETURNING id, message_id, address, state, last_reply) {}",
            super::suppress::reply_of("u.a", "$8::text"),
            super::events::events_from("added")
        ))
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
            &list,
        ],
    )
    .await?;
    Ok(())
}

/// Adds recipients to an existing message inside the caller's transaction: the message
/// row is locked first, then the recipients, its count and its status are written in one
/// pipeline.
pub(super) async fn add_recipients(
    tx: &Client,
    message_id: &str,
    recipients: Vec<NewRecipient>,
) -> Result<u64, StoreError> {
    let row = tx
        .query_opt(
            "SELECT relay, priority, send_at, list FROM messages WHERE id = $1 FOR UPDATE",
            &[&message_id],
        )
        .await?
        .ok_or_else(|| StoreError::NotFound {
            id: message_id.to_string(),
        })?;
    let relay: Option<String> = row.get(0);
    let prepared = prepare_recipients(relay.as_deref(), recipients)?;
    let added = prepared.len() as i64;
    futures_util::future::try_join(
        insert_recipients(
            tx,
            message_id,
            row.get(1),
            row.get(2),
            row.get(3),
            &prepared,
        ),
        async {
            tx.execute(
                "UPDATE messages SET recipient_count = recipient_count + $2 WHERE id = $1",
                &[&message_id, &added],
            )
            .await?;
            tx.execute(&refresh_status_sql("$1"), &[&message_id])
                .await
                .map_err(StoreError::from)
        },
    )
    .await?;
    Ok(added as u64)
}
