//! One module per subcommand; `run` dispatches.

pub mod compose;

use crate::cli::{Cli, Command};

/// Runs one subcommand. Commands that need the configuration load it with
/// `globals.config()`; `globals.json` selects JSON output.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let Cli {
        globals, command, ..
    } = cli;
    match command {
        Command::Compose(args) => compose::run(args),
    }
}
