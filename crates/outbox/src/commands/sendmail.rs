//! `outbox sendmail [-t] [-f FROM] [-i] [RCPT...]`: a drop-in `sendmail` for cron, PHP and
//! git (and Allegro's `:program` target). Reads a message on stdin and queues it; prints
//! nothing on success. Failures exit with sendmail's sysexits codes: 64 bad flags, 65 bad
//! message or no recipients, 75 queue unavailable (the caller keeps the mail and retries).
//!
//! Installed as a symlink named `sendmail` (e.g. /usr/sbin/sendmail), the binary behaves
//! as `outbox sendmail` (see `main.rs`).

mod args;
mod message;

use std::ffi::OsString;
use std::path::Path;

use outbox_queue::{NewMessage, NewRecipient, StoreError};
use time::OffsetDateTime;

use crate::cli::Globals;
use crate::exit::{EX_DATAERR, EX_TEMPFAIL, EX_USAGE, Exit};

/// Arguments of `outbox sendmail`: taken raw, because sendmail's flags are not clap's
/// (`-oi`, `-fFROM`, `-odq`) and a bad one must exit 64; [`args::parse`] reads them.
#[derive(Debug, clap::Args)]
#[command(disable_help_flag = true, disable_version_flag = true)]
pub struct SendmailCmdArgs {
    /// sendmail's flags and recipients: [-t] [-i|-oi] [-f FROM] [RCPT...]; other -o and
    /// value options (-odq, -F NAME, -N never...) are accepted and ignored.
    #[arg(
        value_name = "FLAGS AND RECIPIENTS",
        trailing_var_arg = true,
        allow_hyphen_values = true,
        num_args = 0..
    )]
    pub args: Vec<String>,
}

/// When the program was started through a link named `sendmail`, the command line to parse
/// instead of argv: `outbox sendmail -- ARGS...`, so that no sendmail flag is read as one
/// of outbox's.
pub fn argv_as_sendmail() -> Option<Vec<OsString>> {
    let mut argv = std::env::args_os();
    let program = argv.next()?;
    let name = Path::new(&program).file_name()?;
    if name != "sendmail" {
        return None;
    }
    let mut line: Vec<OsString> = vec!["outbox".into(), "sendmail".into(), "--".into()];
    line.extend(argv);
    Some(line)
}

/// Reads stdin and queues the message.
pub async fn run(globals: &Globals, cmd: SendmailCmdArgs) -> anyhow::Result<()> {
    let args = args::parse(&cmd.args).map_err(|err| Exit::new(EX_USAGE, err.to_string()))?;
    let data = {
        let stdin = std::io::stdin();
        message::read_message(&mut stdin.lock(), args.ignore_dots)
            .map_err(|err| Exit::new(EX_TEMPFAIL, format!("sendmail: cannot read stdin: {err}")))?
    };
    let parsed = message::parse(&data).map_err(data_error)?;

    let mut recipients: Vec<String> = Vec::new();
    let mut add = |address: String| {
        if !recipients.iter().any(|r| r.eq_ignore_ascii_case(&address)) {
            recipients.push(address);
        }
    };
    for arg in &args.recipients {
        // A recipient argument may itself be a list (`sendmail "a@x, b@y"`).
        for item in outbox_mime::split_address_list(arg) {
            if item.trim().is_empty() {
                continue;
            }
            let address = outbox_mime::parse_address(item).map_err(|err| {
                Exit::new(EX_DATAERR, format!("sendmail: recipient {item:?}: {err}"))
            })?;
            add(address.addr_spec());
        }
    }
    if args.from_headers {
        for address in parsed.header_recipients().map_err(data_error)? {
            add(address);
        }
    }
    if recipients.is_empty() {
        let hint = if args.from_headers {
            "no recipients: the message has no To, Cc or Bcc address"
        } else {
            "no recipients given (name them as arguments, or use -t to read the headers)"
        };
        return Err(Exit::new(EX_DATAERR, format!("sendmail: {hint}")).into());
    }

    let sender = envelope_sender(args.sender.as_deref(), &parsed)?;
    let subject = parsed.subject();
    let stored = parsed.into_stored(&sender, OffsetDateTime::now_utc());
    let message = NewMessage {
        data: stored,
        envelope_from: sender,
        recipients: recipients.into_iter().map(NewRecipient::new).collect(),
        subject,
        ..NewMessage::default()
    };

    let config = globals
        .config()
        .map_err(|err| Exit::new(EX_TEMPFAIL, format!("sendmail: {err:#}")))?;
    let store = crate::app::store(&config)
        .await
        .map_err(|err| Exit::new(EX_TEMPFAIL, format!("sendmail: queue unavailable: {err:#}")))?;
    store.enqueue(message).await.map_err(|err| {
        let code = if err.is_permanent() && !matches!(err, StoreError::NotFound { .. }) {
            EX_DATAERR
        } else {
            EX_TEMPFAIL
        };
        Exit::new(code, format!("sendmail: {err}"))
    })?;
    Ok(())
}

/// `-f`, else the From header's address, else `$USER@hostname`. `-f '<>'` or `-f ''` is the
/// null sender (bounces and auto-replies, RFC 5321 §4.5.5).
fn envelope_sender(flag: Option<&str>, parsed: &message::Parsed) -> anyhow::Result<String> {
    if let Some(flag) = flag {
        let flag = flag.trim();
        if flag.is_empty() || flag == "<>" {
            return Ok(String::new());
        }
        let address = outbox_mime::parse_address(flag)
            .map_err(|err| Exit::new(EX_DATAERR, format!("sendmail: -f {flag:?}: {err}")))?;
        return Ok(address.addr_spec());
    }
    if let Some(from) = parsed.author_address().map_err(data_error)? {
        return Ok(from);
    }
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "root".to_string());
    Ok(format!("{user}@{}", hostname()))
}

/// The machine's name, for the default sender; `localhost` when it cannot be read.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .ok()
        .map(|name| name.trim().to_string())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

fn data_error(err: message::MessageError) -> anyhow::Error {
    Exit::new(EX_DATAERR, format!("sendmail: {err}")).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sender_order() {
        let with_from = message::parse(b"From: Ann <ann@x.test>\r\n\r\nhi\r\n").unwrap();
        assert_eq!(
            envelope_sender(Some("b@y.test"), &with_from).unwrap(),
            "b@y.test"
        );
        assert_eq!(envelope_sender(Some("<>"), &with_from).unwrap(), "");
        assert_eq!(envelope_sender(None, &with_from).unwrap(), "ann@x.test");
        let bare = message::parse(b"hi\r\n").unwrap();
        let default = envelope_sender(None, &bare).unwrap();
        assert!(default.contains('@'), "{default}");
        let err = envelope_sender(Some("not an address"), &bare).unwrap_err();
        assert_eq!(crate::exit::code_for(&err), EX_DATAERR);
    }
}
