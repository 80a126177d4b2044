//! The `list` query, built once for both backends: they differ only in placeholder
//! syntax and in the substring function.

use crate::ListFilter;
use crate::StoreError;
use crate::prepare::check_id;
use crate::timefmt::to_ms;

/// A bound value of the list query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Arg {
    Int(i64),
    Text(String),
}

/// The SQL dialect differences that matter here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
}

/// The columns every summary query selects, in the order `summary_from_row` reads them.
pub(crate) const SUMMARY_COLUMNS: &str = "m.id, m.status, m.subject, m.priority, m.envelope_from, m.created_at, m.send_at, m.recipient_count, m.size";

/// Largest page `list` returns.
pub(crate) const MAX_PAGE: u32 = 1000;

/// Builds the list query and its arguments. The cursor is the last id of the previous
/// page; ids are ULIDs, so `id < cursor` walks back in time.
pub(crate) fn list_query(
    filter: &ListFilter,
    dialect: Dialect,
) -> Result<(String, Vec<Arg>), StoreError> {
    let mut args = Vec::new();
    let mut conditions = Vec::new();
    let bind = |arg: Arg, args: &mut Vec<Arg>| {
        args.push(arg);
        match dialect {
            Dialect::Sqlite => format!("?{}", args.len()),
            Dialect::Postgres => format!("${}", args.len()),
        }
    };
    if let Some(status) = filter.status {
        let p = bind(Arg::Text(status.as_str().to_string()), &mut args);
        conditions.push(format!("m.status = {p}"));
    }
    if let Some(priority) = filter.priority {
        let p = bind(Arg::Int(crate::model::priority_rank(priority)), &mut args);
        conditions.push(format!("m.priority = {p}"));
    }
    if let Some(before) = filter.before {
        let p = bind(Arg::Int(to_ms(before)), &mut args);
        conditions.push(format!("m.created_at < {p}"));
    }
    if let Some(after) = filter.after {
        let p = bind(Arg::Int(to_ms(after)), &mut args);
        conditions.push(format!("m.created_at > {p}"));
    }
    if let Some(domain) = &filter.domain {
        let p = bind(
            Arg::Text(domain.trim_start_matches('@').to_ascii_lowercase()),
            &mut args,
        );
        conditions.push(format!(
            "EXISTS (SELECT 1 FROM recipients r WHERE r.message_id = m.id AND r.domain = {p})"
        ));
    }
    if let Some(subject) = &filter.subject {
        let p = bind(Arg::Text(subject.to_lowercase()), &mut args);
        conditions.push(match dialect {
            Dialect::Sqlite => format!("instr(lower(m.subject), {p}) > 0"),
            Dialect::Postgres => format!("strpos(lower(m.subject), {p}) > 0"),
        });
    }
    if let Some(cursor) = &filter.cursor {
        check_id(cursor)?;
        let p = bind(Arg::Text(cursor.clone()), &mut args);
        conditions.push(format!("m.id < {p}"));
    }
    let limit = filter.limit.clamp(1, MAX_PAGE);
    let p = bind(Arg::Int(i64::from(limit)), &mut args);
    let where_clause = if conditions.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conditions.join(" AND "))
    };
    Ok((
        format!(
            "SELECT {SUMMARY_COLUMNS} FROM messages m{where_clause} ORDER BY m.id DESC LIMIT {p}"
        ),
        args,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MessageStatus, Priority};

    #[test]
    fn filters_become_numbered_placeholders() {
        let filter = ListFilter {
            status: Some(MessageStatus::Queued),
            priority: Some(Priority::High),
            domain: Some("Example.com".into()),
            limit: 5000,
            ..ListFilter::default()
        };
        let (sql, args) = list_query(&filter, Dialect::Postgres).unwrap();
        assert!(
            sql.contains("m.status = $1 AND m.priority = $2 AND EXISTS"),
            "{sql}"
        );
        assert!(sql.ends_with("LIMIT $4"), "{sql}");
        assert_eq!(args[2], Arg::Text("example.com".into()));
        assert_eq!(args[3], Arg::Int(1000));
        let (sql, _) = list_query(&ListFilter::default(), Dialect::Sqlite).unwrap();
        assert!(sql.ends_with("ORDER BY m.id DESC LIMIT ?1"), "{sql}");
    }

    #[test]
    fn a_bad_cursor_is_refused() {
        let filter = ListFilter {
            cursor: Some("x'; DROP TABLE messages".into()),
            ..ListFilter::default()
        };
        assert!(matches!(
            list_query(&filter, Dialect::Sqlite),
            Err(StoreError::InvalidId { .. })
        ));
    }
}
