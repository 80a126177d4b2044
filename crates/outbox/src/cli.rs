//! The command line, as clap sees it. Each subcommand's arguments live beside its
//! implementation in `commands/`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::commands;
use crate::config::Config;

/// Durable outgoing email: queue messages, deliver them over SMTP, watch their status.
#[derive(Debug, Parser)]
#[command(name = "outbox", version, about, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub globals: Globals,

    /// More logging on stderr (-v info, -vv debug, -vvv trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

/// The options every subcommand takes.
#[derive(Debug, Clone, clap::Args)]
pub struct Globals {
    /// Configuration file (default: $OUTBOX_CONFIG, else ./outbox.toml when it exists).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Database URL, overriding the configuration: sqlite://PATH or postgres://...
    #[arg(long, global = true, value_name = "URL")]
    pub db: Option<String>,

    /// Machine-readable JSON output.
    #[arg(long, global = true)]
    pub json: bool,
}

impl Globals {
    /// The configuration: file, then environment, then `--db`.
    pub fn config(&self) -> anyhow::Result<Config> {
        crate::config::load(self.config.as_deref(), self.db.as_deref())
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Deliver queued messages in the foreground (the background sender).
    Deliver(commands::deliver::DeliverArgs),
    /// Run the background sender, the HTTP API and admin page, and the SMTP listener.
    Serve(commands::serve::ServeArgs),
    /// Compose a message and print its MIME text (tokens applied) on stdout.
    Compose(commands::compose::ComposeArgs),
    /// List the mail hosts of a domain, in the order delivery tries them.
    Mx(commands::mx::MxArgs),
    /// Send a message: queue it and print its id, or deliver it at once with --now.
    Send(commands::send::SendArgs),
    /// Print a message's status: queued, sent or error (--json: per recipient).
    Status(commands::status::StatusArgs),
    /// Inspect and administer the queue: list, show, rm, retry, purge.
    Queue(commands::queue::QueueArgs),
    /// Queue a message read on stdin, as sendmail does: [-t] [-f FROM] [-i] [RCPT...].
    Sendmail(commands::sendmail::SendmailCmdArgs),
    /// Queue one merge message to every row of a CSV file (column `email`, the rest tokens).
    Bulk(commands::bulk::BulkArgs),
    /// Talk SMTP by hand: print the greeting, send each stdin line, print each reply.
    Smtp(commands::smtp::SmtpArgs),
    /// DKIM keys: make one and print its DNS record (keygen), check a published one (check).
    Dkim(commands::dkim::DkimArgs),
    /// The suppression list: add, rm, list addresses that must not be mailed.
    Suppress(commands::suppress::SuppressArgs),
    /// Bounces and complaints received at the bounce domain: list, show an unmatched one.
    Bounces(commands::bounces::BouncesArgs),
    /// The event log (what webhooks are sent): list events, of one message or all.
    Events(commands::events::EventsArgs),
}

impl Command {
    /// Long-running commands log at info level by default.
    pub fn is_long_running(&self) -> bool {
        matches!(self, Command::Deliver(_) | Command::Serve(_))
    }
}
