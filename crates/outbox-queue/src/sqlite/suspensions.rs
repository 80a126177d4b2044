//! SQLite statements for suspended destinations (migration 4) and the pending domains
//! `queue list` matches them against.

use std::collections::HashMap;

use rusqlite::{Connection, Transaction, params};
use time::OffsetDateTime;

use crate::StoreError;
use crate::model::StoredSuspension;
use crate::rows::without_nul;
use crate::schema::DUE_STATES;
use crate::timefmt::to_ms;

pub(super) fn suspend(
    tx: &Transaction<'_>,
    suspension: &StoredSuspension,
    now: OffsetDateTime,
) -> Result<(), StoreError> {
    let now = to_ms(now);
    tx.prepare_cached("DELETE FROM suspensions WHERE until <= ?1")?
        .execute([now])?;
    tx.prepare_cached(
        "INSERT INTO suspensions (destination, reason, until, times, domains, updated_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
         ON CONFLICT (destination) DO UPDATE SET reason = excluded.reason, until = excluded.until, \
         times = excluded.times, domains = excluded.domains, updated_at = excluded.updated_at",
    )?
    .execute(params![
        without_nul(&suspension.destination),
        without_nul(&suspension.reason),
        to_ms(suspension.until),
        suspension.times_column(),
        suspension.domains_column(),
        now,
    ])?;
    Ok(())
}

pub(super) fn lift(tx: &Transaction<'_>, destination: &str) -> Result<(), StoreError> {
    tx.prepare_cached("DELETE FROM suspensions WHERE destination = ?1")?
        .execute([destination])?;
    Ok(())
}

pub(super) fn active(
    conn: &Connection,
    now: OffsetDateTime,
) -> Result<Vec<StoredSuspension>, StoreError> {
    let mut select = conn.prepare_cached(
        "SELECT destination, reason, until, times, domains FROM suspensions \
         WHERE until > ?1 ORDER BY until, destination",
    )?;
    let rows = select.query_map([to_ms(now)], |row| {
        Ok(StoredSuspension::from_row(
            row.get(0)?,
            row.get(1)?,
            row.get(2)?,
            row.get(3)?,
            &row.get::<_, String>(4)?,
        ))
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

pub(super) fn pending_domains(
    conn: &Connection,
    ids: &[String],
) -> Result<HashMap<String, Vec<String>>, StoreError> {
    let ids = serde_json::to_string(ids)
        .map_err(|err| StoreError::Worker(format!("encoding message ids as JSON: {err}")))?;
    let mut select = conn.prepare_cached(&format!(
        "SELECT DISTINCT message_id, domain FROM recipients \
         WHERE message_id IN (SELECT value FROM json_each(?1)) AND state IN {DUE_STATES} \
         ORDER BY message_id, domain"
    ))?;
    let rows = select.query_map([ids], |row| {
        Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
    })?;
    let mut domains: HashMap<String, Vec<String>> = HashMap::new();
    for row in rows {
        let (id, domain) = row?;
        domains.entry(id).or_default().push(domain);
    }
    Ok(domains)
}
