//! `outbox`: the command-line interface and daemon.
//!
//! `main` owns the error-to-exit-code policy: every failure is one line on stderr and a
//! non-zero exit status; commands that follow another tool's conventions (sendmail's
//! sysexits) say so by returning an [`exit::Exit`] error.

mod cli;
mod commands;
mod config;
mod exit;
mod listener;
mod message_args;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // Installed as a link named `sendmail`: behave as `outbox sendmail`, and exit with
    // EX_USAGE (64) rather than clap's 2 should the line not parse.
    let cli = match commands::sendmail::argv_as_sendmail() {
        Some(argv) => match cli::Cli::try_parse_from(argv) {
            Ok(cli) => cli,
            Err(err) => {
                let text = err.to_string();
                eprintln!("sendmail: {}", text.lines().next().unwrap_or("bad usage"));
                return ExitCode::from(exit::EX_USAGE);
            }
        },
        None => cli::Cli::parse(),
    };
    init_logging(&cli);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("outbox: cannot start the async runtime: {err}");
            return ExitCode::from(exit::EX_SOFTWARE);
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            let code = exit::code_for(&err);
            eprintln!("outbox: {}", exit::one_line(&err));
            ExitCode::from(code)
        }
    }
}

/// One-shot commands are quiet: logs appear only with `-v` or `RUST_LOG`. Long-running
/// commands (`serve`, `deliver`) log at info level by default.
fn init_logging(cli: &cli::Cli) {
    use tracing_subscriber::EnvFilter;
    let default = match cli.verbose {
        0 if cli.command.is_long_running() => "info",
        0 => "off",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
