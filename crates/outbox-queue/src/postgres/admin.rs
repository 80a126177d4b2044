//! PostgreSQL statements for status, listing and administration.

use deadpool_postgres::Client as PooledClient;
use time::OffsetDateTime;
use tokio_postgres::Client;
use tokio_postgres::types::ToSql;

use crate::StoreError;
use crate::listing::{Arg, Dialect, SUMMARY_COLUMNS, list_query};
use crate::model::{
    AttemptRecord, ListFilter, ListPage, MessageBody, MessageDetail, MessageStatus, MessageSummary,
    RecipientState, RecipientStatus, StatusCounts,
};
use crate::prepare::parse_merge;
use crate::rows::{add_count, attempt_from, page, summary_from};
use crate::schema::{ACTIVE_STATES, refresh_status_sql};
use crate::timefmt::to_ms;

fn not_found(id: &str) -> StoreError {
    StoreError::NotFound { id: id.to_string() }
}

pub(super) async fn message_body(
    client: &PooledClient,
    id: &str,
) -> Result<MessageBody, StoreError> {
    // On the delivery path (a body the engine did not prefetch): prepared once per
    // connection, so each read is one round trip.
    let statement = client
        .prepare_cached(
            "SELECT b.data, m.tokens, CASE WHEN m.list_unsubscribe <> 0 THEN m.list END FROM messages m JOIN bodies b ON b.message_id = m.id \
             WHERE m.id = $1",
        )
        .await?;
    let row = client
        .query_opt(&statement, &[&id])
        .await?
        .ok_or_else(|| not_found(id))?;
    Ok(MessageBody {
        data: row.get(0),
        tokens: parse_merge(row.get(1))?,
        unsubscribe_list: row.get(2),
    })
}

pub(super) async fn status(client: &Client, id: &str) -> Result<MessageStatus, StoreError> {
    let row = client
        .query_opt("SELECT status FROM messages WHERE id = $1", &[&id])
        .await?
        .ok_or_else(|| not_found(id))?;
    MessageStatus::parse(row.get(0))
}

pub(super) async fn detail(client: &Client, id: &str) -> Result<MessageDetail, StoreError> {
    let status = status(client, id).await?;
    let rows = client
        .query(
            "SELECT address, state, attempts, last_reply FROM recipients WHERE message_id = $1 ORDER BY id",
            &[&id],
        )
        .await?;
    let recipients = rows
        .iter()
        .map(|row| {
            Ok(RecipientStatus {
                address: row.get(0),
                state: RecipientState::parse(row.get(1))?,
                attempts: u32::try_from(row.get::<_, i64>(2)).unwrap_or(u32::MAX),
                last_reply: row.get(3),
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    Ok(MessageDetail {
        id: id.to_string(),
        status,
        recipients,
    })
}

fn summary_row(row: &tokio_postgres::Row) -> Result<MessageSummary, StoreError> {
    summary_from((
        row.get(0),
        row.get(1),
        row.get(2),
        row.get(3),
        row.get(4),
        row.get(5),
        row.get(6),
        row.get(7),
        row.get(8),
    ))
}

pub(super) async fn summary(client: &Client, id: &str) -> Result<MessageSummary, StoreError> {
    let row = client
        .query_opt(
            &format!("SELECT {SUMMARY_COLUMNS} FROM messages m WHERE m.id = $1"),
            &[&id],
        )
        .await?
        .ok_or_else(|| not_found(id))?;
    summary_row(&row)
}

pub(super) async fn list(client: &Client, filter: &ListFilter) -> Result<ListPage, StoreError> {
    let (sql, args) = list_query(filter, Dialect::Postgres)?;
    let values: Vec<Box<dyn ToSql + Sync + Send>> = args
        .into_iter()
        .map(|arg| -> Box<dyn ToSql + Sync + Send> {
            match arg {
                Arg::Int(n) => Box::new(n),
                Arg::Text(s) => Box::new(s),
            }
        })
        .collect();
    let params: Vec<&(dyn ToSql + Sync)> =
        values.iter().map(|v| &**v as &(dyn ToSql + Sync)).collect();
    let rows = client.query(&sql, &params).await?;
    let items = rows
        .iter()
        .map(summary_row)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(page(items, filter.limit))
}

pub(super) async fn counts(client: &Client) -> Result<StatusCounts, StoreError> {
    let rows = client
        .query("SELECT status, COUNT(*) FROM messages GROUP BY status", &[])
        .await?;
    let mut counts = StatusCounts::default();
    for row in rows {
        add_count(&mut counts, row.get(0), row.get(1))?;
    }
    Ok(counts)
}

pub(super) async fn remove(client: &mut PooledClient, id: &str) -> Result<u64, StoreError> {
    let tx = client.transaction().await?;
    tx.query_opt("SELECT 1 FROM messages WHERE id = $1 FOR UPDATE", &[&id])
        .await?
        .ok_or_else(|| not_found(id))?;
    let removed = tx
        .execute(
            &format!(
                "UPDATE recipients SET state = 'removed', lease_owner = NULL \
                 WHERE message_id = $1 AND state IN {ACTIVE_STATES}"
            ),
            &[&id],
        )
        .await?;
    tx.execute(&refresh_status_sql("$1"), &[&id]).await?;
    tx.commit().await?;
    Ok(removed)
}

pub(super) async fn retry(
    client: &mut PooledClient,
    id: &str,
    now: OffsetDateTime,
) -> Result<u64, StoreError> {
    let tx = client.transaction().await?;
    tx.query_opt("SELECT 1 FROM messages WHERE id = $1 FOR UPDATE", &[&id])
        .await?
        .ok_or_else(|| not_found(id))?;
    let retried = tx
        .execute(
            "UPDATE recipients SET state = 'queued', next_attempt_at = $2 \
             WHERE message_id = $1 AND state IN ('deferred', 'failed')",
            &[&id, &to_ms(now)],
        )
        .await?;
    tx.execute(&refresh_status_sql("$1"), &[&id]).await?;
    tx.execute("SELECT pg_notify($1, $2)", &[&super::listen::CHANNEL, &id])
        .await?;
    tx.commit().await?;
    Ok(retried)
}

pub(super) async fn purge(
    client: &mut PooledClient,
    before: OffsetDateTime,
) -> Result<u64, StoreError> {
    let tx = client.transaction().await?;
    // Recipients and attempts go with their message (ON DELETE CASCADE).
    let purged = tx
        .execute(
            "DELETE FROM messages WHERE status IN ('sent', 'error') AND created_at < $1",
            &[&to_ms(before)],
        )
        .await?;
    tx.commit().await?;
    Ok(purged)
}

pub(super) async fn attempts(client: &Client, id: &str) -> Result<Vec<AttemptRecord>, StoreError> {
    status(client, id).await?;
    let rows = client
        .query(
            "SELECT a.at, r.address, a.host, a.code, a.reply, a.outcome, a.duration_ms \
             FROM attempts a JOIN recipients r ON r.id = a.recipient_id \
             WHERE a.message_id = $1 ORDER BY a.id",
            &[&id],
        )
        .await?;
    rows.iter()
        .map(|row| {
            attempt_from((
                row.get(0),
                row.get(1),
                row.get(2),
                row.get(3),
                row.get(4),
                row.get(5),
                row.get(6),
            ))
        })
        .collect()
}
