//! sendmail's command line, parsed by hand: its flags are single-dash, glued or separate
//! (`-fFROM`, `-f FROM`), `-o` options are glued (`-oi`, `-odq`), and unknown flags must
//! exit with `EX_USAGE` (64), which clap's own error path cannot give.

use std::fmt;

/// What a sendmail command line asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SendmailArgs {
    /// `-t`: recipients from the To, Cc and Bcc headers (beside any given as arguments).
    pub from_headers: bool,
    /// `-f ADDR` / `-r ADDR`: the envelope sender.
    pub sender: Option<String>,
    /// `-i` / `-oi`: a line holding a single `.` does not end the message.
    pub ignore_dots: bool,
    /// `-F NAME`: the display name of the From header added when the message has none.
    pub full_name: Option<String>,
    /// The recipients given as arguments.
    pub recipients: Vec<String>,
}

/// A command line sendmail would refuse with `EX_USAGE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UsageError {
    /// A flag sendmail does not have.
    UnknownFlag(String),
    /// A flag whose value is missing at the end of the line.
    MissingValue(String),
    /// A mode Outbox does not provide (`-bs`, `-bp`, `-q`, ...).
    Unsupported(String),
    /// `--help`, `--version`...: sendmail has no long options (Postfix: "invalid option").
    LongOption(String),
}

/// The one-line usage shown with a usage error.
pub const USAGE: &str =
    "usage: sendmail [-t] [-i] [-f SENDER] [-F NAME] [-o OPTION] [--] [RECIPIENT...]";

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UsageError::UnknownFlag(flag) => {
                write!(f, "sendmail: invalid option {flag} ({USAGE})")
            }
            UsageError::MissingValue(flag) => {
                write!(f, "sendmail: option {flag} requires an argument ({USAGE})")
            }
            UsageError::Unsupported(flag) => write!(
                f,
                "sendmail: {flag} is not supported: this sendmail only queues a message read on stdin ({USAGE}; the queue: `outbox queue list`)"
            ),
            UsageError::LongOption(flag) => write!(
                f,
                "sendmail: invalid option {flag}: sendmail has no long options ({USAGE}; details: `outbox help sendmail`)"
            ),
        }
    }
}

impl std::error::Error for UsageError {}

/// Flags that take a value and whose value Outbox ignores, as Postfix's sendmail(1) lists
/// them: `-B` body type (cron's `-B8BITMIME`), `-N` DSN notify, `-R` DSN return, `-V`
/// envelope id, `-X` log file, `-C` config file, `-h` hop count, `-L` syslog tag, `-O`
/// option=value, `-A` (`-Am`/`-Ac`), `-e` error mode, `-p` protocol. The value must still be
/// consumed, or it would be taken for a recipient. (The body is sent as it is: the queue
/// re-encodes what a server could refuse.)
const IGNORED_WITH_VALUE: &[char] = &['B', 'N', 'R', 'V', 'X', 'C', 'h', 'L', 'O', 'A', 'e', 'p'];

/// Flags without a value that make no difference to a queueing submission: `-v` verbose,
/// `-U` initial user submission, `-G` gateway, `-n` no aliasing, `-m` me too, `-c`, `-x`.
const IGNORED_FLAGS: &[char] = &['v', 'U', 'G', 'n', 'm', 'c', 'x'];

/// Parses sendmail's arguments (without the program name).
pub fn parse(args: &[String]) -> Result<SendmailArgs, UsageError> {
    let mut parsed = SendmailArgs::default();
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        if arg == "--" {
            parsed.recipients.extend(iter.by_ref().cloned());
            break;
        }
        if arg.starts_with("--") {
            return Err(UsageError::LongOption(arg.clone()));
        }
        let Some(flags) = arg.strip_prefix('-').filter(|rest| !rest.is_empty()) else {
            parsed.recipients.push(arg.clone());
            continue;
        };
        for (at, flag) in flags.char_indices() {
            let glued = &flags[at + flag.len_utf8()..];
            let mut value = |name: char| -> Result<String, UsageError> {
                if glued.is_empty() {
                    iter.next()
                        .cloned()
                        .ok_or_else(|| UsageError::MissingValue(format!("-{name}")))
                } else {
                    Ok(glued.to_string())
                }
            };
            match flag {
                't' => parsed.from_headers = true,
                'i' => parsed.ignore_dots = true,
                'f' | 'r' => {
                    parsed.sender = Some(value(flag)?);
                    break;
                }
                'F' => {
                    parsed.full_name = Some(value('F')?);
                    break;
                }
                'o' => {
                    // `-oi` (also glued after other flags) is the only option that changes
                    // anything; `-odq`, `-odi`, `-oem`, `-oQ/dir`... are accepted and
                    // ignored. Postfix also takes the separate form `-o x [value]`.
                    let option = if glued.is_empty() {
                        let name = iter
                            .next()
                            .cloned()
                            .ok_or_else(|| UsageError::MissingValue("-o".to_string()))?;
                        if name.chars().count() == 1
                            && iter.as_slice().first().is_some_and(|v| !v.starts_with('-'))
                            && name != "i"
                        {
                            iter.next();
                        }
                        name
                    } else {
                        glued.to_string()
                    };
                    if option == "i" || option == "i=true" || option == "i=True" {
                        parsed.ignore_dots = true;
                    }
                    break;
                }
                'b' => {
                    // `-bm` (deliver mail, the default) is the only mode.
                    let mode = value('b')?;
                    if mode != "m" {
                        return Err(UsageError::Unsupported(format!("-b{mode}")));
                    }
                    break;
                }
                'q' | 'I' => return Err(UsageError::Unsupported(arg.clone())),
                c if IGNORED_WITH_VALUE.contains(&c) => {
                    value(c)?;
                    break;
                }
                c if IGNORED_FLAGS.contains(&c) => {}
                _ => return Err(UsageError::UnknownFlag(format!("-{flag}"))),
            }
        }
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(line: &str) -> Result<SendmailArgs, UsageError> {
        let args: Vec<String> = line.split_whitespace().map(str::to_string).collect();
        parse(&args)
    }

    #[test]
    fn the_ways_programs_call_it() {
        // cron, PHP's mail(), git send-email, mutt
        let cron = p("-t -i").unwrap();
        assert!(cron.from_headers && cron.ignore_dots && cron.recipients.is_empty());
        let php = p("-t -i -f www@x.test").unwrap();
        assert_eq!(php.sender.as_deref(), Some("www@x.test"));
        let glued = p("-ti -fwww@x.test").unwrap();
        assert_eq!(glued, php);
        let git = p("-i a@x.test b@y.test").unwrap();
        assert_eq!(git.recipients, ["a@x.test", "b@y.test"]);
        assert!(!git.from_headers);
        let old = p("-oi -t -odq -oem -FRoot -N never").unwrap();
        assert!(old.ignore_dots && old.from_headers && old.recipients.is_empty());
        let dash = p("-f a@x.test -- -odd@x.test").unwrap();
        assert_eq!(dash.recipients, ["-odd@x.test"]);
        assert!(!p("a@x.test").unwrap().ignore_dots);
        assert!(p("-bm -v -U a@x.test").is_ok());
        // Debian cron, exactly; neomutt, s-nail, mailutils; Postfix's `-o x value` form.
        let cron = p("-FCronDaemon -i -B8BITMIME -oem root").unwrap();
        assert_eq!(cron.full_name.as_deref(), Some("CronDaemon"));
        assert!(cron.ignore_dots && !cron.from_headers);
        assert_eq!(cron.recipients, ["root"]);
        let mutt =
            p("-oem -oi -B 8BITMIME -N failure,delay -R hdrs -V envid -f me@x.test -- a@y.test b")
                .unwrap();
        assert_eq!(mutt.recipients, ["a@y.test", "b"]);
        assert_eq!(mutt.sender.as_deref(), Some("me@x.test"));
        let snail = p("-i -odi -odb -Am -x -c -- a@y.test").unwrap();
        assert_eq!(snail.recipients, ["a@y.test"]);
        let separate = p("-o i -o x value -F Full a@y.test").unwrap();
        assert!(separate.ignore_dots);
        assert_eq!(separate.recipients, ["a@y.test"]);
        assert_eq!(separate.full_name.as_deref(), Some("Full"));
    }

    #[test]
    fn usage_errors() {
        assert_eq!(p("-k"), Err(UsageError::UnknownFlag("-k".into())));
        assert_eq!(p("-f"), Err(UsageError::MissingValue("-f".into())));
        assert_eq!(p("-bs"), Err(UsageError::Unsupported("-bs".into())));
        assert_eq!(p("-q"), Err(UsageError::Unsupported("-q".into())));
        assert!(p("-o").is_err());
        assert!(p("-ti -z").is_err());
        assert_eq!(p("--help"), Err(UsageError::LongOption("--help".into())));
        assert_eq!(
            p("-t --version"),
            Err(UsageError::LongOption("--version".into()))
        );
        assert!(p("-- --help").is_ok(), "after --, a recipient");
        let text = p("--help").unwrap_err().to_string();
        assert!(
            text.contains("no long options") && text.contains("usage: sendmail"),
            "{text}"
        );
    }
}
