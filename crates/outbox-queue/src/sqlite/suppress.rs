//! SQLite statements of the suppression list (migration 5): add, remove, list, look up,
//! and the marking of suppressed recipients at enqueue and at a claim. Each runs a
//! constant number of statements whatever the batch size.

use rusqlite::{Connection, OptionalExtension, Transaction, params};
use time::OffsetDateTime;

use crate::StoreError;
use crate::schema::refresh_statuses_sql;
use crate::suppression::{
    NewSuppression, Suppression, SuppressionFilter, SuppressionPage, SuppressionReason,
    normalise_address, normalise_list, reply_sql,
};
use crate::timefmt::to_ms;

const COLUMNS: &str = "address, list, reason, created_at, message_id";

fn from_row(
    row: &rusqlite::Row<'_>,
) -> rusqlite::Result<(String, String, String, i64, Option<String>)> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
    ))
}

fn build(
    (address, list, reason, at, message_id): (String, String, String, i64, Option<String>),
) -> Result<Suppression, StoreError> {
    Suppression::from_row(address, list, &reason, at, message_id)
}

/// Upserts a suppression: a repeated one keeps its `created_at`, takes the new reason,
/// and keeps its message id unless it had none.
pub(super) fn add(
    tx: &Transaction<'_>,
    new: &NewSuppression,
    now: OffsetDateTime,
) -> Result<Suppression, StoreError> {
    let address = normalise_address(&new.address)?;
    let list = normalise_list(new.list.as_deref().unwrap_or(""))?;
    let before: Option<String> = tx
        .prepare_cached("SELECT reason FROM suppressions WHERE address = ?1 AND list = ?2")?
        .query_row(params![address, list], |row| row.get(0))
        .optional()?;
    let row = tx
        .prepare_cached(&format!(
            "INSERT INTO suppressions ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5) \
             ON CONFLICT (address, list) DO UPDATE SET reason = excluded.reason, \
             message_id = COALESCE(excluded.message_id, suppressions.message_id) \
             RETURNING {COLUMNS}"
        ))?
        .query_row(
            params![
                address,
                list,
                new.reason.as_str(),
                to_ms(now),
                new.message_id
            ],
            from_row,
        )?;
    let stored = build(row)?;
    // An unsubscribe is an event once: a repeated one changes nothing.
    if new.reason == SuppressionReason::Unsubscribed
        && before.as_deref() != Some(SuppressionReason::Unsubscribed.as_str())
    {
        super::events::insert_unsubscribed(
            tx,
            &address,
            new.message_id.as_deref(),
            &crate::suppression::unsubscribed_reply(&list),
            now,
        )?;
    }
    Ok(stored)
}

/// Deletes one suppression; true when there was one.
pub(super) fn remove(tx: &Transaction<'_>, address: &str, list: &str) -> Result<bool, StoreError> {
    let address = normalise_address(address)?;
    let list = normalise_list(list)?;
    let deleted = tx
        .prepare_cached("DELETE FROM suppressions WHERE address = ?1 AND list = ?2")?
        .execute(params![address, list])?;
    Ok(deleted > 0)
}

/// One page, by (address, list).
pub(super) fn list(
    conn: &Connection,
    filter: &SuppressionFilter,
) -> Result<SuppressionPage, StoreError> {
    let q = filter.query()?;
    let mut select = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM suppressions \
         WHERE (?1 IS NULL OR address = ?1) AND (?2 IS NULL OR list = ?2) \
         AND (?3 IS NULL OR address > ?3 OR (address = ?3 AND list > ?4)) \
         ORDER BY address, list LIMIT ?5"
    ))?;
    let rows = select.query_map(
        params![
            q.address,
            q.list,
            q.after_address,
            q.after_list,
            q.limit + 1
        ],
        from_row,
    )?;
    let items = rows
        .map(|row| build(row?))
        .collect::<Result<Vec<_>, StoreError>>()?;
    Ok(q.page(items))
}

/// The suppressions that stop mail from `list` to any of `addresses`.
pub(super) fn matching(
    conn: &Connection,
    addresses: &[String],
    list: &str,
) -> Result<Vec<Suppression>, StoreError> {
    let addresses: Vec<String> = addresses
        .iter()
        .filter_map(|a| normalise_address(a).ok())
        .collect();
    let list = normalise_list(list)?;
    let json = serde_json::to_string(&addresses)
        .map_err(|err| StoreError::Worker(format!("encoding addresses as JSON: {err}")))?;
    let mut select = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM suppressions \
         WHERE address IN (SELECT value FROM json_each(?1)) AND list IN ('', ?2) \
         ORDER BY address, list"
    ))?;
    let rows = select.query_map(params![json, list], from_row)?;
    rows.map(|row| build(row?)).collect()
}

/// The statement that marks suppressed recipients among the rows `condition` selects
/// (a condition on `r`), returning their message ids. The uncorrelated `EXISTS` is run
/// once: with an empty list, no recipient is probed. `lower` folds ASCII only, as the
/// normalisation of stored addresses does.
fn mark_sql(condition: &str) -> String {
    format!(
        "UPDATE recipients AS r SET state = 'suppressed', lease_owner = NULL, \
         last_reply = (SELECT {reply} FROM suppressions s, messages m \
           WHERE m.id = r.message_id AND s.address = lower(r.address) AND s.list IN ('', m.list) \
           ORDER BY s.list LIMIT 1) \
         WHERE {condition} AND EXISTS (SELECT 1 FROM suppressions) \
         AND EXISTS (SELECT 1 FROM suppressions s, messages m WHERE m.id = r.message_id \
           AND s.address = lower(r.address) AND s.list IN ('', m.list)) \
         RETURNING message_id",
        reply = reply_sql(true, "s"),
    )
}

/// Marks the suppressed recipients among the `queued` ones of `message_id` with a row id
/// over `after` (those just inserted), and refreshes the message's status. Returns how
/// many were marked.
pub(super) fn mark_new(
    tx: &Transaction<'_>,
    message_ids: &[&str],
    after: i64,
) -> Result<u64, StoreError> {
    let json = serde_json::to_string(message_ids)
        .map_err(|err| StoreError::Worker(format!("encoding message ids as JSON: {err}")))?;
    let marked: Vec<String> = tx
        .prepare_cached(&mark_sql(
            "r.message_id IN (SELECT value FROM json_each(?1)) AND r.id > ?2 AND r.state = 'queued'",
        ))?
        .query_map(params![json, after], |row| row.get(0))?
        .collect::<Result<_, _>>()?;
    refresh(tx, &marked)?;
    Ok(marked.len() as u64)
}

/// Marks the suppressed recipients among the just claimed `ids` (state `sending`, leased
/// in this transaction) and refreshes their messages' statuses. Returns the ids marked.
pub(super) fn mark_claimed(tx: &Transaction<'_>, ids: &[i64]) -> Result<Vec<i64>, StoreError> {
    let json = serde_json::to_string(ids)
        .map_err(|err| StoreError::Worker(format!("encoding ids as JSON: {err}")))?;
    let sql = mark_sql("r.id IN (SELECT value FROM json_each(?1)) AND r.state = 'sending'")
        .replace("RETURNING message_id", "RETURNING message_id, id");
    let marked: Vec<(String, i64)> = tx
        .prepare_cached(&sql)?
        .query_map([json], |row| Ok((row.get(0)?, row.get(1)?)))?
        .collect::<Result<_, _>>()?;
    let messages: Vec<String> = marked.iter().map(|(m, _)| m.clone()).collect();
    refresh(tx, &messages)?;
    Ok(marked.into_iter().map(|(_, id)| id).collect())
}

/// The largest recipient row id so far (0 for none): rows inserted after have larger ids.
pub(super) fn last_recipient_id(tx: &Transaction<'_>) -> Result<i64, StoreError> {
    Ok(tx
        .prepare_cached("SELECT MAX(id) FROM recipients")?
        .query_row([], |row| row.get::<_, Option<i64>>(0))
        .optional()?
        .flatten()
        .unwrap_or(0))
}

fn refresh(tx: &Transaction<'_>, message_ids: &[String]) -> Result<(), StoreError> {
    if message_ids.is_empty() {
        return Ok(());
    }
    let json = serde_json::to_string(message_ids)
        .map_err(|err| StoreError::Worker(format!("encoding message ids as JSON: {err}")))?;
    tx.prepare_cached(&refresh_statuses_sql(
        "id IN (SELECT value FROM json_each(?1))",
    ))?
    .execute([json])?;
    Ok(())
}
