//! `outbox suppress add ADDRESS [--list L] [--reason R] | rm ADDRESS [--list L] | list`:
//! the suppression list on the command line. A suppressed address is not mailed: at
//! enqueue its recipient is stored `suppressed`, and a claim marks it so when it was
//! suppressed after its message was queued.

use outbox_queue::{
    NewSuppression, Store, Suppression, SuppressionFilter, SuppressionReason, rfc3339,
};

use crate::cli::Globals;
use crate::exit::Exit;

/// Arguments of `outbox suppress`.
#[derive(Debug, clap::Args)]
pub struct SuppressArgs {
    #[command(subcommand)]
    pub command: SuppressCommand,
}

/// What to do with the suppression list.
#[derive(Debug, clap::Subcommand)]
pub enum SuppressCommand {
    /// Suppress an address, for one list or (without --list) every list. Adding it again
    /// keeps the first date and takes the new reason.
    Add {
        /// The address (compared trimmed, ASCII letters lowercased).
        #[arg(value_name = "ADDRESS")]
        address: String,
        /// Only for this list (a message's `list`, default its From address).
        #[arg(long, value_name = "LIST")]
        list: Option<String>,
        /// Why: unsubscribed, bounced, complained or manual.
        #[arg(long, value_name = "REASON", default_value = "manual", value_parser = parse_reason)]
        reason: SuppressionReason,
    },
    /// Remove an address's suppression for a list (without --list: the every-list one).
    Rm {
        /// The address.
        #[arg(value_name = "ADDRESS")]
        address: String,
        /// The list of the entry to remove.
        #[arg(long, value_name = "LIST")]
        list: Option<String>,
    },
    /// List suppressions, by address then list.
    List {
        /// Only this address.
        #[arg(long, value_name = "ADDRESS")]
        address: Option<String>,
        /// Only this list (`--list ''`: the every-list entries).
        #[arg(long, value_name = "LIST")]
        list: Option<String>,
        /// At most this many (1 to 1000).
        #[arg(long, value_name = "N", default_value_t = 50,
              value_parser = clap::value_parser!(u32).range(1..=1000))]
        limit: u32,
        /// Continue after this cursor (printed at the end of a full page).
        #[arg(long, value_name = "CURSOR")]
        cursor: Option<String>,
    },
}

fn parse_reason(text: &str) -> Result<SuppressionReason, String> {
    text.parse().map_err(|_| {
        format!("unknown reason {text:?} (expected unsubscribed, bounced, complained or manual)")
    })
}

/// Runs one `suppress` subcommand.
pub async fn run(globals: &Globals, args: SuppressArgs) -> anyhow::Result<()> {
    let store = crate::app::store(&globals.config()?).await?;
    match args.command {
        SuppressCommand::Add {
            address,
            list,
            reason,
        } => {
            let mut suppression = NewSuppression::default();
            suppression.address = address;
            suppression.list = list;
            suppression.reason = reason;
            let stored = store.suppress(suppression).await?;
            if globals.json {
                println!("{}", serde_json::to_string(&stored)?);
            } else {
                println!("suppressed {}", describe(&stored));
            }
            Ok(())
        }
        SuppressCommand::Rm { address, list } => {
            let list = list.unwrap_or_default();
            let removed = store.unsuppress(&address, &list).await?;
            if !removed {
                let scope = scope_of(&list);
                return Err(
                    Exit::new(1, format!("{address} is not suppressed for {scope}")).into(),
                );
            }
            if globals.json {
                println!("{}", serde_json::json!({ "removed": true }));
            } else {
                println!("removed {} for {}", address.trim(), scope_of(&list));
            }
            Ok(())
        }
        SuppressCommand::List {
            address,
            list,
            limit,
            cursor,
        } => {
            let mut filter = SuppressionFilter::default();
            filter.address = address;
            filter.list = list;
            filter.limit = limit;
            filter.cursor = cursor;
            run_list(&*store, globals.json, filter).await
        }
    }
}

fn scope_of(list: &str) -> String {
    if list.trim().is_empty() {
        "every list".to_string()
    } else {
        format!("list {}", list.trim())
    }
}

/// `ADDRESS for SCOPE (REASON since TIME)`.
fn describe(s: &Suppression) -> String {
    format!(
        "{} for {} ({} since {})",
        s.address,
        scope_of(s.list.as_deref().unwrap_or("")),
        s.reason,
        rfc3339(s.created_at)
    )
}

async fn run_list(store: &dyn Store, json: bool, filter: SuppressionFilter) -> anyhow::Result<()> {
    let page = store.suppressions_list(filter).await?;
    if json {
        println!("{}", serde_json::to_string(&page.items)?);
        return Ok(());
    }
    if page.items.is_empty() {
        println!("no suppressions");
        return Ok(());
    }
    let width = page
        .items
        .iter()
        .map(|s| s.address.chars().count())
        .max()
        .unwrap_or(0)
        .max("ADDRESS".len());
    let list_width = page
        .items
        .iter()
        .map(|s| s.list.as_deref().unwrap_or("*").chars().count())
        .max()
        .unwrap_or(0)
        .max("LIST".len());
    println!(
        "{:width$}  {:list_width$}  {:12}  SINCE",
        "ADDRESS", "LIST", "REASON"
    );
    for s in &page.items {
        println!(
            "{:width$}  {:list_width$}  {:12}  {}",
            s.address,
            s.list.as_deref().unwrap_or("*"),
            s.reason.as_str(),
            rfc3339(s.created_at)
        );
    }
    if let Some(cursor) = page.next_cursor {
        println!("more: --cursor {cursor:?}");
    }
    Ok(())
}
