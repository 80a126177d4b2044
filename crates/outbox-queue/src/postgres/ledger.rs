//! PostgreSQL statements of the engine's ledger: claim, heartbeat, recover, retire,
//! release, complete, and the reads the engine's scheduler makes. Each is a constant
//! number of statements whatever the batch size (lists travel as arrays), and every
//! liveness time comes from the database's clock, so workers on several machines agree.

use std::time::Duration;

use deadpool_postgres::Client;
use time::OffsetDateTime;

use crate::StoreError;
use crate::model::{
    Claimed, Delivery, MessageBody, Outcome, RouteFilter, WorkerInfo, gone_owners, host_key,
};
use crate::prepare::{parse_merge, reply_code};
use crate::rows::{MessageInfo, RawClaim, group, without_nul};
use crate::schema::{DUE_STATES, PRIORITY_RANKS, has_due_sql, next_due_sql, refresh_statuses_sql};
use crate::timefmt::{duration_ms, from_ms, to_ms};

/// The database clock in milliseconds since the epoch (the wall clock, not the
/// transaction's start).
pub(crate) const DB_NOW_MS: &str = "(extract(epoch from clock_timestamp()) * 1000)::bigint";

/// The claim statement: one index range per priority (each with its own LIMIT and
/// `FOR UPDATE SKIP LOCKED`, so concurrent claims take disjoint rows without waiting),
/// the first `limit` rows of them leased, returned with their message's columns.
/// Parameters: $1 owner, $2 now, $3 limit, $4 the route key (for `RouteFilter::Key`).
pub(crate) fn claim_sql(route: Option<&RouteFilter>) -> String {
    let route_condition = match route {
        None => "",
        Some(RouteFilter::Key(_)) => "AND route = $4",
        // Every `mx:` key sorts between "mx:" and "mx;" with the "C" collation. Filtered
        // while walking recipients_due in claim order (the route index could not give
        // that order for a range of routes).
        Some(RouteFilter::AnyMx) => "AND route >= 'mx:' AND route < 'mx;'",
    };
    let arms: Vec<String> = PRIORITY_RANKS
        .iter()
        .map(|rank| {
            format!(
                "SELECT id, address, message_id FROM (SELECT id, address, message_id FROM recipients \
                 WHERE state IN {DUE_STATES} \
                 AND priority = {rank} AND next_attempt_at <= $2 {route_condition} \
                 ORDER BY next_attempt_at, id LIMIT $3 FOR UPDATE SKIP LOCKED) p{rank}"
            )
        })
        .collect();
    // A recipient suppressed since it was queued is marked `suppressed` (with the reply
    // saying why) instead of being leased: two primary-key probes of `suppressions` per
    // claimed row, in the same statement.
    format!(
        "UPDATE recipients r SET state = CASE WHEN sup.reply IS NULL THEN 'sending' ELSE 'suppressed' END, \
         lease_owner = CASE WHEN sup.reply IS NULL THEN $1 END, lease_epoch = r.lease_epoch + 1, \
         last_reply = COALESCE(sup.reply, r.last_reply) \
         FROM ({} LIMIT $3) due JOIN messages m ON m.id = due.message_id \
         LEFT JOIN LATERAL (SELECT {} AS reply) sup ON true \
         WHERE r.id = due.id \
         RETURNING r.id, r.message_id, r.address, r.domain, r.route, r.attempts, r.merge, \
                   r.priority, r.next_attempt_at, r.lease_epoch, \
                   m.envelope_from, m.relay, m.size, (m.tokens IS NOT NULL OR m.list_unsubscribe <> 0), sup.reply IS NOT NULL",
        arms.join(" UNION ALL "),
        super::suppress::reply_of("due.address", "m.list")
    )
}

/// Planner settings for the claim's transaction: with stale statistics (a merge of
/// 100 000 recipients just queued, not analyzed yet) the planner may estimate a handful
/// of rows and choose a bitmap scan plus a sort, which would then read and sort every due
/// row of the range on each claim. Without those, only the ordered index scan remains.
pub(crate) const CLAIM_SETTINGS: &str = "SET LOCAL enable_sort = off; SET LOCAL enable_bitmapscan = off; SET LOCAL enable_seqscan = off";

/// Leases due recipients (skipping rows other workers are claiming) and groups them.
pub(super) async fn claim(
    client: &mut Client,
    owner: &str,
    route: Option<&RouteFilter>,
    now: OffsetDateTime,
    limit: usize,
) -> Result<Vec<Claimed>, StoreError> {
    let now_ms = to_ms(now);
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let statement = client.prepare_cached(&claim_sql(route)).await?;
    let tx = client.transaction().await?;
    let key = match route {
        Some(RouteFilter::Key(key)) => Some(key.to_key()),
        _ => None,
    };
    // The settings and the claim go out together (pipelined): one round trip.
    let settings = tx.batch_execute(CLAIM_SETTINGS);
    let claimed = async {
        match &key {
            Some(key) => tx.query(&statement, &[&owner, &now_ms, &limit, key]).await,
            None => tx.query(&statement, &[&owner, &now_ms, &limit]).await,
        }
    };
    let ((), rows) = futures_util::future::try_join(settings, claimed).await?;
    let suppressed: Vec<String> = rows
        .iter()
        .filter(|row| row.get::<_, bool>(14))
        .map(|row| row.get::<_, String>(1))
        .collect();
    super::suppress::refresh(&tx, &suppressed).await?;
    if !suppressed.is_empty() {
        let ids: Vec<i64> = rows
            .iter()
            .filter(|row| row.get::<_, bool>(14))
            .map(|row| row.get::<_, i64>(0))
            .collect();
        super::events::insert_events(&tx, &ids, None, OffsetDateTime::now_utc()).await?;
    }
    tx.commit().await?;
    let mut infos = std::collections::HashMap::new();
    let raw: Vec<RawClaim> = rows
        .iter()
        .filter(|row| !row.get::<_, bool>(14))
        .map(|row| {
            let message_id: String = row.get(1);
            infos
                .entry(message_id.clone())
                .or_insert_with(|| MessageInfo {
                    envelope_from: row.get(10),
                    relay: row.get(11),
                    size: row.get(12),
                    per_recipient: row.get(13),
                });
            RawClaim {
                id: row.get(0),
                message_id,
                address: row.get(2),
                domain: row.get(3),
                route: row.get(4),
                attempts: row.get(5),
                merge: row.get(6),
                priority: row.get(7),
                next_attempt_at: row.get(8),
                epoch: row.get(9),
            }
        })
        .collect();
    group(raw, |message_id| {
        infos.remove(message_id).ok_or_else(|| StoreError::Corrupt {
            what: "recipient",
            detail: format!("recipient of missing message {message_id}"),
        })
    })
}

/// Upserts the worker's row with `heartbeat_at` = the database clock.
pub(super) async fn heartbeat(
    client: &Client,
    worker: &WorkerInfo,
    lease: Duration,
) -> Result<(), StoreError> {
    let statement = client
        .prepare_cached(&format!(
            "INSERT INTO workers (owner, host_key, pid, heartbeat_at, lease_ms) \
             VALUES ($1, $2, $3, {DB_NOW_MS}, $4) \
             ON CONFLICT (owner) DO UPDATE SET host_key = EXCLUDED.host_key, pid = EXCLUDED.pid, \
             heartbeat_at = EXCLUDED.heartbeat_at, lease_ms = EXCLUDED.lease_ms"
        ))
        .await?;
    client
        .execute(
            &statement,
            &[
                &worker.owner,
                &worker.host_key,
                &i64::from(worker.pid),
                &duration_ms(lease),
            ],
        )
        .await?;
    Ok(())
}

/// Resumes the `sending` recipients of dead workers and forgets those workers, in one
/// transaction, against one reading of the database clock.
pub(super) async fn recover(client: &mut Client) -> Result<u64, StoreError> {
    let tx = client.transaction().await?;
    let row = tx
        .query_one(
            &format!(
                "SELECT {DB_NOW_MS}, \
                 ARRAY(SELECT owner FROM workers WHERE host_key = $1 ORDER BY owner), \
                 ARRAY(SELECT pid FROM workers WHERE host_key = $1 ORDER BY owner)"
            ),
            &[&host_key()],
        )
        .await?;
    let now: i64 = row.get(0);
    let owners: Vec<String> = row.get(1);
    let pids: Vec<i64> = row.get(2);
    let gone: Vec<String> = gone_owners(owners.into_iter().zip(pids).collect());
    let resumed = tx
        .execute(
            "UPDATE recipients SET state = CASE WHEN attempts > 0 OR last_reply IS NOT NULL THEN 'deferred' ELSE 'queued' END, \
             lease_owner = NULL, next_attempt_at = LEAST(next_attempt_at, $1) \
             WHERE state = 'sending' AND (lease_owner IS NULL OR lease_owner NOT IN \
                (SELECT owner FROM workers WHERE heartbeat_at + lease_ms >= $1 \
                 AND owner <> ALL($2)))",
            &[&now, &gone],
        )
        .await?;
    tx.execute(
        "DELETE FROM workers WHERE heartbeat_at + lease_ms < $1 OR owner = ANY($2)",
        &[&now, &gone],
    )
    .await?;
    tx.commit().await?;
    Ok(resumed)
}

/// Deletes a worker's row.
pub(super) async fn retire(client: &Client, owner: &str) -> Result<(), StoreError> {
    client
        .execute("DELETE FROM workers WHERE owner = $1", &[&owner])
        .await?;
    Ok(())
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
            "UPDATE recipients SET state = CASE WHEN attempts > 0 OR last_reply IS NOT NULL THEN 'deferred' ELSE 'queued' END, \
             lease_owner = NULL, next_attempt_at = $3 \
             WHERE id = ANY($1) AND lease_owner = $2 AND state = 'sending'",
            &[&ids, &owner, &to_ms(now)],
        )
        .await?)
}

/// Records outcomes (see `Store::complete`) in one transaction of three statements, sent
/// together (one round trip):
/// 1. lock the touched messages, in id order: completions of recipients of one message
///    queue up here rather than deadlock, and in the same order as `remove` and `retry`
///    (message, then recipients);
/// 2. the attempts log and the recipients (data-modifying CTEs of one statement);
/// 3. the messages' statuses: a new statement, so its snapshot sees the recipients of
///    every completion that held the message lock before this one (in one statement, a
///    concurrent completion's change could be missed and a finished message stay
///    `queued`).
pub(super) async fn complete(
    client: &mut Client,
    owner: &str,
    outcomes: Vec<Outcome>,
) -> Result<u64, StoreError> {
    if outcomes.is_empty() {
        return Ok(0);
    }
    let n = outcomes.len();
    let mut ids = Vec::with_capacity(n);
    let mut epochs = Vec::with_capacity(n);
    let mut finals = Vec::with_capacity(n);
    let mut states = Vec::with_capacity(n);
    let mut replies = Vec::with_capacity(n);
    let mut next = Vec::with_capacity(n);
    let mut counts = Vec::with_capacity(n);
    let mut at = Vec::with_capacity(n);
    let mut hosts = Vec::with_capacity(n);
    let mut codes = Vec::with_capacity(n);
    let mut logged = Vec::with_capacity(n);
    let mut durations = Vec::with_capacity(n);
    for outcome in &outcomes {
        let reply = without_nul(outcome.delivery.reply());
        ids.push(outcome.recipient_id);
        epochs.push(outcome.epoch);
        finals.push(matches!(outcome.delivery, Delivery::Sent { .. }));
        states.push(outcome.delivery.state().as_str());
        codes.push(reply_code(&reply).map(i64::from));
        replies.push(reply);
        next.push(outcome.delivery.next_attempt_at().map(to_ms));
        counts.push(i64::from(outcome.delivery.counts_as_attempt()));
        at.push(to_ms(outcome.at));
        hosts.push(outcome.host.as_deref().map(without_nul));
        logged.push(outcome.delivery.logged_as().as_str());
        durations.push(duration_ms(outcome.duration));
    }
    let replies: Vec<&str> = replies.iter().map(|r| r.as_ref()).collect();
    let hosts: Vec<Option<&str>> = hosts.iter().map(|h| h.as_deref()).collect();
    let tx = client.transaction().await?;
    let statement = tx
        .prepare_cached(
            "WITH o AS (SELECT * FROM UNNEST($1::bigint[], $2::bigint[], $3::bool[], $4::text[], \
                 $5::text[], $6::bigint[], $7::bigint[], $8::bigint[], $9::text[], $10::bigint[], \
                 $11::text[], $12::bigint[]) WITH ORDINALITY \
                 AS o (id, epoch, final, state, reply, next, counts, at, host, code, logged, duration, ord)), \
             log AS (INSERT INTO attempts (message_id, recipient_id, at, host, code, reply, outcome, duration_ms) \
                 SELECT r.message_id, o.id, o.at, o.host, o.code, o.reply, o.logged, o.duration \
                 FROM o JOIN recipients r ON r.id = o.id ORDER BY o.ord \
                 RETURNING 1), \
             applied AS (UPDATE recipients r SET state = o.state, attempts = r.attempts + o.counts, \
                 last_reply = o.reply, next_attempt_at = COALESCE(o.next, r.next_attempt_at), \
                 lease_owner = NULL, lease_epoch = r.lease_epoch + CASE WHEN o.final THEN 1 ELSE 0 END \
                 FROM o WHERE r.id = o.id \
                 AND ((o.final AND r.state <> 'sent') \
                   OR (r.lease_owner = $13 AND r.lease_epoch = o.epoch AND r.state = 'sending')) \
                 RETURNING r.id, r.message_id, r.address, r.state, r.last_reply), \
             ev AS ({EVENTS}) \
             SELECT (SELECT count(*) FROM applied)"
                .replace("{EVENTS}", &super::events::events_from("applied"))
                .as_str(),
        )
        .await?;
    let lock = tx
        .prepare_cached(
            "SELECT id FROM messages WHERE id IN (SELECT message_id FROM recipients WHERE id = ANY($1)) \
             ORDER BY id FOR UPDATE",
        )
        .await?;
    let refresh = tx
        .prepare_cached(&refresh_statuses_sql(
            "id IN (SELECT message_id FROM recipients WHERE id = ANY($1))",
        ))
        .await?;
    let (_, row, _) = futures_util::future::try_join3(
        tx.query(&lock, &[&ids]),
        tx.query_one(
            &statement,
            &[
                &ids, &epochs, &finals, &states, &replies, &next, &counts, &at, &hosts, &codes,
                &logged, &durations, &owner,
            ],
        ),
        tx.execute(&refresh, &[&ids]),
    )
    .await?;
    let applied: i64 = row.get(0);
    let hard: Vec<i64> = outcomes
        .iter()
        .filter(|o| o.delivery.is_hard_bounce())
        .map(|o| o.recipient_id)
        .collect();
    if !hard.is_empty() {
        // A hard bounce puts its address on the suppression list for every list (reason
        // `bounced`), unless it is there already: an operator's entry is kept as it is.
        let suppress = tx
            .prepare_cached(
                "INSERT INTO suppressions (address, list, reason, created_at, message_id) \
                 SELECT lower(trim(r.address) COLLATE \"C\"), '', 'bounced', $2, r.message_id \
                 FROM recipients r WHERE r.id = ANY($1) \
                 ON CONFLICT (address, list) DO NOTHING",
            )
            .await?;
        tx.execute(&suppress, &[&hard, &to_ms(OffsetDateTime::now_utc())])
            .await?;
    }
    tx.commit().await?;
    Ok(u64::try_from(applied).unwrap_or(0))
}

/// Several messages' bodies in one statement.
pub(super) async fn message_bodies(
    client: &Client,
    ids: &[String],
) -> Result<Vec<(String, MessageBody)>, StoreError> {
    let rows = client
        .query(
            "SELECT m.id, b.data, m.tokens, CASE WHEN m.list_unsubscribe <> 0 THEN m.list END \
             FROM messages m JOIN bodies b ON b.message_id = m.id \
             WHERE m.id = ANY($1)",
            &[&ids],
        )
        .await?;
    rows.iter()
        .map(|row| {
            Ok((
                row.get(0),
                MessageBody {
                    data: row.get(1),
                    tokens: parse_merge(row.get(2))?,
                    unsubscribe_list: row.get(3),
                },
            ))
        })
        .collect()
}

pub(super) async fn next_due(client: &Client) -> Result<Option<OffsetDateTime>, StoreError> {
    let statement = client.prepare_cached(&next_due_sql()).await?;
    let row = client.query_one(&statement, &[]).await?;
    Ok(row.get::<_, Option<i64>>(0).map(from_ms))
}

pub(super) async fn has_due(client: &Client, now: OffsetDateTime) -> Result<bool, StoreError> {
    let statement = client.prepare_cached(&has_due_sql("$1")).await?;
    let row = client.query_one(&statement, &[&to_ms(now)]).await?;
    Ok(row.get(0))
}
