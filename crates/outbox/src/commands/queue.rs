//! `outbox queue list | show | rm | retry | purge`: the Email Queue section of the
//! seed's Server Admin, on the command line.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::Duration;

use anyhow::Context as _;
use outbox_queue::engine::policy::sanitize_reply;
use outbox_queue::{
    ListFilter, MessageStatus, MessageSummary, Priority, Store, StoredSuspension, rfc3339,
};
use serde_json::json;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::cli::Globals;
use crate::config::Config;

/// Arguments of `outbox queue`.
#[derive(Debug, clap::Args)]
pub struct QueueArgs {
    #[command(subcommand)]
    pub command: QueueCommand,
}

/// What to do with the queue.
#[derive(Debug, clap::Subcommand)]
pub enum QueueCommand {
    /// List messages, newest first.
    List(ListArgs),
    /// Show one message: its recipients and its attempt log.
    Show {
        /// The message id.
        #[arg(value_name = "ID")]
        id: String,
    },
    /// Remove messages: every recipient not yet sent or failed becomes `removed`.
    Rm {
        /// Message ids.
        #[arg(value_name = "ID", required = true)]
        ids: Vec<String>,
    },
    /// Retry deferred and failed recipients now.
    Retry {
        /// Message ids.
        #[arg(value_name = "ID", required = true)]
        ids: Vec<String>,
    },
    /// Delete finished messages (sent or error) queued longer ago than a duration.
    Purge {
        /// How old, e.g. `30d`, `12h`.
        #[arg(long, value_name = "DURATION", value_parser = parse_age)]
        older_than: Duration,
    },
}

/// Filters of `queue list`.
#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Only messages with this status: queued, sent or error.
    #[arg(long, value_name = "STATUS")]
    pub status: Option<MessageStatus>,
    /// Only messages with this priority: high, medium or low.
    #[arg(long, value_name = "PRIORITY")]
    pub priority: Option<Priority>,
    /// Only messages with a recipient at this domain.
    #[arg(long, value_name = "DOMAIN")]
    pub domain: Option<String>,
    /// Only messages whose subject contains this text.
    #[arg(long, value_name = "TEXT")]
    pub subject: Option<String>,
    /// Only messages queued before this time (RFC 3339).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub before: Option<OffsetDateTime>,
    /// Only messages queued after this time (RFC 3339).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub after: Option<OffsetDateTime>,
    /// At most this many messages (1 to 1000).
    #[arg(long, value_name = "N", default_value_t = 50,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub limit: u32,
    /// Continue after this cursor (printed at the end of a full page).
    #[arg(long, value_name = "CURSOR")]
    pub cursor: Option<String>,
}

fn parse_age(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|err| format!("{err} (expected e.g. 30d, 12h)"))
}

fn parse_time(text: &str) -> Result<OffsetDateTime, String> {
    OffsetDateTime::parse(text, &Rfc3339)
        .map_err(|err| format!("{err} (expected RFC 3339, e.g. 2026-11-22T10:00:00Z)"))
}

/// Runs one `queue` subcommand.
pub async fn run(globals: &Globals, args: QueueArgs) -> anyhow::Result<()> {
    let config = globals.config()?;
    let store = crate::app::store(&config).await?;
    match args.command {
        QueueCommand::List(list) => run_list(&*store, globals.json, list).await,
        QueueCommand::Show { id } => run_show(&*store, &config, globals.json, &id).await,
        QueueCommand::Rm { ids } => {
            let removed = for_each_message(&*store, &ids, |id| store.remove(id)).await?;
            report(globals.json, "removed", &removed)
        }
        QueueCommand::Retry { ids } => {
            let now = OffsetDateTime::now_utc();
            let retried = for_each_message(&*store, &ids, |id| store.retry(id, now)).await?;
            report(globals.json, "retried", &retried)
        }
        QueueCommand::Purge { older_than } => {
            let cutoff = OffsetDateTime::now_utc()
                .checked_sub(
                    time::Duration::try_from(older_than).context("--older-than is too large")?,
                )
                .context("--older-than is too large")?;
            let purged = store.purge(cutoff).await?;
            if globals.json {
                println!("{}", json!({ "purged": purged }));
            } else {
                println!("purged {purged} messages");
            }
            Ok(())
        }
    }
}

/// Checks that every id exists before changing anything, then applies `action` to each.
async fn for_each_message<'s, F, Fut>(
    store: &dyn Store,
    ids: &'s [String],
    action: F,
) -> anyhow::Result<Vec<(&'s str, u64)>>
where
    F: Fn(&'s str) -> Fut,
    Fut: std::future::Future<Output = Result<u64, outbox_queue::StoreError>>,
{
    for id in ids {
        store.status(id).await?;
    }
    let mut done = Vec::with_capacity(ids.len());
    for id in ids {
        done.push((id.as_str(), action(id).await?));
    }
    Ok(done)
}

fn report(json: bool, verb: &str, done: &[(&str, u64)]) -> anyhow::Result<()> {
    if json {
        let items: Vec<_> = done
            .iter()
            .map(|(id, n)| json!({ "id": id, verb: n }))
            .collect();
        println!("{}", serde_json::to_string(&items)?);
    } else {
        for (id, n) in done {
            let plural = if *n == 1 { "" } else { "s" };
            println!("{id} {verb} ({n} recipient{plural})");
        }
    }
    Ok(())
}

async fn run_list(store: &dyn Store, json: bool, args: ListArgs) -> anyhow::Result<()> {
    let mut filter = ListFilter::default();
    filter.status = args.status;
    filter.priority = args.priority;
    filter.before = args.before;
    filter.after = args.after;
    filter.domain = args.domain;
    filter.subject = args.subject;
    filter.limit = args.limit;
    filter.cursor = args.cursor;
    let page = store.list(filter).await?;
    let suspensions = store.suspensions(OffsetDateTime::now_utc()).await?;
    let waiting = waiting_on(store, &page.items, &suspensions).await?;
    if json {
        let items = page
            .items
            .iter()
            .map(|message| {
                let mut item = serde_json::to_value(message)?;
                if let Some(s) = waiting.get(message.id.as_str()) {
                    item["suspended"] = json!({
                        "destination": s.destination,
                        "until": rfc3339(s.until),
                        "reason": s.reason,
                    });
                }
                Ok(item)
            })
            .collect::<Result<Vec<_>, serde_json::Error>>()?;
        println!("{}", serde_json::to_string(&items)?);
        return Ok(());
    }
    print!("{}", suspension_lines(&suspensions));
    print!("{}", list_table(&page.items));
    if let Some(cursor) = page.next_cursor {
        println!("more: --cursor {cursor}");
    }
    Ok(())
}

/// Which of `messages` wait for a suspended destination: those with a recipient still
/// waiting (`queued`, `deferred`) at a domain a suspension lists, each with the suspension
/// that ends first when several apply. One more query, and only when something is
/// suspended.
async fn waiting_on<'s>(
    store: &dyn Store,
    messages: &[MessageSummary],
    suspensions: &'s [StoredSuspension],
) -> anyhow::Result<HashMap<String, &'s StoredSuspension>> {
    let mut waiting = HashMap::new();
    if suspensions.is_empty() || messages.is_empty() {
        return Ok(waiting);
    }
    // Soonest end first (the store's order): the first suspension of a domain wins.
    let mut by_domain: HashMap<&str, &StoredSuspension> = HashMap::new();
    for s in suspensions {
        for domain in &s.domains {
            by_domain.entry(domain.as_str()).or_insert(s);
        }
    }
    let ids: Vec<String> = messages.iter().map(|m| m.id.clone()).collect();
    for (id, domains) in store.pending_domains(&ids).await? {
        let first = domains
            .iter()
            .filter_map(|domain| by_domain.get(domain.as_str()).copied())
            .min_by_key(|s| (s.until, &s.destination));
        if let Some(s) = first {
            waiting.insert(id, s);
        }
    }
    Ok(waiting)
}

/// One line per suspended destination, printed above the human listing:
/// `suspended: DESTINATION until TIME (REPLY)`.
fn suspension_lines(suspensions: &[StoredSuspension]) -> String {
    let mut out = String::new();
    for s in suspensions {
        let prefix = format!("{} suspended after: ", s.destination);
        // Sanitised again: the row came from the database, not from this process.
        let reply = sanitize_reply(s.reason.strip_prefix(&prefix).unwrap_or(&s.reason));
        let _ = writeln!(
            out,
            "suspended: {} until {} ({reply})",
            s.destination,
            rfc3339(s.until)
        );
    }
    out
}

/// The human listing: one line per message under a header.
fn list_table(items: &[MessageSummary]) -> String {
    let header = ["ID", "STATUS", "PRIO", "RCPTS", "CREATED", "SUBJECT"].map(String::from);
    let rows: Vec<[String; 6]> = items
        .iter()
        .map(|m| {
            let created = rfc3339(m.created_at);
            [
                m.id.clone(),
                m.status.to_string(),
                m.priority.to_string(),
                m.recipients.to_string(),
                created.get(..19).unwrap_or(&created).to_string(),
                m.subject.clone(),
            ]
        })
        .collect();
    columns(&header, &rows, &[false, false, false, true, false, false])
}

/// Rows in columns two spaces apart, each as wide as its widest cell (counted in
/// characters, so a non-ASCII subject does not shift what follows it); `right[i]` aligns
/// column `i` to the right. The last column is not padded.
///
/// The widths are computed, not fixed: the `Display` of the status and priority types
/// ignores format widths, which is how `{:<6}` once left the columns ragged.
fn columns<const N: usize>(
    header: &[String; N],
    rows: &[[String; N]],
    right: &[bool; N],
) -> String {
    let mut widths = [0usize; N];
    for row in std::iter::once(header).chain(rows) {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(header).chain(rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            let pad = " ".repeat(widths[i] - cell.chars().count());
            if right[i] {
                line.push_str(&pad);
                line.push_str(cell);
            } else {
                line.push_str(cell);
                if i + 1 < N {
                    line.push_str(&pad);
                }
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// How the current `[[dkim]]` configuration signs a message: one
/// `d=DOMAIN s=SELECTOR ALGORITHM` per signature, or why it goes unsigned.
fn dkim_plan(config: &Config, data: &[u8]) -> Result<Vec<String>, String> {
    let signers = crate::config::dkim::signers(&config.dkim).map_err(|err| format!("{err:#}"))?;
    match signers.plan(data) {
        Ok(plan) => Ok(plan.iter().map(ToString::to_string).collect()),
        Err(reason) => Err(reason.to_string()),
    }
}

/// `{"list": L, "configured": bool}` for a message with unsubscribe links, else null.
fn unsubscribe_json(config: &Config, list: Option<&str>) -> serde_json::Value {
    match list {
        Some(list) => json!({
            "list": list,
            "configured": matches!(config.unsubscribe.links(), Ok(Some(_))),
        }),
        None => serde_json::Value::Null,
    }
}

fn dkim_json(plan: &Result<Vec<String>, String>) -> serde_json::Value {
    match plan {
        Ok(signatures) => json!({ "signed": true, "signatures": signatures }),
        Err(reason) => json!({ "signed": false, "reason": reason }),
    }
}

async fn run_show(store: &dyn Store, config: &Config, json: bool, id: &str) -> anyhow::Result<()> {
    let summary = store.summary(id).await?;
    let detail = store.detail(id).await?;
    let attempts = store.attempts(id).await?;
    let body = store.message_body(id).await?;
    let dkim = dkim_plan(config, &body.data);
    if json {
        let mut object = serde_json::to_value(&summary)?;
        object["dkim"] = dkim_json(&dkim);
        object["unsubscribe"] = unsubscribe_json(config, body.unsubscribe_list.as_deref());
        object["recipients"] = serde_json::to_value(&detail.recipients)?;
        object["recipient_count"] = json!(summary.recipients);
        object["attempts"] = serde_json::to_value(&attempts)?;
        println!("{}", serde_json::to_string(&object)?);
        return Ok(());
    }
    let mut out = String::new();
    let _ = writeln!(out, "id:        {}", summary.id);
    let _ = writeln!(out, "status:    {}", summary.status);
    let _ = writeln!(out, "from:      {}", summary.from);
    let _ = writeln!(out, "subject:   {}", summary.subject);
    let _ = writeln!(out, "priority:  {}", summary.priority);
    let _ = writeln!(out, "created:   {}", rfc3339(summary.created_at));
    let _ = writeln!(out, "send at:   {}", rfc3339(summary.send_at));
    let _ = writeln!(out, "size:      {} bytes", summary.size);
    match &dkim {
        Ok(signatures) => {
            for signature in signatures {
                let _ = writeln!(out, "dkim:      {signature}");
            }
        }
        Err(reason) => {
            let _ = writeln!(out, "dkim:      unsigned ({reason})");
        }
    }
    if let Some(list) = &body.unsubscribe_list {
        let _ = match config.unsubscribe.links() {
            Ok(Some(_)) => writeln!(out, "unsubscribe: one-click links for list {list}"),
            _ => writeln!(
                out,
                "unsubscribe: one-click links for list {list} (not configured: [unsubscribe] base_url and secret; held back)"
            ),
        };
    }
    let _ = writeln!(out, "\nrecipients:");
    let header = ["ADDRESS", "STATE", "TRIES", "LAST REPLY"].map(String::from);
    let rows: Vec<[String; 4]> = detail
        .recipients
        .iter()
        .map(|r| {
            [
                r.address.clone(),
                r.state.to_string(),
                r.attempts.to_string(),
                r.last_reply.as_deref().unwrap_or("-").to_string(),
            ]
        })
        .collect();
    for line in columns(&header, &rows, &[false, false, true, false]).lines() {
        let _ = writeln!(out, "  {line}");
    }
    let _ = writeln!(out, "\nattempts:");
    if attempts.is_empty() {
        let _ = writeln!(out, "  (none yet)");
    }
    for a in &attempts {
        let _ = writeln!(
            out,
            "  {}  {}  {}  {}  {} ms  {}",
            rfc3339(a.at),
            a.recipient,
            a.host.as_deref().unwrap_or("-"),
            a.outcome,
            a.duration_ms,
            a.reply
        );
    }
    print!("{out}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up_whatever_the_cell_widths() {
        let header = ["ID", "STATUS", "N", "SUBJECT"].map(String::from);
        let rows = [
            ["a".repeat(26), "sent".into(), "1".into(), "Grüße".into()],
            ["b".repeat(26), "queued".into(), "12345".into(), "x".into()],
            ["c".repeat(26), "error".into(), "7".into(), "".into()],
        ];
        let table = columns(&header, &rows, &[false, false, true, false]);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(
            lines[0],
            format!("ID{}  STATUS      N  SUBJECT", " ".repeat(24))
        );
        assert_eq!(
            lines[1],
            format!("{}  sent        1  Grüße", "a".repeat(26))
        );
        assert_eq!(lines[2], format!("{}  queued  12345  x", "b".repeat(26)));
        assert_eq!(lines[3], format!("{}  error       7", "c".repeat(26)));
        assert!(!table.lines().any(|l| l.ends_with(' ')));
    }
}
