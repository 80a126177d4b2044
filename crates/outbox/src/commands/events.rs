//! `outbox events list [--message ID] [--json]`: the event log, oldest first — what the
//! webhooks are sent, whether or not any is configured.

use outbox_queue::{EventFilter, rfc3339};

use crate::cli::Globals;

/// Arguments of `outbox events`.
#[derive(Debug, clap::Args)]
pub struct EventsArgs {
    #[command(subcommand)]
    pub command: EventsCommand,
}

/// What to do with the event log.
#[derive(Debug, clap::Subcommand)]
pub enum EventsCommand {
    /// List events, oldest first: queued, sent, deferred, failed, suppressed, unsubscribed...
    List {
        /// Only this message's events.
        #[arg(long, value_name = "ID")]
        message: Option<String>,
        /// At most this many (1 to 1000).
        #[arg(long, value_name = "N", default_value_t = 100,
              value_parser = clap::value_parser!(u32).range(1..=1000))]
        limit: u32,
        /// Continue after this cursor (printed at the end of a full page).
        #[arg(long, value_name = "CURSOR")]
        cursor: Option<String>,
    },
}

/// Runs one `events` subcommand.
pub async fn run(globals: &Globals, args: EventsArgs) -> anyhow::Result<()> {
    let store = crate::app::store(&globals.config()?).await?;
    let EventsCommand::List {
        message,
        limit,
        cursor,
    } = args.command;
    let mut filter = EventFilter::default();
    filter.message_id = message;
    filter.limit = limit;
    filter.cursor = cursor;
    let page = store.events(filter).await?;
    if globals.json {
        println!("{}", serde_json::to_string(&page.items)?);
        return Ok(());
    }
    if page.items.is_empty() {
        println!("no events");
        return Ok(());
    }
    let width = page
        .items
        .iter()
        .map(|e| e.recipient.chars().count())
        .max()
        .unwrap_or(0)
        .max("RECIPIENT".len());
    println!(
        "{:>8}  {:24}  {:12}  {:width$}  {:26}  REPLY",
        "ID", "TIME", "TYPE", "RECIPIENT", "MESSAGE"
    );
    for e in &page.items {
        println!(
            "{:>8}  {:24}  {:12}  {:width$}  {:26}  {}",
            e.id,
            rfc3339(e.created_at),
            e.kind.as_str(),
            e.recipient,
            e.message_id.as_deref().unwrap_or("-"),
            e.reply.as_deref().unwrap_or("")
        );
    }
    if let Some(cursor) = page.next_cursor {
        println!("more: --cursor {cursor}");
    }
    Ok(())
}
