//! PostgreSQL statements of the suppression list (migration 5): add, remove, list, look
//! up, and the probe that enqueue and claim run per recipient. Each is one statement.

use deadpool_postgres::Client;
use time::OffsetDateTime;
use tokio_postgres::Row;

use crate::StoreError;
use crate::schema::refresh_statuses_sql;
use crate::suppression::{
    NewSuppression, Suppression, SuppressionFilter, SuppressionPage, normalise_address,
    normalise_list, reply_sql,
};
use crate::timefmt::to_ms;

const COLUMNS: &str = "address, list, reason, created_at, message_id";

fn build(row: &Row) -> Result<Suppression, StoreError> {
    Suppression::from_row(
        row.get(0),
        row.get(1),
        row.get::<_, &str>(2),
        row.get(3),
        row.get(4),
    )
}

/// The reply (`suppressed: ...`) for the recipient address `address` (an SQL expression)
/// of a message of list `list` (an SQL expression), or NULL when it is not suppressed:
/// two lookups by the primary key (`address` and `list` both in the index condition),
/// every-list first. `lower` of a "C" collated text folds ASCII only, as the
/// normalisation of stored addresses does.
pub(crate) fn reply_of(address: &str, list: &str) -> String {
    let reply = reply_sql(false, "s");
    // Folded under "C" (ASCII only), then compared under the column's own collation: a
    // "C" collated comparison could not use the primary key's index, and would walk it.
    let folded = format!("(lower({address} COLLATE \"C\") COLLATE \"default\")");
    format!(
        "COALESCE((SELECT {reply} FROM suppressions s WHERE s.address = {folded} AND s.list = ''), \
         (SELECT {reply} FROM suppressions s WHERE s.address = {folded} AND s.list = {list}))"
    )
}

/// Upserts a suppression (see `Store::suppress`).
pub(super) async fn add(
    client: &Client,
    new: &NewSuppression,
    now: OffsetDateTime,
) -> Result<Suppression, StoreError> {
    let address = normalise_address(&new.address)?;
    let list = normalise_list(new.list.as_deref().unwrap_or(""))?;
    // An unsubscribe is an event once (in the same statement): a repeated one changes
    // nothing.
    let row = client
        .query_one(
            &format!(
                "WITH before AS (SELECT reason FROM suppressions WHERE address = $1 AND list = $2), \
                 up AS (INSERT INTO suppressions ({COLUMNS}) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (address, list) DO UPDATE SET reason = EXCLUDED.reason, \
                 message_id = COALESCE(EXCLUDED.message_id, suppressions.message_id) \
                 RETURNING {COLUMNS}), \
                 ev AS (INSERT INTO events (message_id, recipient_id, address, type, state, reply, created_at) \
                 SELECT $5, (SELECT id FROM recipients WHERE message_id = $5 AND lower(address) = $1 \
                 ORDER BY id LIMIT 1), $1, 'unsubscribed', NULL, $6, $4 \
                 WHERE $3 = 'unsubscribed' AND NOT EXISTS (SELECT 1 FROM before WHERE reason = 'unsubscribed')) \
                 SELECT {COLUMNS} FROM up"
            ),
            &[
                &address,
                &list,
                &new.reason.as_str(),
                &to_ms(now),
                &new.message_id,
                &crate::suppression::unsubscribed_reply(&list),
            ],
        )
        .await?;
    build(&row)
}

/// Deletes one suppression; true when there was one.
pub(super) async fn remove(client: &Client, address: &str, list: &str) -> Result<bool, StoreError> {
    let address = normalise_address(address)?;
    let list = normalise_list(list)?;
    let deleted = client
        .execute(
            "DELETE FROM suppressions WHERE address = $1 AND list = $2",
            &[&address, &list],
        )
        .await?;
    Ok(deleted > 0)
}

/// One page, by (address, list).
pub(super) async fn list(
    client: &Client,
    filter: &SuppressionFilter,
) -> Result<SuppressionPage, StoreError> {
    let q = filter.query()?;
    let rows = client
        .query(
            &format!(
                "SELECT {COLUMNS} FROM suppressions \
                 WHERE ($1::text IS NULL OR address = $1) AND ($2::text IS NULL OR list = $2) \
                 AND ($3::text IS NULL OR (address, list) > ($3, $4::text)) \
                 ORDER BY address, list LIMIT $5"
            ),
            &[
                &q.address,
                &q.list,
                &q.after_address,
                &q.after_list,
                &(q.limit + 1),
            ],
        )
        .await?;
    let items = rows.iter().map(build).collect::<Result<Vec<_>, _>>()?;
    Ok(q.page(items))
}

/// The suppressions that stop mail from `list` to any of `addresses`.
pub(super) async fn matching(
    client: &Client,
    addresses: &[String],
    list: &str,
) -> Result<Vec<Suppression>, StoreError> {
    let addresses: Vec<String> = addresses
        .iter()
        .filter_map(|a| normalise_address(a).ok())
        .collect();
    let list = normalise_list(list)?;
    let rows = client
        .query(
            &format!(
                "SELECT {COLUMNS} FROM suppressions WHERE address = ANY($1) AND list IN ('', $2) \
                 ORDER BY address, list"
            ),
            &[&addresses, &list],
        )
        .await?;
    rows.iter().map(build).collect()
}

/// Recomputes the statuses of messages that got suppressed recipients.
pub(super) async fn refresh<C: deadpool_postgres::GenericClient + Sync>(
    client: &C,
    message_ids: &[String],
) -> Result<(), StoreError> {
    if message_ids.is_empty() {
        return Ok(());
    }
    client
        .execute(&refresh_statuses_sql("id = ANY($1)"), &[&message_ids])
        .await?;
    Ok(())
}
