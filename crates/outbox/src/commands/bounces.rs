//! `outbox bounces list [--unmatched] [--message ID] | show ID`: the bounces, delay
//! notices and complaints received at the bounce domain (issue 12), newest first. A report
//! that named no recipient keeps its text: `show` prints it.

use std::io::Write;

use outbox_queue::{FeedbackFilter, FeedbackRecord, rfc3339};

use crate::cli::Globals;
use crate::exit::Exit;

/// Arguments of `outbox bounces`.
#[derive(Debug, clap::Args)]
pub struct BouncesArgs {
    #[command(subcommand)]
    pub command: BouncesCommand,
}

/// What to show.
#[derive(Debug, clap::Subcommand)]
pub enum BouncesCommand {
    /// List received reports, newest first.
    List {
        /// Only the reports that named no recipient (kept for an operator to read).
        #[arg(long)]
        unmatched: bool,
        /// Only the reports about this message.
        #[arg(long, value_name = "ID")]
        message: Option<String>,
        /// At most this many (1 to 1000).
        #[arg(long, value_name = "N", default_value_t = 50,
              value_parser = clap::value_parser!(u32).range(1..=1000))]
        limit: u32,
        /// Only reports older than this one (the last id of the previous page).
        #[arg(long, value_name = "ID")]
        before: Option<i64>,
    },
    /// Print the text kept of an unmatched report.
    Show {
        /// The report's id (from `bounces list`).
        #[arg(value_name = "ID")]
        id: i64,
    },
}

/// Runs one `bounces` subcommand.
pub async fn run(globals: &Globals, args: BouncesArgs) -> anyhow::Result<()> {
    let store = crate::app::store(&globals.config()?).await?;
    match args.command {
        BouncesCommand::List {
            unmatched,
            message,
            limit,
            before,
        } => {
            let mut filter = FeedbackFilter::default();
            filter.unmatched = unmatched;
            filter.message_id = message;
            filter.limit = limit;
            filter.before = before;
            let items = store.feedback_list(filter).await?;
            if globals.json {
                println!("{}", serde_json::to_string(&items)?);
            } else {
                print_table(&items, limit);
            }
            Ok(())
        }
        BouncesCommand::Show { id } => match store.feedback_raw(id).await? {
            Some(raw) => {
                std::io::stdout().write_all(&raw)?;
                Ok(())
            }
            None => Err(Exit::new(
                1,
                format!("no report text kept for report {id} (no such report, or it matched a recipient)"),
            )
            .into()),
        },
    }
}

fn print_table(items: &[FeedbackRecord], limit: u32) {
    if items.is_empty() {
        println!("no reports");
        return;
    }
    println!("ID  RECEIVED  KIND  STATUS  APPLIED  MESSAGE  ADDRESS  DIAGNOSTIC");
    for f in items {
        println!(
            "{}  {}  {}/{}  {}  {}  {}  {}  {}",
            f.id,
            rfc3339(f.received_at),
            f.kind,
            f.format,
            f.status.as_deref().unwrap_or("-"),
            match (&f.applied, &f.message_id) {
                (Some(state), _) => state.as_str(),
                (None, Some(_)) => "-",
                (None, None) => "unmatched",
            },
            f.message_id.as_deref().unwrap_or("-"),
            f.address.as_deref().unwrap_or("-"),
            f.diagnostic.as_deref().unwrap_or("-"),
        );
    }
    if items.len() as u32 == limit
        && let Some(last) = items.last()
    {
        println!("more: --before {}", last.id);
    }
}
