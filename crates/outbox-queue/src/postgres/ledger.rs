//! PostgreSQL statements of the engine's ledger: claim, renew, release, complete.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use deadpool_postgres::Client;
use time::OffsetDateTime;

use crate::StoreError;
use crate::model::{Claimed, Outcome, RouteFilter};
use crate::prepare::reply_code;
use crate::rows::{MessageInfo, RawClaim, group};
use crate::schema::{ACTIVE_STATES, refresh_status_sql};
use crate::timefmt::{duration_ms, to_ms};

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
