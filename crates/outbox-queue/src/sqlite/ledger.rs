//! SQLite statements of the engine's ledger: claim, heartbeat, recover, retire, release,
//! complete, and the reads the engine's scheduler makes. Writers run inside the caller's
//! `BEGIN IMMEDIATE` transaction, each with a constant number of statements whatever the
//! batch size: lists travel as one JSON array, unpacked with `json_each`.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, Transaction, params};
use time::OffsetDateTime;

use crate::StoreError;
use crate::model::{
    Claimed, Delivery, MessageBody, Outcome, RouteFilter, WorkerInfo, gone_owners, host_key,
};
use crate::prepare::{parse_merge, reply_code};
use crate::rows::{MessageInfo, RawClaim, group, without_nul};
use crate::schema::{DUE_STATES, PRIORITY_RANKS, has_due_sql, next_due_sql, refresh_statuses_sql};
use crate::timefmt::{duration_ms, from_ms, to_ms};

/// One JSON text for a list of values.
fn json<T: serde::Serialize>(values: &T) -> Result<String, StoreError> {
    serde_json::to_string(values)
        .map_err(|err| StoreError::Worker(format!("encoding a batch as JSON: {err}")))
}

/// The claim statement: one index range per priority (each with its own LIMIT, so
/// none is read further than needed), the first `limit` rows of them leased.
/// Parameters: ?1 owner, ?2 now, ?3 limit, ?4 the route key (for `RouteFilter::Key`).
pub(crate) fn claim_sql(route: Option<&RouteFilter>) -> String {
    let route_condition = match route {
        None => "",
        Some(RouteFilter::Key(_)) => "AND route = ?4",
        // Every `mx:` key sorts between "mx:" and "mx;" (';' follows ':'). The unary `+`
        // keeps SQLite on recipients_due: a range on the route index could not give
        // the rows in claim order, and would sort every due recipient.
        Some(RouteFilter::AnyMx) => "AND +route >= 'mx:' AND +route < 'mx;'",
    };
    // INDEXED BY: the planner has no other choice, whatever statistics an ANALYZE of a
    // smaller queue left behind (and the statement fails rather than sorting).
    let index = match route {
        Some(RouteFilter::Key(_)) => "recipients_route",
        _ => "recipients_due",
    };
    let arms: Vec<String> = PRIORITY_RANKS
        .iter()
        .map(|rank| {
            format!(
                "SELECT id FROM (SELECT id FROM recipients INDEXED BY {index} \
                 WHERE state IN {DUE_STATES} \
                 AND priority = {rank} AND next_attempt_at <= ?2 {route_condition} \
                 ORDER BY next_attempt_at, id LIMIT ?3)"
            )
        })
        .collect();
    format!(
        "UPDATE recipients SET state = 'sending', lease_owner = ?1, lease_epoch = lease_epoch + 1 \
         WHERE id IN ({} LIMIT ?3) \
         RETURNING id, message_id, address, domain, route, attempts, merge, priority, \
                   next_attempt_at, lease_epoch",
        arms.join(" UNION ALL ")
    )
}

/// Leases due recipients and groups them into work units.
pub(super) fn claim(
    tx: &Transaction<'_>,
    owner: &str,
    route: Option<&RouteFilter>,
    now: OffsetDateTime,
    limit: usize,
) -> Result<Vec<Claimed>, StoreError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut update = tx.prepare_cached(&claim_sql(route))?;
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
            next_attempt_at: row.get(8)?,
            epoch: row.get(9)?,
        })
    };
    let mut rows: Vec<RawClaim> = match route {
        Some(RouteFilter::Key(key)) => update
            .query_map(params![owner, to_ms(now), limit, key.to_key()], map_row)?
            .collect::<Result<_, _>>()?,
        _ => update
            .query_map(params![owner, to_ms(now), limit], map_row)?
            .collect::<Result<_, _>>()?,
    };
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    // Suppressed since they were queued: marked `suppressed` in this transaction, so the
    // lease taken above is never seen by anyone.
    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    let suppressed = super::suppress::mark_claimed(tx, &ids)?;
    if !suppressed.is_empty() {
        super::events::insert_events(tx, &suppressed, None, now)?;
        rows.retain(|r| !suppressed.contains(&r.id));
        if rows.is_empty() {
            return Ok(Vec::new());
        }
    }
    let message_ids: BTreeSet<&str> = rows.iter().map(|r| r.message_id.as_str()).collect();
    let mut select = tx.prepare_cached(
        "SELECT id, envelope_from, relay, size, tokens IS NOT NULL OR list_unsubscribe <> 0 \
         FROM messages \
         WHERE id IN (SELECT value FROM json_each(?1))",
    )?;
    let mut infos: HashMap<String, MessageInfo> = select
        .query_map([json(&message_ids)?], |row| {
            Ok((
                row.get(0)?,
                MessageInfo {
                    envelope_from: row.get(1)?,
                    relay: row.get(2)?,
                    size: row.get(3)?,
                    per_recipient: row.get(4)?,
                },
            ))
        })?
        .collect::<Result<_, _>>()?;
    group(rows, |message_id| {
        infos.remove(message_id).ok_or_else(|| StoreError::Corrupt {
            what: "recipient",
            detail: format!("recipient of missing message {message_id}"),
        })
    })
}

/// Upserts the worker's row with `heartbeat_at` = the local clock.
pub(super) fn heartbeat(
    tx: &Transaction<'_>,
    worker: &WorkerInfo,
    lease: Duration,
) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT INTO workers (owner, host_key, pid, heartbeat_at, lease_ms) VALUES (?1, ?2, ?3, ?4, ?5) \
         ON CONFLICT (owner) DO UPDATE SET host_key = excluded.host_key, pid = excluded.pid, \
         heartbeat_at = excluded.heartbeat_at, lease_ms = excluded.lease_ms",
    )?
    .execute(params![
        worker.owner,
        worker.host_key,
        i64::from(worker.pid),
        to_ms(OffsetDateTime::now_utc()),
        duration_ms(lease)
    ])?;
    Ok(())
}

/// Resumes the `sending` recipients of dead workers and forgets those workers.
pub(super) fn recover(tx: &Transaction<'_>) -> Result<u64, StoreError> {
    let now = to_ms(OffsetDateTime::now_utc());
    let same_host: Vec<(String, i64)> = tx
        .prepare_cached("SELECT owner, pid FROM workers WHERE host_key = ?1")?
        .query_map([host_key()], |row| Ok((row.get(0)?, row.get(1)?)))?
        .collect::<Result<_, _>>()?;
    let gone = json(&gone_owners(same_host))?;
    let resumed = tx
        .prepare_cached(
            "UPDATE recipients SET state = CASE WHEN attempts > 0 OR last_reply IS NOT NULL THEN 'deferred' ELSE 'queued' END, \
             lease_owner = NULL, next_attempt_at = MIN(next_attempt_at, ?1) \
             WHERE state = 'sending' AND (lease_owner IS NULL OR lease_owner NOT IN \
                (SELECT owner FROM workers WHERE heartbeat_at + lease_ms >= ?1 \
                 AND owner NOT IN (SELECT value FROM json_each(?2))))",
        )?
        .execute(params![now, gone])?;
    tx.prepare_cached(
        "DELETE FROM workers WHERE heartbeat_at + lease_ms < ?1 \
         OR owner IN (SELECT value FROM json_each(?2))",
    )?
    .execute(params![now, gone])?;
    Ok(resumed as u64)
}

/// Deletes a worker's row.
pub(super) fn retire(tx: &Transaction<'_>, owner: &str) -> Result<(), StoreError> {
    tx.prepare_cached("DELETE FROM workers WHERE owner = ?1")?
        .execute([owner])?;
    Ok(())
}

/// Gives leases back without an attempt.
pub(super) fn release(
    tx: &Transaction<'_>,
    owner: &str,
    ids: &[i64],
    now: OffsetDateTime,
) -> Result<u64, StoreError> {
    let released = tx
        .prepare_cached(
            "UPDATE recipients SET state = CASE WHEN attempts > 0 OR last_reply IS NOT NULL THEN 'deferred' ELSE 'queued' END, \
             lease_owner = NULL, next_attempt_at = ?3 \
             WHERE id IN (SELECT value FROM json_each(?1)) AND lease_owner = ?2 AND state = 'sending'",
        )?
        .execute(params![json(&ids)?, owner, to_ms(now)])?;
    Ok(released as u64)
}

/// One outcome as a JSON array, in the column order the statements of `complete` read:
/// 0 id, 1 epoch, 2 final (1 for Sent), 3 state, 4 reply, 5 next_attempt_at,
/// 6 attempts added, 7 at, 8 host, 9 code, 10 logged outcome, 11 duration, 12 hard bounce.
fn outcome_json(outcome: &Outcome) -> serde_json::Value {
    let reply = without_nul(outcome.delivery.reply());
    let code = reply_code(&reply);
    serde_json::json!([
        outcome.recipient_id,
        outcome.epoch,
        i64::from(matches!(outcome.delivery, Delivery::Sent { .. })),
        outcome.delivery.state().as_str(),
        reply,
        outcome.delivery.next_attempt_at().map(to_ms),
        i64::from(outcome.delivery.counts_as_attempt()),
        to_ms(outcome.at),
        outcome.host.as_deref().map(without_nul),
        code,
        outcome.delivery.logged_as().as_str(),
        duration_ms(outcome.duration),
        i64::from(outcome.delivery.is_hard_bounce()),
    ])
}

/// Records outcomes (see `Store::complete`) in three statements: the attempts log, the
/// recipients, the messages' statuses; and a fourth when a hard bounce is among them: its
/// address goes on the suppression list for every list (reason `bounced`), unless it is
/// there already (an operator's or an unsubscribe's entry is kept as it is).
pub(super) fn complete(
    tx: &Transaction<'_>,
    owner: &str,
    outcomes: Vec<Outcome>,
) -> Result<u64, StoreError> {
    if outcomes.is_empty() {
        return Ok(0);
    }
    let batch = json(&outcomes.iter().map(outcome_json).collect::<Vec<_>>())?;
    tx.prepare_cached(
        "INSERT INTO attempts (message_id, recipient_id, at, host, code, reply, outcome, duration_ms) \
         SELECT r.message_id, r.id, o.value ->> 7, o.value ->> 8, o.value ->> 9, o.value ->> 4, \
                o.value ->> 10, o.value ->> 11 \
         FROM json_each(?1) o JOIN recipients r ON r.id = o.value ->> 0 ORDER BY o.key",
    )?
    .execute([&batch])?;
    let mut applied: Vec<i64> = tx
        .prepare_cached(
            "UPDATE recipients SET state = o.value ->> 3, attempts = attempts + (o.value ->> 6), \
             last_reply = o.value ->> 4, next_attempt_at = COALESCE(o.value ->> 5, next_attempt_at), \
             lease_owner = NULL, lease_epoch = lease_epoch + (o.value ->> 2) \
             FROM json_each(?1) o \
             WHERE recipients.id = o.value ->> 0 \
               AND ((o.value ->> 2 = 1 AND recipients.state <> 'sent') \
                 OR (recipients.lease_owner = ?2 AND recipients.lease_epoch = o.value ->> 1 \
                     AND recipients.state = 'sending')) \
             RETURNING recipients.id",
        )?
        .query_map(params![batch, owner], |row| row.get(0))?
        .collect::<Result<_, _>>()?;
    // One event per applied outcome (a stale one changed nothing), in one statement.
    applied.sort_unstable();
    super::events::insert_events(tx, &applied, None, OffsetDateTime::now_utc())?;
    // By the primary key's index, whatever the statistics say (the autoindex of
    // `messages.id TEXT PRIMARY KEY`, migration 1).
    let refresh = refresh_statuses_sql(
        "id IN (SELECT r.message_id FROM json_each(?1) o JOIN recipients r ON r.id = o.value ->> 0)",
    )
    .replacen(
        "UPDATE messages SET",
        "UPDATE messages INDEXED BY sqlite_autoindex_messages_1 SET",
        1,
    );
    tx.prepare_cached(&refresh)?.execute([&batch])?;
    if outcomes.iter().any(|o| o.delivery.is_hard_bounce()) {
        tx.prepare_cached(
            "INSERT INTO suppressions (address, list, reason, created_at, message_id) \
             SELECT lower(trim(r.address)), '', 'bounced', ?2, r.message_id \
             FROM json_each(?1) o JOIN recipients r ON r.id = o.value ->> 0 \
             WHERE o.value ->> 12 = 1 \
             ON CONFLICT (address, list) DO NOTHING",
        )?
        .execute(params![batch, to_ms(OffsetDateTime::now_utc())])?;
    }
    Ok(applied.len() as u64)
}

/// Several messages' bodies in one statement.
pub(super) fn message_bodies(
    conn: &Connection,
    ids: &[String],
) -> Result<Vec<(String, MessageBody)>, StoreError> {
    let mut select = conn.prepare_cached(
        "SELECT m.id, b.data, m.tokens, CASE WHEN m.list_unsubscribe <> 0 THEN m.list END \
         FROM messages m JOIN bodies b ON b.message_id = m.id \
         WHERE m.id IN (SELECT value FROM json_each(?1))",
    )?;
    let rows = select.query_map([json(&ids)?], |row| {
        Ok((
            row.get::<_, String>(0)?,
            row.get::<_, Vec<u8>>(1)?,
            row.get::<_, Option<String>>(2)?,
            row.get::<_, Option<String>>(3)?,
        ))
    })?;
    let mut bodies = Vec::new();
    for row in rows {
        let (id, data, tokens, unsubscribe_list) = row?;
        bodies.push((
            id,
            MessageBody {
                data,
                tokens: parse_merge(tokens)?,
                unsubscribe_list,
            },
        ));
    }
    Ok(bodies)
}

pub(super) fn next_due(conn: &Connection) -> Result<Option<OffsetDateTime>, StoreError> {
    let next: Option<i64> = conn
        .prepare_cached(&next_due_sql())?
        .query_row([], |row| row.get(0))?;
    Ok(next.map(from_ms))
}

pub(super) fn has_due(conn: &Connection, now: OffsetDateTime) -> Result<bool, StoreError> {
    let due: Option<bool> = conn
        .prepare_cached(&has_due_sql("?1"))?
        .query_row([to_ms(now)], |row| row.get(0))
        .optional()?;
    Ok(due.unwrap_or(false))
}
