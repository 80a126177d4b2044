//! One module per subcommand; `run` dispatches.

pub mod compose;

use crate::cli::{Cli, Command};

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Compose(args) => compose::run(args),
    }
}
