//! One module per subcommand; `run` dispatches.

pub mod bounces;
pub mod bulk;
pub mod compose;
pub mod deliver;
pub mod dkim;
pub mod events;
pub mod mx;
pub mod queue;
pub mod send;
pub mod sendmail;
pub mod serve;
pub mod smtp;
pub mod status;
pub mod suppress;

use crate::cli::{Cli, Command};

/// Runs one subcommand. Commands that need the configuration load it with
/// `globals.config()`; `globals.json` selects JSON output.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let Cli {
        globals, command, ..
    } = cli;
    match command {
        Command::Compose(args) => compose::run(args),
        Command::Deliver(args) => deliver::run(&globals, args).await,
        Command::Serve(args) => serve::run(&globals, args).await,
        Command::Mx(args) => mx::run(&globals, args).await,
        Command::Send(args) => send::run(&globals, args).await,
        Command::Status(args) => status::run(&globals, args).await,
        Command::Queue(args) => queue::run(&globals, args).await,
        Command::Sendmail(args) => sendmail::run(&globals, args).await,
        Command::Bulk(args) => bulk::run(&globals, args).await,
        Command::Smtp(args) => smtp::run(&globals, args).await,
        Command::Dkim(args) => dkim::run(&globals, args).await,
        Command::Suppress(args) => suppress::run(&globals, args).await,
        Command::Bounces(args) => bounces::run(&globals, args).await,
        Command::Events(args) => events::run(&globals, args).await,
    }
}
