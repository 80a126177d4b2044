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
}

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UsageError::UnknownFlag(flag) => write!(f, "sendmail: unknown option {flag}"),
            UsageError::MissingValue(flag) => write!(f, "sendmail: option {flag} needs a value"),
            UsageError::Unsupported(flag) => write!(
                f,
                "sendmail: {flag} is not supported (only message submission: sendmail [-t] [-f FROM] [-i] RCPT...)"
            ),
        }
    }
}

impl std::error::Error for UsageError {}

/// Flags that take a value and whose value Outbox ignores: `-F` full name, `-B` body type,
/// `-N` DSN notify, `-R` DSN return, `-V` envelope id, `-X` log file, `-C` config file,
/// `-h` hop count, `-L` syslog tag, `-O` option=value. The value must still be consumed, or
/// it would be taken for a recipient.
const IGNORED_WITH_VALUE: &[char] = &['F', 'B', 'N', 'R', 'V', 'X', 'C', 'h', 'L', 'O'];

/// Flags without a value that make no difference to a queueing submission: `-v` verbose,
/// `-U` initial user submission, `-G` gateway, `-n` no aliasing, `-m` me too, `-A` (Postfix:
/// ignored), `-x` / `-d` debugging are not accepted.
const IGNORED_FLAGS: &[char] = &['v', 'U', 'G', 'n', 'm', 'A'];

/// Parses sendmail's arguments (without the program name).
pub fn parse(args: &[String]) -> Result<SendmailArgs, UsageError> {
    let mut parsed = SendmailArgs::default();
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        if arg == "--" {
            parsed.recipients.extend(iter.by_ref().cloned());
            break;
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
                'o' => {
                    // `-oi` (also `-oi` glued after other flags) is the only option that
                    // changes anything; `-odq`, `-oem`, `-oQ/dir`... are accepted and ignored.
                    if glued.is_empty() {
                        return Err(UsageError::MissingValue("-o".to_string()));
                    }
                    if glued == "i" || glued == "i=true" || glued == "i=True" {
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
    }

    #[test]
    fn usage_errors() {
        assert_eq!(p("-k"), Err(UsageError::UnknownFlag("-k".into())));
        assert_eq!(p("-f"), Err(UsageError::MissingValue("-f".into())));
        assert_eq!(p("-bs"), Err(UsageError::Unsupported("-bs".into())));
        assert_eq!(p("-q"), Err(UsageError::Unsupported("-q".into())));
        assert!(p("-o").is_err());
        assert!(p("-ti -z").is_err());
    }
}
