//! PostgreSQL statements for suspended destinations (migration 4) and the pending
//! domains `queue list` matches them against. Each is one statement, one round trip.

use std::collections::HashMap;

use deadpool_postgres::Client;
use time::OffsetDateTime;

use crate::StoreError;
use crate::model::StoredSuspension;
use crate::rows::without_nul;
use crate::schema::DUE_STATES;
use crate::timefmt::to_ms;

/// Upserts one suspension and deletes the ended ones (other than it) in one statement.
pub(super) async fn suspend(
    client: &Client,
    suspension: &StoredSuspension,
    now: OffsetDateTime,
) -> Result<(), StoreError> {
    let statement = client
        .prepare_cached(
            "WITH ended AS (DELETE FROM suspensions WHERE until <= $6 AND destination <> $1) \
             INSERT INTO suspensions (destination, reason, until, times, domains, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (destination) DO UPDATE SET reason = EXCLUDED.reason, \
             until = EXCLUDED.until, times = EXCLUDED.times, domains = EXCLUDED.domains, \
             updated_at = EXCLUDED.updated_at",
        )
        .await?;
    client
        .execute(
            &statement,
            &[
                &without_nul(&suspension.destination).as_ref(),
                &without_nul(&suspension.reason).as_ref(),
                &to_ms(suspension.until),
                &suspension.times_column(),
                &suspension.domains_column(),
                &to_ms(now),
            ],
        )
        .await?;
    Ok(())
}

pub(super) async fn lift(client: &Client, destination: &str) -> Result<(), StoreError> {
    client
        .execute(
            "DELETE FROM suspensions WHERE destination = $1",
            &[&without_nul(destination).as_ref()],
        )
        .await?;
    Ok(())
}

pub(super) async fn active(
    client: &Client,
    now: OffsetDateTime,
) -> Result<Vec<StoredSuspension>, StoreError> {
    // Read on every heartbeat tick of every worker: prepared once per connection.
    let statement = client
        .prepare_cached(
            "SELECT destination, reason, until, times, domains FROM suspensions \
             WHERE until > $1 ORDER BY until, destination",
        )
        .await?;
    let rows = client.query(&statement, &[&to_ms(now)]).await?;
    Ok(rows
        .iter()
        .map(|row| {
            StoredSuspension::from_row(
                row.get(0),
                row.get(1),
                row.get(2),
                i64::from(row.get::<_, i32>(3)),
                row.get(4),
            )
        })
        .collect())
}

pub(super) async fn pending_domains(
    client: &Client,
    ids: &[String],
) -> Result<HashMap<String, Vec<String>>, StoreError> {
    let rows = client
        .query(
            &format!(
                "SELECT DISTINCT message_id, domain FROM recipients \
                 WHERE message_id = ANY($1) AND state IN {DUE_STATES} \
                 ORDER BY message_id, domain"
            ),
            &[&ids],
        )
        .await?;
    let mut domains: HashMap<String, Vec<String>> = HashMap::new();
    for row in &rows {
        domains.entry(row.get(0)).or_default().push(row.get(1));
    }
    Ok(domains)
}
