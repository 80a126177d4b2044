//! PostgreSQL statements of the feedback table (migration 7): recording a report, with
//! every change it makes to its recipient, and listing reports.

use deadpool_postgres::Client;
use time::OffsetDateTime;
use tokio_postgres::Row;

use crate::feedback::{
    BY_ADDRESS, ExactlyOne, FeedbackApplied, FeedbackFilter, FeedbackKind, FeedbackRecord,
    NewFeedback, by_message_id, clean, from_states, kept, reply_text, verdict,
};
use crate::schema::refresh_status_sql;
use crate::suppression::normalise_address;
use crate::timefmt::{from_ms, to_ms};
use crate::{RecipientState, StoreError};

/// Records one report and applies it (see `Store::record_feedback`) in one transaction:
/// the recipient's new state and reply, its message's status, the suppression, and the
/// `feedback` row.
pub(super) async fn record(
    client: &mut Client,
    feedback: &NewFeedback,
    now: OffsetDateTime,
) -> Result<FeedbackApplied, StoreError> {
    let tx = client.transaction().await?;
    let target: Option<(i64, String, String)> = match feedback.recipient_id {
        Some(id) => tx
            .query_opt(
                "SELECT id, message_id, address FROM recipients WHERE id = $1",
                &[&id],
            )
            .await?
            .map(|row| (row.get(0), row.get(1), row.get(2))),
        None => match by_message_id(feedback) {
            Some((message_id, address)) => tx
                .query(
                    &format!(
                        "SELECT r.id, r.message_id, r.address FROM messages m \
                         JOIN recipients r ON r.message_id = m.id \
                         WHERE m.header_message_id = $1 AND {} LIMIT 2",
                        BY_ADDRESS.replace("?2", "$2::text")
                    ),
                    &[&message_id, &address],
                )
                .await?
                .iter()
                .map(|row| (row.get(0), row.get(1), row.get(2)))
                .exactly_one(),
            None => None,
        },
    };
    let (state, reason) = verdict(feedback);
    let mut applied = None;
    let mut suppressed = false;
    if let (Some((recipient_id, message_id, address)), Some(state)) = (&target, state) {
        // The message row before the recipient's, in the order a completion locks them,
        // so the two never deadlock.
        tx.execute(
            "SELECT 1 FROM messages WHERE id = $1 FOR UPDATE",
            &[message_id],
        )
        .await?;
        let changed = tx
            .execute(
                &format!(
                    "UPDATE recipients SET state = $2, last_reply = $3, lease_owner = NULL \
                     WHERE id = $1 AND state IN {}",
                    from_states(state)
                ),
                &[recipient_id, &state.as_str(), &reply_text(state, feedback)],
            )
            .await?;
        if changed > 0 {
            applied = Some(state);
            tx.execute(&refresh_status_sql("$1"), &[message_id]).await?;
            // The `bounced` or `complained` event, in this transaction.
            super::events::insert_events(&tx, &[*recipient_id], None, now).await?;
        }
        if let Some(reason) = reason {
            tx.execute(
                "INSERT INTO suppressions (address, list, reason, created_at, message_id) \
                 VALUES ($1, '', $2, $3, $4) \
                 ON CONFLICT (address, list) DO UPDATE SET reason = EXCLUDED.reason, \
                 message_id = COALESCE(EXCLUDED.message_id, suppressions.message_id)",
                &[
                    &normalise_address(address)?,
                    &reason,
                    &to_ms(now),
                    message_id,
                ],
            )
            .await?;
            suppressed = true;
        }
    }
    let matched = target.is_some();
    let recipient_id = target.as_ref().map(|(r, _, _)| *r);
    let message_id = target.as_ref().map(|(_, m, _)| m.clone());
    let row = tx
        .query_one(
            "INSERT INTO feedback (received_at, kind, format, recipient_id, message_id, address, \
             status, diagnostic, applied, sender, raw) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id",
            &[
                &to_ms(now),
                &feedback.kind.as_str(),
                &feedback.format,
                &recipient_id,
                &message_id,
                &clean(&feedback.address),
                &clean(&feedback.status),
                &clean(&feedback.diagnostic),
                &applied.map(RecipientState::as_str),
                &crate::engine::policy::sanitize_reply(&feedback.sender),
                &kept(feedback, matched),
            ],
        )
        .await?;
    let id: i64 = row.get(0);
    if !matched {
        tx.execute(
            &crate::feedback::prune_unmatched_sql("$1"),
            &[&crate::feedback::MAX_UNMATCHED_REPORTS],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(FeedbackApplied {
        id,
        message_id,
        recipient: target.map(|(_, _, a)| a),
        state: applied,
        suppressed,
    })
}

const COLUMNS: &str = "id, received_at, kind, format, message_id, recipient_id, address, status, \
                       diagnostic, applied, sender, COALESCE(octet_length(raw), 0)::BIGINT";

fn build(row: &Row) -> Result<FeedbackRecord, StoreError> {
    Ok(FeedbackRecord {
        id: row.get(0),
        received_at: from_ms(row.get(1)),
        kind: FeedbackKind::parse(row.get::<_, &str>(2))?,
        format: row.get(3),
        message_id: row.get(4),
        recipient_id: row.get(5),
        address: row.get(6),
        status: row.get(7),
        diagnostic: row.get(8),
        applied: row.get(9),
        sender: row.get(10),
        kept_bytes: u64::try_from(row.get::<_, i64>(11)).unwrap_or(0),
    })
}

/// One page of reports, newest first.
pub(super) async fn list(
    client: &Client,
    filter: &FeedbackFilter,
) -> Result<Vec<FeedbackRecord>, StoreError> {
    let limit = i64::from(filter.limit.clamp(1, 1000));
    let before = filter.before.unwrap_or(i64::MAX);
    let rows = match (&filter.message_id, filter.unmatched) {
        (Some(message), _) => {
            client
                .query(
                    &format!(
                        "SELECT {COLUMNS} FROM feedback WHERE message_id = $3 AND id < $1 \
                         ORDER BY id DESC LIMIT $2"
                    ),
                    &[&before, &limit, message],
                )
                .await?
        }
        (None, unmatched) => {
            let condition = if unmatched {
                "recipient_id IS NULL AND id < $1"
            } else {
                "id < $1"
            };
            client
                .query(
                    &format!(
                        "SELECT {COLUMNS} FROM feedback WHERE {condition} ORDER BY id DESC LIMIT $2"
                    ),
                    &[&before, &limit],
                )
                .await?
        }
    };
    rows.iter().map(build).collect()
}

/// The report text kept for an unmatched report.
pub(super) async fn raw(client: &Client, id: i64) -> Result<Option<Vec<u8>>, StoreError> {
    Ok(client
        .query_opt("SELECT raw FROM feedback WHERE id = $1", &[&id])
        .await?
        .and_then(|row| row.get::<_, Option<Vec<u8>>>(0)))
}
