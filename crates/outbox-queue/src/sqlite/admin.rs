//! SQLite statements for status, listing and administration.

use rusqlite::{Connection, OptionalExtension, Row, Transaction, params};
use time::OffsetDateTime;

use crate::StoreError;
use crate::listing::{Arg, Dialect, SUMMARY_COLUMNS, list_query};
use crate::model::{
    AttemptRecord, ListFilter, ListPage, MessageBody, MessageDetail, MessageStatus, MessageSummary,
    RecipientState, RecipientStatus, StatusCounts,
};
use crate::prepare::parse_merge;
use crate::rows::{SummaryRow, add_count, attempt_from, page, summary_from};
use crate::schema::{ACTIVE_STATES, refresh_status_sql};
use crate::timefmt::to_ms;

fn not_found(id: &str) -> StoreError {
    StoreError::NotFound { id: id.to_string() }
}

pub(super) fn message_body(conn: &Connection, id: &str) -> Result<MessageBody, StoreError> {
    let (data, tokens, unsubscribe_list): (Vec<u8>, Option<String>, Option<String>) = conn
        .prepare_cached("SELECT b.data, m.tokens, CASE WHEN m.list_unsubscribe <> 0 THEN m.list END FROM messages m JOIN bodies b ON b.message_id = m.id WHERE m.id = ?1")?
        .query_row([id], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
        .optional()?
        .ok_or_else(|| not_found(id))?;
    Ok(MessageBody {
        data,
        tokens: parse_merge(tokens)?,
        unsubscribe_list,
    })
}

pub(super) fn status(conn: &Connection, id: &str) -> Result<MessageStatus, StoreError> {
    let status: String = conn
        .prepare_cached("SELECT status FROM messages WHERE id = ?1")?
        .query_row([id], |row| row.get(0))
        .optional()?
        .ok_or_else(|| not_found(id))?;
    MessageStatus::parse(&status)
}

pub(super) fn detail(conn: &Connection, id: &str) -> Result<MessageDetail, StoreError> {
    let status = status(conn, id)?;
    let mut select = conn.prepare_cached(
        "SELECT address, state, attempts, last_reply FROM recipients WHERE message_id = ?1 ORDER BY id",
    )?;
    let rows = select.query_map([id], |row| {
        Ok((
            row.get::<_, String>(0)?,
            row.get::<_, String>(1)?,
            row.get::<_, i64>(2)?,
            row.get(3)?,
        ))
    })?;
    let mut recipients = Vec::new();
    for row in rows {
        let (address, state, attempts, last_reply) = row?;
        recipients.push(RecipientStatus {
            address,
            state: RecipientState::parse(&state)?,
            attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
            last_reply,
        });
    }
    Ok(MessageDetail {
        id: id.to_string(),
        status,
        recipients,
    })
}

fn summary_row(row: &Row<'_>) -> rusqlite::Result<SummaryRow> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
        row.get(5)?,
        row.get(6)?,
        row.get(7)?,
        row.get(8)?,
    ))
}

pub(super) fn summary(conn: &Connection, id: &str) -> Result<MessageSummary, StoreError> {
    let row = conn
        .prepare_cached(&format!(
            "SELECT {SUMMARY_COLUMNS} FROM messages m WHERE m.id = ?1"
        ))?
        .query_row([id], summary_row)
        .optional()?
        .ok_or_else(|| not_found(id))?;
    summary_from(row)
}

pub(super) fn list(conn: &Connection, filter: &ListFilter) -> Result<ListPage, StoreError> {
    let (sql, args) = list_query(filter, Dialect::Sqlite)?;
    let values: Vec<rusqlite::types::Value> = args
        .into_iter()
        .map(|arg| match arg {
            Arg::Int(n) => rusqlite::types::Value::Integer(n),
            Arg::Text(s) => rusqlite::types::Value::Text(s),
        })
        .collect();
    let mut select = conn.prepare(&sql)?;
    let rows = select.query_map(rusqlite::params_from_iter(values), summary_row)?;
    let items = rows
        .map(|row| summary_from(row?))
        .collect::<Result<Vec<_>, StoreError>>()?;
    Ok(page(items, filter.limit))
}

pub(super) fn counts(conn: &Connection) -> Result<StatusCounts, StoreError> {
    let mut select =
        conn.prepare_cached("SELECT status, COUNT(*) FROM messages GROUP BY status")?;
    let rows = select.query_map([], |row| {
        Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
    })?;
    let mut counts = StatusCounts::default();
    for row in rows {
        let (status, n) = row?;
        add_count(&mut counts, &status, n)?;
    }
    Ok(counts)
}

fn require(tx: &Transaction<'_>, id: &str) -> Result<(), StoreError> {
    let found: Option<i64> = tx
        .query_row("SELECT 1 FROM messages WHERE id = ?1", [id], |row| {
            row.get(0)
        })
        .optional()?;
    found.map(|_| ()).ok_or_else(|| not_found(id))
}

pub(super) fn remove(tx: &Transaction<'_>, id: &str) -> Result<u64, StoreError> {
    require(tx, id)?;
    let removed = tx.execute(
        &format!(
            "UPDATE recipients SET state = 'removed', lease_owner = NULL \
             WHERE message_id = ?1 AND state IN {ACTIVE_STATES}"
        ),
        [id],
    )?;
    tx.execute(&refresh_status_sql("?1"), [id])?;
    Ok(removed as u64)
}

pub(super) fn retry(
    tx: &Transaction<'_>,
    id: &str,
    now: OffsetDateTime,
) -> Result<u64, StoreError> {
    require(tx, id)?;
    let retried = tx.execute(
        "UPDATE recipients SET state = 'queued', next_attempt_at = ?2 \
         WHERE message_id = ?1 AND state IN ('deferred', 'failed')",
        params![id, to_ms(now)],
    )?;
    tx.execute(&refresh_status_sql("?1"), [id])?;
    Ok(retried as u64)
}

pub(super) fn purge(tx: &Transaction<'_>, before: OffsetDateTime) -> Result<u64, StoreError> {
    // Children first, so the purge does not depend on foreign_keys being on.
    let old = "SELECT id FROM messages WHERE status IN ('sent', 'error') AND created_at < ?1";
    let cutoff = to_ms(before);
    tx.execute(
        &format!("DELETE FROM attempts WHERE message_id IN ({old})"),
        [cutoff],
    )?;
    tx.execute(
        &format!("DELETE FROM recipients WHERE message_id IN ({old})"),
        [cutoff],
    )?;
    let purged = tx.execute(
        "DELETE FROM messages WHERE status IN ('sent', 'error') AND created_at < ?1",
        [cutoff],
    )?;
    Ok(purged as u64)
}

pub(super) fn attempts(conn: &Connection, id: &str) -> Result<Vec<AttemptRecord>, StoreError> {
    status(conn, id)?;
    let mut select = conn.prepare_cached(
        "SELECT a.at, r.address, a.host, a.code, a.reply, a.outcome, a.duration_ms \
         FROM attempts a JOIN recipients r ON r.id = a.recipient_id \
         WHERE a.message_id = ?1 ORDER BY a.id",
    )?;
    let rows = select.query_map([id], |row| {
        Ok((
            row.get::<_, i64>(0)?,
            row.get::<_, String>(1)?,
            row.get::<_, Option<String>>(2)?,
            row.get::<_, Option<i64>>(3)?,
            row.get::<_, String>(4)?,
            row.get::<_, String>(5)?,
            row.get::<_, i64>(6)?,
        ))
    })?;
    rows.map(|row| attempt_from(row?)).collect()
}
