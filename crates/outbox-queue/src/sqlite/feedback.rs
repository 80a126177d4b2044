//! SQLite statements of the feedback table (migration 7): recording a report, with every
//! change it makes to its recipient, and listing reports.

use rusqlite::{Connection, OptionalExtension, Transaction, params};
use time::OffsetDateTime;

use crate::feedback::{
    BY_ADDRESS, ExactlyOne, FeedbackApplied, FeedbackFilter, FeedbackKind, FeedbackRecord,
    NewFeedback, by_message_id, clean, from_states, kept, reply_text, verdict,
};
use crate::schema::refresh_status_sql;
use crate::suppression::{NewSuppression, SuppressionReason};
use crate::timefmt::{from_ms, to_ms};
use crate::{RecipientState, StoreError};

/// Records one report and applies it (see `Store::record_feedback`): the recipient's new
/// state and reply, its message's status, the suppression, and the `feedback` row, in the
/// caller's transaction.
pub(super) fn record(
    tx: &Transaction<'_>,
    feedback: &NewFeedback,
    now: OffsetDateTime,
) -> Result<FeedbackApplied, StoreError> {
    let target: Option<(i64, String, String)> = match feedback.recipient_id {
        Some(id) => tx
            .prepare_cached("SELECT id, message_id, address FROM recipients WHERE id = ?1")?
            .query_row([id], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
            .optional()?,
        None => match by_message_id(feedback) {
            Some((message_id, address)) => tx
                .prepare_cached(&format!(
                    "SELECT r.id, r.message_id, r.address FROM messages m \
                     JOIN recipients r ON r.message_id = m.id \
                     WHERE m.header_message_id = ?1 AND {BY_ADDRESS} LIMIT 2"
                ))?
                .query_map(params![message_id, address], |row| {
                    Ok((row.get(0)?, row.get(1)?, row.get(2)?))
                })?
                .collect::<Result<Vec<_>, _>>()?
                .into_iter()
                .exactly_one(),
            None => None,
        },
    };
    let (state, reason) = verdict(feedback);
    let mut applied = None;
    let mut suppressed = false;
    if let (Some((recipient_id, message_id, address)), Some(state)) = (&target, state) {
        let changed = tx
            .prepare_cached(&format!(
                "UPDATE recipients SET state = ?2, last_reply = ?3, lease_owner = NULL \
                 WHERE id = ?1 AND state IN {}",
                from_states(state)
            ))?
            .execute(params![
                recipient_id,
                state.as_str(),
                reply_text(state, feedback)
            ])?;
        if changed > 0 {
            applied = Some(state);
            tx.prepare_cached(&refresh_status_sql("?1"))?
                .execute([message_id])?;
            // The `bounced` or `complained` event, in this transaction.
            super::events::insert_events(tx, &[*recipient_id], None, now)?;
        }
        if let Some(reason) = reason {
            let reason: SuppressionReason = reason.parse()?;
            super::suppress::add(
                tx,
                &NewSuppression {
                    address: address.clone(),
                    list: None,
                    reason,
                    message_id: Some(message_id.clone()),
                },
                now,
            )?;
            suppressed = true;
        }
    }
    let matched = target.is_some();
    let id: i64 = tx
        .prepare_cached(
            "INSERT INTO feedback (received_at, kind, format, recipient_id, message_id, address, \
             status, diagnostic, applied, sender, raw) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) RETURNING id",
        )?
        .query_row(
            params![
                to_ms(now),
                feedback.kind.as_str(),
                feedback.format,
                target.as_ref().map(|(r, _, _)| r),
                target.as_ref().map(|(_, m, _)| m),
                clean(&feedback.address),
                clean(&feedback.status),
                clean(&feedback.diagnostic),
                applied.map(RecipientState::as_str),
                crate::engine::policy::sanitize_reply(&feedback.sender),
                kept(feedback, matched),
            ],
            |row| row.get(0),
        )?;
    if !matched {
        tx.prepare_cached(&crate::feedback::prune_unmatched_sql("?1"))?
            .execute([crate::feedback::MAX_UNMATCHED_REPORTS])?;
    }
    Ok(FeedbackApplied {
        id,
        message_id: target.as_ref().map(|(_, m, _)| m.clone()),
        recipient: target.map(|(_, _, a)| a),
        state: applied,
        suppressed,
    })
}

const COLUMNS: &str = "id, received_at, kind, format, message_id, recipient_id, address, status, \
                       diagnostic, applied, sender, COALESCE(length(raw), 0)";

/// One page of reports, newest first.
pub(super) fn list(
    conn: &Connection,
    filter: &FeedbackFilter,
) -> Result<Vec<FeedbackRecord>, StoreError> {
    let limit = i64::from(filter.limit.clamp(1, 1000));
    let before = filter.before.unwrap_or(i64::MAX);
    let condition = match (&filter.message_id, filter.unmatched) {
        (Some(_), _) => "message_id = ?3 AND id < ?1",
        (None, true) => "recipient_id IS NULL AND id < ?1",
        (None, false) => "id < ?1",
    };
    let mut select = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM feedback WHERE {condition} ORDER BY id DESC LIMIT ?2"
    ))?;
    let map = |row: &rusqlite::Row<'_>| {
        Ok((
            row.get::<_, i64>(0)?,
            row.get::<_, i64>(1)?,
            row.get::<_, String>(2)?,
            row.get::<_, String>(3)?,
            row.get::<_, Option<String>>(4)?,
            row.get::<_, Option<i64>>(5)?,
            (
                row.get::<_, Option<String>>(6)?,
                row.get::<_, Option<String>>(7)?,
                row.get::<_, Option<String>>(8)?,
                row.get::<_, Option<String>>(9)?,
                row.get::<_, String>(10)?,
                row.get::<_, i64>(11)?,
            ),
        ))
    };
    let rows: Vec<_> = match &filter.message_id {
        Some(message) => select
            .query_map(params![before, limit, message], map)?
            .collect::<Result<_, _>>()?,
        None => select
            .query_map(params![before, limit], map)?
            .collect::<Result<_, _>>()?,
    };
    rows.into_iter()
        .map(
            |(
                id,
                at,
                kind,
                format,
                message_id,
                recipient_id,
                (address, status, diagnostic, applied, sender, kept),
            )| {
                Ok(FeedbackRecord {
                    id,
                    received_at: from_ms(at),
                    kind: FeedbackKind::parse(&kind)?,
                    format,
                    message_id,
                    recipient_id,
                    address,
                    status,
                    diagnostic,
                    applied,
                    sender,
                    kept_bytes: u64::try_from(kept).unwrap_or(0),
                })
            },
        )
        .collect()
}

/// The report text kept for an unmatched report; `None` when there is no such row or it
/// kept none.
pub(super) fn raw(conn: &Connection, id: i64) -> Result<Option<Vec<u8>>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT raw FROM feedback WHERE id = ?1")?
        .query_row([id], |row| row.get::<_, Option<Vec<u8>>>(0))
        .optional()?
        .flatten())
}
