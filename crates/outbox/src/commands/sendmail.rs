//! `outbox sendmail [-t] [-f FROM] [-F NAME] [-i] [RCPT...]`: a drop-in `sendmail` for cron,
//! PHP, git, mailutils, s-nail and neomutt (and Allegro's `:program` target). Reads a message
//! on stdin and queues it; prints nothing on success. Addresses without a domain (`root`)
//! are completed with `[sendmail] domain`, as Postfix's `myorigin` does. Failures exit with
//! sendmail's sysexits codes: 64 bad flags, 65 bad or oversized message or no recipients,
//! 75 queue unavailable (the caller keeps the mail and retries).
//!
//! Installed as a symlink named `sendmail` (e.g. /usr/sbin/sendmail), the binary behaves
//! as `outbox sendmail` (see `main.rs`).

mod args;
mod message;
mod qualify;

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
    /// sendmail's flags and recipients: [-t] [-i|-oi] [-f FROM] [-F NAME] [--] [RCPT...];
    /// other -o and value options (-odq, -oem, -B8BITMIME, -N never...) are accepted and
    /// ignored. Addresses without a domain (root) get `[sendmail] domain`. Exit status:
    /// 64 usage, 65 bad or oversized message, 75 try again later.
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
    // The configuration comes first: it bounds how much of stdin is read, and names the
    // domain that completes `root`.
    let config = globals
        .config()
        .map_err(|err| Exit::new(EX_TEMPFAIL, format!("sendmail: {err:#}")))?;
    let domain = config.sendmail.domain.as_str();
    let limit = config.delivery.max_message_size.0;
    let data = {
        let stdin = std::io::stdin();
        message::read_message(&mut stdin.lock(), args.ignore_dots, limit).map_err(
            |err| match err {
                message::ReadError::TooLarge { limit } => too_large(limit),
                message::ReadError::Io(err) => {
                    Exit::new(EX_TEMPFAIL, format!("sendmail: cannot read stdin: {err}"))
                }
            },
        )?
    };
    let mut parsed = message::parse(&data);
    drop(data);
    parsed.qualify(domain).map_err(data_error)?;

    let mut recipients: Vec<String> = Vec::new();
    let mut add = |address: String| {
        if !recipients.iter().any(|r| r.eq_ignore_ascii_case(&address)) {
            recipients.push(address);
        }
    };
    for arg in &args.recipients {
        // A recipient argument may itself be a list (`sendmail "a@x, b@y"`), and a bare
        // user name (`root`) is completed with the domain.
        let (addresses, _) = qualify::qualify_list(arg, domain)
            .map_err(|err| Exit::new(EX_DATAERR, format!("sendmail: recipient {arg:?}: {err}")))?;
        for address in addresses {
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

    let sender = envelope_sender(args.sender.as_deref(), &parsed, domain)?;
    let subject = parsed.subject();
    let stored = parsed.into_stored(
        &sender,
        args.full_name.as_deref(),
        domain,
        OffsetDateTime::now_utc(),
    );
    let mut message = NewMessage::default();
    message.data = stored;
    message.envelope_from = sender;
    message.recipients = recipients.into_iter().map(NewRecipient::new).collect();
    message.subject = subject;

    let store = crate::app::store(&config)
        .await
        .map_err(|err| Exit::new(EX_TEMPFAIL, format!("sendmail: queue unavailable: {err:#}")))?;
    store.enqueue(message).await.map_err(|err| match err {
        // The headers added above (or a re-encoded long line) tipped it over the limit.
        StoreError::TooLarge { limit, .. } => too_large(limit),
        err if err.is_permanent() && !matches!(err, StoreError::NotFound { .. }) => {
            Exit::new(EX_DATAERR, format!("sendmail: {err}"))
        }
        err => Exit::new(EX_TEMPFAIL, format!("sendmail: {err}")),
    })?;
    Ok(())
}

/// The refusal of a message over `[delivery] max_message_size`, in terms a sendmail user
/// can act on (no `outbox send` flag: sendmail users cannot pass one).
fn too_large(limit: u64) -> Exit {
    Exit::new(
        EX_DATAERR,
        format!(
            "sendmail: message refused, nothing queued: it is over the size limit of {} \
             ([delivery] max_message_size); send large files as links or in several messages, \
             or ask the administrator to raise the limit",
            limit_text(limit)
        ),
    )
}

/// The queue's size words (`1 KB`, `9.2 MB`), with the exact byte count beside a rounded
/// unit, since the key is configured in bytes or decimal units.
fn limit_text(bytes: u64) -> String {
    let human = outbox_queue::human_size(bytes);
    if human.ends_with(" bytes") {
        human
    } else {
        format!("{human} ({bytes} bytes)")
    }
}

/// `-f` (completed with the domain when bare), else the From header's address, else the
/// invoking user at the domain. `-f '<>'` or `-f ''` is the null sender (bounces and
/// auto-replies, RFC 5321 §4.5.5).
fn envelope_sender(
    flag: Option<&str>,
    parsed: &message::Parsed,
    domain: &str,
) -> anyhow::Result<String> {
    if let Some(flag) = flag {
        let flag = flag.trim();
        if flag.is_empty() || flag == "<>" {
            return Ok(String::new());
        }
        let address = qualify::qualify(flag, domain)
            .map_err(|err| Exit::new(EX_DATAERR, format!("sendmail: -f {flag:?}: {err}")))?;
        return Ok(address.address.addr_spec());
    }
    if let Some(from) = parsed.author_address().map_err(data_error)? {
        return Ok(from);
    }
    let user = invoking_user().ok_or_else(|| {
        Exit::new(
            EX_DATAERR,
            "sendmail: cannot tell who is sending: no user name for this process; give -f SENDER",
        )
    })?;
    let address = qualify::qualify(&user, domain).map_err(|err| {
        Exit::new(
            EX_DATAERR,
            format!("sendmail: user name {user:?} is not an address ({err}); give -f SENDER"),
        )
    })?;
    Ok(address.address.addr_spec())
}

/// The name of the user running this process, as Postfix's sendmail finds it: the passwd
/// entry of the process's uid (the owner of `/proc/self`), else `$LOGNAME` or `$USER`.
fn invoking_user() -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let from_passwd = std::fs::metadata("/proc/self").ok().and_then(|meta| {
        let uid = meta.uid().to_string();
        let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
        passwd.lines().find_map(|line| {
            let mut fields = line.split(':');
            let name = fields.next()?;
            let uid_field = fields.nth(1)?;
            (uid_field == uid && !name.is_empty()).then(|| name.to_string())
        })
    });
    from_passwd.or_else(|| {
        ["LOGNAME", "USER"]
            .iter()
            .filter_map(|var| std::env::var(var).ok())
            .find(|name| !name.trim().is_empty())
    })
}

fn data_error(err: message::MessageError) -> anyhow::Error {
    Exit::new(EX_DATAERR, format!("sendmail: {err}")).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sender_order() {
        let mut with_from = message::parse(b"From: Ann <ann@x.test>\r\n\r\nhi\r\n");
        with_from.qualify("h.test").unwrap();
        let sender = |flag, parsed| envelope_sender(flag, parsed, "h.test");
        assert_eq!(sender(Some("b@y.test"), &with_from).unwrap(), "b@y.test");
        assert_eq!(sender(Some("root"), &with_from).unwrap(), "root@h.test");
        assert_eq!(sender(Some("<>"), &with_from).unwrap(), "");
        assert_eq!(sender(None, &with_from).unwrap(), "ann@x.test");
        let bare = message::parse(b"hi\r\n");
        let default = sender(None, &bare).unwrap();
        assert!(default.ends_with("@h.test"), "{default}");
        let err = sender(Some("not an address"), &bare).unwrap_err();
        assert_eq!(crate::exit::code_for(&err), EX_DATAERR);
    }

    #[test]
    fn sizes_for_people() {
        assert_eq!(limit_text(8_000_000), "8 MB (8000000 bytes)");
        assert_eq!(limit_text(9_200_000), "9.2 MB (9200000 bytes)");
        assert_eq!(limit_text(1_000), "1 KB (1000 bytes)");
        assert_eq!(limit_text(500), "500 bytes");
        let text = too_large(500).to_string();
        assert!(
            text.contains("500 bytes") && !text.contains("--now"),
            "{text}"
        );
    }
}
