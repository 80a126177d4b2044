//! `outbox`: the command-line interface and daemon.
//!
//! `main` owns the error-to-exit-code policy: every failure is one line on stderr and a
//! non-zero exit status; commands that follow another tool's conventions (sendmail's
//! sysexits) say so by returning an [`exit::Exit`] error.
// The doc comments of clap's argument structs are `--help` text, written for a terminal:
// `[[dkim]]` and `host[:port]` there are TOML and usage syntax, not links.
#![allow(rustdoc::broken_intra_doc_links)]

mod app;
mod cli;
mod commands;
mod config;
mod exit;
mod http;
mod listener;
mod message_args;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // Installed as a link named `sendmail`: behave as `outbox sendmail`, and exit with
    // EX_USAGE (64) rather than clap's 2 should the line not parse.
    let parsed = match commands::sendmail::argv_as_sendmail() {
        Some(argv) => parse(argv, "sendmail", exit::EX_USAGE),
        None => parse(std::env::args_os(), "outbox", USAGE),
    };
    let cli = match parsed {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    init_logging(&cli);
    let queues_a_send = matches!(cli.command, cli::Command::Send(_));
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
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
            let hint = if queues_a_send && exit::is_too_large(&err) {
                // The library's text names no flag; `send` has one that helps.
                " (use --now to send it without queueing)"
            } else {
                ""
            };
            eprintln!("outbox: {}{hint}", exit::one_line(&err));
            ExitCode::from(code)
        }
    }
}

/// clap's exit status for a command line it cannot parse.
const USAGE: u8 = 2;

/// Parses the command line. `--help` and `--version` print and exit 0; a bad command line
/// is one line on stderr (clap's first line: what was wrong), not clap's multi-line usage.
fn parse(
    argv: impl IntoIterator<Item = std::ffi::OsString>,
    name: &str,
    usage_code: u8,
) -> Result<cli::Cli, ExitCode> {
    match cli::Cli::try_parse_from(argv) {
        Ok(cli) => Ok(cli),
        Err(err) if !err.use_stderr() => {
            let _ = err.print();
            Err(ExitCode::SUCCESS)
        }
        Err(err) => {
            let text = err.to_string();
            let first = text
                .lines()
                .find(|line| !line.trim().is_empty())
                .unwrap_or("bad usage");
            eprintln!("{name}: {}", first.trim_start_matches("error: "));
            Err(ExitCode::from(usage_code))
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
