//! The message flags of DESIGN §6, shared by `compose`, `send` and `bulk`: `--spec FILE|-`
//! (an `EmailSpec` as JSON) is read first, then every flag given overrides its field.
//!
//! Values are taken as text and checked in [`MessageArgs::into_spec`], so that a bad value
//! fails with one line naming the flag, like every other error of the binary.
//!
//! Files named by flags (`--body-file`, `--html-file`, `--spec`, `--merge`, and through
//! composition `--attach` and `--image`) are read with [`outbox_mime::read_file`]: only
//! regular files (a FIFO, a device such as `/dev/zero` or a directory is refused without
//! blocking), and only up to a size limit checked before anything is read.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail};
use outbox_mime::{ComposeOptions, EmailSpec, PartSource, Priority, TransferEncoding};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// The message flags.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct MessageArgs {
    /// Author: `addr` or `Name <addr>`.
    #[arg(long, value_name = "ADDRESS")]
    pub from: Option<String>,
    /// To recipients: comma-separated, and the flag may be repeated.
    #[arg(long, value_name = "ADDRESSES")]
    pub to: Vec<String>,
    /// Cc recipients: comma-separated, and the flag may be repeated.
    #[arg(long, value_name = "ADDRESSES")]
    pub cc: Vec<String>,
    /// Bcc recipients (envelope only): comma-separated, and the flag may be repeated.
    #[arg(long, value_name = "ADDRESSES")]
    pub bcc: Vec<String>,
    /// The subject.
    #[arg(long)]
    pub subject: Option<String>,
    /// The text/plain body.
    #[arg(long, value_name = "TEXT")]
    pub body: Option<String>,
    /// The text/plain body, read from a file (`-` for stdin).
    #[arg(long, value_name = "FILE")]
    pub body_file: Option<PathBuf>,
    /// The text/html body.
    #[arg(long, value_name = "HTML")]
    pub html: Option<String>,
    /// The text/html body, read from a file (`-` for stdin).
    #[arg(long, value_name = "FILE")]
    pub html_file: Option<PathBuf>,
    /// An inline image for the html: `PATH` (Content-ID: its file name; `<img src>` equal
    /// to PATH is rewritten) or `NAME=PATH` (Content-ID and src: NAME). Repeat per image.
    #[arg(long = "image", value_name = "PATH|NAME=PATH")]
    pub images: Vec<String>,
    /// An attachment: `PATH` or `NAME=PATH`. Repeat per attachment.
    #[arg(long = "attach", value_name = "PATH|NAME=PATH")]
    pub attachments: Vec<String>,
    /// An extra header, `Name: value`. Repeat per header; order is kept.
    #[arg(long = "header", value_name = "NAME: VALUE")]
    pub headers: Vec<String>,
    /// The Reply-To header.
    #[arg(long, value_name = "ADDRESSES")]
    pub reply_to: Option<String>,
    /// The Sender header.
    #[arg(long, value_name = "ADDRESS")]
    pub sender: Option<String>,
    /// Delivery priority: high, medium (default) or low.
    #[arg(long, value_name = "PRIORITY")]
    pub priority: Option<String>,
    /// Not delivered before this time (RFC 3339, e.g. 2026-11-22T10:00:00Z).
    #[arg(long, value_name = "TIME")]
    pub at: Option<String>,
    /// Charset of the text parts: utf-8 (default), us-ascii or iso-8859-1.
    #[arg(long, value_name = "CHARSET")]
    pub charset: Option<String>,
    /// Transfer encoding of the text parts: 7bit, 8bit, quoted-printable or base64
    /// (default: chosen per part).
    #[arg(long, value_name = "ENCODING")]
    pub transfer_encoding: Option<String>,
    /// Content-Type of a single-part message.
    #[arg(long, value_name = "TYPE")]
    pub content_type: Option<String>,
    /// A default merge value, `NAME=VALUE` for the `#NAME#` marker. Repeat per token.
    #[arg(long = "token", value_name = "NAME=VALUE")]
    pub tokens: Vec<String>,
    /// Per-recipient merge values: a JSON object, address -> {name: value}.
    #[arg(long, value_name = "FILE.json")]
    pub merge: Option<PathBuf>,
    /// Deliver through this server instead of the configured route (a server spec).
    #[arg(long, value_name = "SPEC")]
    pub relay: Option<String>,
    /// The mailing list the message belongs to, for the suppression list (default: the
    /// From address): a recipient suppressed for this list, or for every list, is not sent.
    #[arg(long, value_name = "NAME")]
    pub list: Option<String>,
    /// One-click unsubscribe (RFC 8058): each recipient gets List-Unsubscribe and
    /// List-Unsubscribe-Post headers with a signed link for its address and the list
    /// (needs [unsubscribe] base_url and secret in the configuration).
    #[arg(long)]
    pub unsubscribe: bool,
    /// Headers only, no body.
    #[arg(long)]
    pub simple_form: bool,
    /// The message as JSON (an EmailSpec), from a file or `-` for stdin; flags override it.
    #[arg(long, value_name = "FILE|-")]
    pub spec: Option<PathBuf>,
}

/// The composition options for a message whose files may hold up to `limit` bytes each.
pub fn compose_options(limit: u64) -> ComposeOptions {
    let mut options = ComposeOptions::default();
    options.max_file_size = Some(limit);
    options
}

/// The limit of `send --now` and `compose`, which do not queue: the queue's limit, but
/// never less than the composer's default.
pub fn unqueued_limit(max_message_size: u64) -> u64 {
    max_message_size.max(outbox_mime::DEFAULT_MAX_FILE_SIZE)
}

/// A message that is queued may carry a `program:` relay only when the engine would run
/// it (`[delivery] allow_program_relay`): otherwise it would be stored only to fail. Refused
/// before anything is stored, in one line naming the key. `send --now` is not checked: it
/// runs the program in the caller's own process, with the caller's rights.
pub fn check_queued_relay(spec: &EmailSpec, allow_program_relay: bool) -> anyhow::Result<()> {
    match spec.relay.as_deref() {
        Some(relay)
            if !allow_program_relay && outbox_queue::engine::policy::is_program_relay(relay) =>
        {
            bail!(
                "relay: a queued message may not name a program relay unless \
                 [delivery] allow_program_relay = true (send --now runs it in your own process)"
            )
        }
        _ => Ok(()),
    }
}

/// The largest JSON file read for `--spec` or `--merge` when files may hold `limit` bytes:
/// base64 makes content 4/3 larger, JSON escapes add a little (as the HTTP API counts).
fn json_limit(limit: u64) -> u64 {
    limit.saturating_mul(14) / 10 + 64 * 1024
}

impl MessageArgs {
    /// The spec: `--spec` JSON first, then each flag given over it. Delivery fields
    /// (`--priority`, `--at`, `--relay`) are checked here even when the command ignores them.
    /// A body file may hold up to `limit` bytes (the binary passes
    /// `delivery.max_message_size`); a larger one is refused before it is read.
    pub fn into_spec(self, limit: u64) -> anyhow::Result<EmailSpec> {
        let mut spec = match &self.spec {
            Some(path) => read_spec(path, json_limit(limit))?,
            None => EmailSpec::default(),
        };
        if let Some(from) = self.from {
            spec.from = from;
        }
        for (flag, values, field) in [
            ("to", self.to, &mut spec.to),
            ("cc", self.cc, &mut spec.cc),
            ("bcc", self.bcc, &mut spec.bcc),
        ] {
            if !values.is_empty() {
                *field = split_recipients(&values);
                if field.is_empty() {
                    bail!("--{flag}: no address given");
                }
            }
        }
        if self.body.is_some() && self.body_file.is_some() {
            bail!("--body and --body-file both given; use one");
        }
        if self.html.is_some() && self.html_file.is_some() {
            bail!("--html and --html-file both given; use one");
        }
        if let Some(subject) = self.subject {
            spec.subject = subject;
        }
        if let Some(text) = self.body {
            spec.text = Some(text);
        }
        if let Some(path) = &self.body_file {
            spec.text = Some(read_text("--body-file", path, limit)?);
        }
        if let Some(html) = self.html {
            spec.html = Some(html);
        }
        if let Some(path) = &self.html_file {
            spec.html = Some(read_text("--html-file", path, limit)?);
        }
        if !self.images.is_empty() {
            spec.html_images = self
                .images
                .iter()
                .map(|a| PartSource::from_cli(a))
                .collect();
        }
        if !self.attachments.is_empty() {
            spec.attachments = self
                .attachments
                .iter()
                .map(|a| PartSource::from_cli(a))
                .collect();
        }
        if !self.headers.is_empty() {
            spec.headers = self
                .headers
                .iter()
                .map(|h| parse_header(h))
                .collect::<anyhow::Result<_>>()?;
        }
        if let Some(list) = self.list {
            spec.list = Some(list);
        }
        if self.unsubscribe {
            spec.list_unsubscribe = true;
        }
        if let Some(reply_to) = self.reply_to {
            spec.reply_to = Some(reply_to);
        }
        if let Some(sender) = self.sender {
            spec.sender = Some(sender);
        }
        if let Some(priority) = self.priority {
            spec.priority = priority
                .parse::<Priority>()
                .map_err(|err| anyhow!("--priority: {err}"))?;
        }
        if let Some(at) = self.at {
            spec.send_at = Some(
                OffsetDateTime::parse(&at, &Rfc3339)
                    .map_err(|err| anyhow!("--at: {at:?} is not an RFC 3339 time ({err})"))?,
            );
        }
        if let Some(charset) = self.charset {
            spec.charset = Some(charset);
        }
        if let Some(encoding) = self.transfer_encoding {
            spec.transfer_encoding = Some(
                encoding
                    .parse::<TransferEncoding>()
                    .map_err(|err| anyhow!("--transfer-encoding: {err}"))?,
            );
        }
        if let Some(content_type) = self.content_type {
            spec.content_type = Some(content_type);
        }
        for token in &self.tokens {
            let (name, value) = token
                .split_once('=')
                .ok_or_else(|| anyhow!("--token: expected NAME=VALUE, got {token:?}"))?;
            spec.tokens.insert(name.to_string(), value.to_string());
        }
        if let Some(path) = &self.merge {
            spec.merge = read_merge(path, json_limit(limit))?;
        }
        if let Some(relay) = self.relay {
            spec.relay = Some(relay);
        }
        if self.simple_form {
            spec.simple_form = true;
        }
        if let Some(relay) = &spec.relay {
            outbox_smtp::ServerSpec::parse(relay).map_err(|err| anyhow!("relay: {err}"))?;
        }
        Ok(spec)
    }
}

/// Every flag value split on unquoted commas.
fn split_recipients(values: &[String]) -> Vec<String> {
    values
        .iter()
        .flat_map(|value| outbox_mime::split_address_list(value))
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(str::to_string)
        .collect()
}

/// `Name: value`.
fn parse_header(text: &str) -> anyhow::Result<(String, String)> {
    let (name, value) = text
        .split_once(':')
        .ok_or_else(|| anyhow!("--header: expected 'Name: value', got {text:?}"))?;
    Ok((name.trim().to_string(), value.trim().to_string()))
}

/// The bytes of a regular file of at most `limit` bytes, or of stdin for `-` (read up to
/// `limit + 1` bytes, then refused).
fn read_input(flag: &str, path: &Path, limit: u64) -> anyhow::Result<Vec<u8>> {
    let read = if path == Path::new("-") {
        outbox_mime::read_bounded(std::io::stdin().lock(), limit)
    } else {
        outbox_mime::read_file(path, limit)
    };
    read.map_err(|err| anyhow!("{flag}: {}: {err}", path.display()))
}

/// A UTF-8 text file for a body flag.
fn read_text(flag: &str, path: &Path, limit: u64) -> anyhow::Result<String> {
    let data = read_input(flag, path, limit)?;
    String::from_utf8(data).map_err(|_| anyhow!("{flag}: {} is not UTF-8 text", path.display()))
}

/// `--spec FILE|-`: an EmailSpec in JSON (an object; unknown fields are refused).
fn read_spec(path: &Path, limit: u64) -> anyhow::Result<EmailSpec> {
    let data = read_input("--spec", path, limit)?;
    serde_json::from_slice(&data).map_err(|err| anyhow!("--spec {}: {err}", path.display()))
}

/// `--merge FILE.json`: address -> {name: value}.
fn read_merge(
    path: &Path,
    limit: u64,
) -> anyhow::Result<BTreeMap<String, BTreeMap<String, String>>> {
    let data = read_input("--merge", path, limit)?;
    serde_json::from_slice(&data).map_err(|err| anyhow!("--merge {}: {err}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_the_spec_and_split_recipients() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spec.json");
        std::fs::write(
            &path,
            r#"{"from":"a@x.test","to":["old@x.test"],"subject":"json","tokens":{"A":"1","B":"2"}}"#,
        )
        .unwrap();
        let args = MessageArgs {
            spec: Some(path),
            to: vec![
                "\"Lee, Ann\" <ann@x.test>, b@x.test".into(),
                "c@x.test".into(),
            ],
            subject: Some("flag".into()),
            tokens: vec!["B=two=2".into()],
            headers: vec!["X-A: 1: 2".into()],
            priority: Some("HIGH".into()),
            at: Some("2026-11-22T10:00:00Z".into()),
            ..Default::default()
        };
        let spec = args.into_spec(1_000_000).unwrap();
        assert_eq!(spec.from, "a@x.test");
        assert_eq!(
            spec.to,
            ["\"Lee, Ann\" <ann@x.test>", "b@x.test", "c@x.test"]
        );
        assert_eq!(spec.subject, "flag");
        assert_eq!(spec.tokens["A"], "1");
        assert_eq!(spec.tokens["B"], "two=2");
        assert_eq!(spec.headers, [("X-A".to_string(), "1: 2".to_string())]);
        assert_eq!(spec.priority, Priority::High);
        assert!(spec.send_at.is_some());
    }

    #[test]
    fn bad_values_name_their_flag() {
        let bad = |args: MessageArgs| args.into_spec(1_000_000).unwrap_err().to_string();
        let e = bad(MessageArgs {
            priority: Some("urgent".into()),
            ..Default::default()
        });
        assert!(e.starts_with("--priority:"), "{e}");
        let e = bad(MessageArgs {
            transfer_encoding: Some("binary".into()),
            ..Default::default()
        });
        assert!(e.starts_with("--transfer-encoding:"), "{e}");
        let e = bad(MessageArgs {
            tokens: vec!["novalue".into()],
            ..Default::default()
        });
        assert!(e.starts_with("--token:"), "{e}");
        let e = bad(MessageArgs {
            relay: Some("gopher://x".into()),
            ..Default::default()
        });
        assert!(e.starts_with("relay:"), "{e}");
    }

    /// `mkfifo` through the shell: no unsafe code for a test helper.
    fn fifo(path: &Path) {
        let status = std::process::Command::new("mkfifo")
            .arg(path)
            .status()
            .unwrap();
        assert!(status.success());
    }

    #[test]
    fn file_flags_refuse_fifos_devices_directories_and_big_files() {
        let dir = tempfile::tempdir().unwrap();
        let pipe = dir.path().join("pipe");
        fifo(&pipe);
        let big = dir.path().join("big.txt");
        // A sparse 1 GB file: refused from its size, before any byte is read.
        std::fs::File::create(&big)
            .unwrap()
            .set_len(1 << 30)
            .unwrap();
        let small = dir.path().join("small.txt");
        std::fs::write(&small, "hello").unwrap();
        let cases: Vec<(MessageArgs, &str)> = vec![
            (
                MessageArgs {
                    body_file: Some(pipe.clone()),
                    ..Default::default()
                },
                "--body-file: ",
            ),
            (
                MessageArgs {
                    html_file: Some("/dev/zero".into()),
                    ..Default::default()
                },
                "--html-file: /dev/zero: not a regular file (it is a character device)",
            ),
            (
                MessageArgs {
                    spec: Some(dir.path().to_path_buf()),
                    ..Default::default()
                },
                "not a regular file (it is a directory)",
            ),
            (
                MessageArgs {
                    merge: Some(pipe.clone()),
                    ..Default::default()
                },
                "not a regular file (it is a FIFO)",
            ),
            (
                MessageArgs {
                    body_file: Some(big.clone()),
                    ..Default::default()
                },
                "1073741824 bytes, over the limit of 1000000 bytes",
            ),
        ];
        for (args, expected) in cases {
            let err = args.into_spec(1_000_000).unwrap_err().to_string();
            assert!(err.contains(expected), "{err} (expected {expected})");
            assert!(!err.contains('\n'), "one line: {err}");
        }
        let spec = MessageArgs {
            body_file: Some(small),
            ..Default::default()
        }
        .into_spec(5)
        .unwrap();
        assert_eq!(spec.text.as_deref(), Some("hello"));
    }

    #[test]
    fn a_json_array_is_not_a_spec() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spec.json");
        std::fs::write(&path, r#"["a@x.test", ["b@x.test"], [], [], "subject"]"#).unwrap();
        let err = MessageArgs {
            spec: Some(path),
            ..Default::default()
        }
        .into_spec(1_000_000)
        .unwrap_err()
        .to_string();
        assert!(err.contains("invalid type: sequence"), "{err}");
    }
}
