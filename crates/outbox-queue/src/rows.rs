//! Row shapes and conversions shared by both backends: the statements differ, the
//! columns they return do not.

use std::collections::HashMap;

use crate::StoreError;
use crate::model::{
    AttemptOutcome, AttemptRecord, Claimed, ClaimedRecipient, ListPage, MessageStatus,
    MessageSummary, RouteKey, StatusCounts,
};
use crate::prepare::parse_merge;
use crate::timefmt::from_ms;

/// A claimed recipient row before grouping.
pub(crate) struct RawClaim {
    pub id: i64,
    pub message_id: String,
    pub address: String,
    pub domain: String,
    pub route: String,
    pub attempts: i64,
    pub merge: Option<String>,
    pub priority: i64,
    pub next_attempt_at: i64,
    pub epoch: i64,
}

/// The message columns a work unit carries.
pub(crate) struct MessageInfo {
    pub envelope_from: String,
    pub relay: Option<String>,
    pub size: i64,
    /// Written per recipient: it has tokens, or asked for unsubscribe headers.
    pub per_recipient: bool,
}

/// Groups claimed rows into work units by (message, route), in claim order (priority,
/// due time, id: a statement's RETURNING rows come in no particular order), taking each
/// message's columns from `info` once.
pub(crate) fn group(
    mut rows: Vec<RawClaim>,
    mut info: impl FnMut(&str) -> Result<MessageInfo, StoreError>,
) -> Result<Vec<Claimed>, StoreError> {
    rows.sort_unstable_by_key(|r| (r.priority, r.next_attempt_at, r.id));
    let mut units: Vec<Claimed> = Vec::new();
    let mut index: HashMap<(String, String), usize> = HashMap::new();
    let mut messages: HashMap<String, MessageInfo> = HashMap::new();
    for row in rows {
        if !messages.contains_key(&row.message_id) {
            let found = info(&row.message_id)?;
            messages.insert(row.message_id.clone(), found);
        }
        let merge = parse_merge(row.merge)?;
        let recipient = ClaimedRecipient {
            id: row.id,
            epoch: row.epoch,
            address: row.address,
            domain: row.domain,
            attempts: u32::try_from(row.attempts).unwrap_or(u32::MAX),
            merge,
        };
        let key = (row.message_id, row.route);
        match index.get(&key) {
            Some(&at) => {
                let unit = &mut units[at];
                unit.needs_merge |= recipient.merge.is_some();
                unit.recipients.push(recipient);
            }
            None => {
                let message = &messages[&key.0];
                index.insert(key.clone(), units.len());
                units.push(Claimed {
                    message_id: key.0,
                    route: RouteKey::from_key(&key.1)?,
                    envelope_from: message.envelope_from.clone(),
                    relay: message.relay.clone(),
                    priority: crate::model::priority_from_rank(row.priority)?,
                    size: u64::try_from(message.size).unwrap_or(0),
                    needs_merge: message.per_recipient || recipient.merge.is_some(),
                    recipients: vec![recipient],
                });
            }
        }
    }
    Ok(units)
}

/// Raw summary columns, in `SUMMARY_COLUMNS` order.
pub(crate) type SummaryRow = (String, String, String, i64, String, i64, i64, i64, i64);

/// Builds a summary from raw columns.
pub(crate) fn summary_from(row: SummaryRow) -> Result<MessageSummary, StoreError> {
    let (id, status, subject, priority, from, created_at, send_at, recipients, size) = row;
    Ok(MessageSummary {
        id,
        status: MessageStatus::parse(&status)?,
        subject,
        priority: crate::model::priority_from_rank(priority)?,
        from,
        created_at: from_ms(created_at),
        send_at: from_ms(send_at),
        recipients: u64::try_from(recipients).unwrap_or(0),
        size: u64::try_from(size).unwrap_or(0),
    })
}

/// A page with its cursor: there may be more when the page is full.
pub(crate) fn page(items: Vec<MessageSummary>, limit: u32) -> ListPage {
    let full = items.len() >= limit.clamp(1, crate::listing::MAX_PAGE) as usize;
    let next_cursor = if full {
        items.last().map(|m| m.id.clone())
    } else {
        None
    };
    ListPage { items, next_cursor }
}

/// Adds one `GROUP BY status` row.
pub(crate) fn add_count(counts: &mut StatusCounts, status: &str, n: i64) -> Result<(), StoreError> {
    let n = u64::try_from(n).unwrap_or(0);
    match MessageStatus::parse(status)? {
        MessageStatus::Queued => counts.queued += n,
        MessageStatus::Sent => counts.sent += n,
        MessageStatus::Error => counts.error += n,
    }
    Ok(())
}

/// Raw attempt columns.
pub(crate) type AttemptRow = (
    i64,
    String,
    Option<String>,
    Option<i64>,
    String,
    String,
    i64,
);

/// Builds an attempt record from raw columns.
pub(crate) fn attempt_from(row: AttemptRow) -> Result<AttemptRecord, StoreError> {
    let (at, recipient, host, code, reply, outcome, duration_ms) = row;
    Ok(AttemptRecord {
        at: from_ms(at),
        recipient,
        host,
        code: code.and_then(|c| u16::try_from(c).ok()),
        reply,
        outcome: AttemptOutcome::parse(&outcome)?,
        duration_ms: u64::try_from(duration_ms).unwrap_or(0),
    })
}

/// Removes NUL bytes, which PostgreSQL TEXT refuses (and SQLite's text functions stop
/// at): a reply is sanitised by the engine, but one NUL must never fail a whole batch.
pub(crate) fn without_nul(text: &str) -> std::borrow::Cow<'_, str> {
    if text.contains('\0') {
        std::borrow::Cow::Owned(text.replace('\0', ""))
    } else {
        std::borrow::Cow::Borrowed(text)
    }
}

/// A value from the user, shortened for an error message (at most 80 characters).
pub(crate) fn shown(text: &str) -> String {
    if text.chars().count() <= 80 {
        text.to_string()
    } else {
        let mut short: String = text.chars().take(80).collect();
        short.push_str("...");
        short
    }
}
