//! Sans-I/O parsing of the commands a client sends (RFC 5321 §4.1), as the server sees them.

use thiserror::Error;

/// One parameter of `MAIL` or `RCPT` (RFC 5321 §4.1.2 `esmtp-param`): `KEYWORD[=VALUE]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Param {
    /// The keyword, upper-cased (`SIZE`, `BODY`, ...).
    pub keyword: String,
    /// The value after `=`, as sent.
    pub value: Option<String>,
}

/// A command line, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Command {
    /// `EHLO domain` (RFC 5321 §4.1.1.1).
    Ehlo(String),
    /// `HELO domain`.
    Helo(String),
    /// `MAIL FROM:<reverse-path> [params]`; the path is empty for the null sender `<>`.
    Mail {
        /// The reverse-path without angle brackets.
        from: String,
        /// ESMTP parameters.
        params: Vec<Param>,
    },
    /// `RCPT TO:<forward-path> [params]`.
    Rcpt {
        /// The forward-path without angle brackets.
        to: String,
        /// ESMTP parameters.
        params: Vec<Param>,
    },
    /// `DATA`.
    Data,
    /// `RSET`.
    Rset,
    /// `NOOP [string]`.
    Noop,
    /// `QUIT`.
    Quit,
    /// `STARTTLS` (RFC 3207).
    StartTls,
    /// `AUTH mechanism [initial-response]` (RFC 4954 §4).
    Auth {
        /// The SASL mechanism, upper-cased.
        mechanism: String,
        /// The base64 initial response, `=` for an empty one.
        initial: Option<String>,
    },
    /// `VRFY string`: answered with 252, never verified.
    Vrfy,
    /// `HELP [string]`.
    Help,
}

impl Command {
    /// The command's verb, for fault matching and logs.
    pub fn verb(&self) -> &'static str {
        match self {
            Command::Ehlo(_) => "EHLO",
            Command::Helo(_) => "HELO",
            Command::Mail { .. } => "MAIL",
            Command::Rcpt { .. } => "RCPT",
            Command::Data => "DATA",
            Command::Rset => "RSET",
            Command::Noop => "NOOP",
            Command::Quit => "QUIT",
            Command::StartTls => "STARTTLS",
            Command::Auth { .. } => "AUTH",
            Command::Vrfy => "VRFY",
            Command::Help => "HELP",
        }
    }
}

/// Why a command line could not be parsed; each maps to the reply the server sends.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum CommandError {
    /// The verb is not one this server knows (reply 500, RFC 5321 §4.2.4).
    #[error("command not recognized: {verb}")]
    Unknown {
        /// The verb as sent (truncated for the log).
        verb: String,
    },
    /// The verb is known but its arguments are malformed (reply 501).
    #[error("syntax error in {verb} arguments: {reason}")]
    Syntax {
        /// The command's verb.
        verb: &'static str,
        /// What was wrong.
        reason: &'static str,
    },
    /// The line is not UTF-8 text.
    #[error("command line is not valid UTF-8")]
    NotText,
}

/// Parses one command line; `line` has its CRLF (or bare LF) already removed.
pub fn parse_command(line: &[u8]) -> Result<Command, CommandError> {
    let line = std::str::from_utf8(line).map_err(|_| CommandError::NotText)?;
    let line = line.trim_end_matches([' ', '\t']);
    let (verb, rest) = match line.find(' ') {
        Some(at) => (&line[..at], line[at + 1..].trim_start()),
        None => (line, ""),
    };
    let upper = verb.to_ascii_uppercase();
    match upper.as_str() {
        "EHLO" | "HELO" => {
            let domain = rest.split_whitespace().next().ok_or(CommandError::Syntax {
                verb: if upper == "EHLO" { "EHLO" } else { "HELO" },
                reason: "a domain or address literal is required",
            })?;
            Ok(if upper == "EHLO" {
                Command::Ehlo(domain.to_string())
            } else {
                Command::Helo(domain.to_string())
            })
        }
        "MAIL" => {
            let (from, params) = parse_path_command(rest, "FROM:", "MAIL")?;
            Ok(Command::Mail { from, params })
        }
        "RCPT" => {
            let (to, params) = parse_path_command(rest, "TO:", "RCPT")?;
            if to.is_empty() {
                return Err(CommandError::Syntax {
                    verb: "RCPT",
                    reason: "the forward-path must not be empty",
                });
            }
            Ok(Command::Rcpt { to, params })
        }
        "DATA" => no_args(rest, Command::Data, "DATA"),
        "RSET" => no_args(rest, Command::Rset, "RSET"),
        "QUIT" => no_args(rest, Command::Quit, "QUIT"),
        "STARTTLS" => no_args(rest, Command::StartTls, "STARTTLS"),
        "NOOP" => Ok(Command::Noop),
        "HELP" => Ok(Command::Help),
        "VRFY" => Ok(Command::Vrfy),
        "AUTH" => {
            let mut words = rest.split_whitespace();
            let mechanism = words.next().ok_or(CommandError::Syntax {
                verb: "AUTH",
                reason: "a mechanism is required",
            })?;
            let initial = words.next().map(str::to_string);
            if words.next().is_some() {
                return Err(CommandError::Syntax {
                    verb: "AUTH",
                    reason: "too many arguments",
                });
            }
            Ok(Command::Auth {
                mechanism: mechanism.to_ascii_uppercase(),
                initial,
            })
        }
        _ => Err(CommandError::Unknown {
            verb: verb.chars().take(16).collect(),
        }),
    }
}

fn no_args(rest: &str, command: Command, verb: &'static str) -> Result<Command, CommandError> {
    if rest.is_empty() {
        Ok(command)
    } else {
        Err(CommandError::Syntax {
            verb,
            reason: "no arguments are allowed",
        })
    }
}

/// Parses `FROM:<path> params` / `TO:<path> params` (RFC 5321 §4.1.1.2, §4.1.1.3). Lenient
/// where common clients are: a space after the colon is accepted.
fn parse_path_command(
    rest: &str,
    prefix: &str,
    verb: &'static str,
) -> Result<(String, Vec<Param>), CommandError> {
    let syntax = |reason| CommandError::Syntax { verb, reason };
    if rest.len() < prefix.len() || !rest[..prefix.len()].eq_ignore_ascii_case(prefix) {
        return Err(syntax(if verb == "MAIL" {
            "expected FROM:<address>"
        } else {
            "expected TO:<address>"
        }));
    }
    let rest = rest[prefix.len()..].trim_start();
    let rest = rest
        .strip_prefix('<')
        .ok_or(syntax("the address must be in angle brackets"))?;
    let close = rest.find('>').ok_or(syntax("missing closing '>'"))?;
    let path = &rest[..close];
    // RFC 5321 §4.1.2: a source route (`@a,@b:user@c`) must be accepted and its hops ignored.
    let path = match path.strip_prefix('@') {
        Some(route) => route.split_once(':').map_or(path, |(_, mailbox)| mailbox),
        None => path,
    };
    if path.contains(|c: char| c.is_whitespace() || c.is_control()) {
        return Err(syntax(
            "the address contains white space or control characters",
        ));
    }
    let after = &rest[close + 1..];
    if !after.is_empty() && !after.starts_with(' ') {
        return Err(syntax("parameters must follow the address after a space"));
    }
    let params = after
        .split_whitespace()
        .map(|word| match word.split_once('=') {
            Some((keyword, value)) => Param {
                keyword: keyword.to_ascii_uppercase(),
                value: Some(value.to_string()),
            },
            None => Param {
                keyword: word.to_ascii_uppercase(),
                value: None,
            },
        })
        .collect();
    Ok((path.to_string(), params))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_mail_with_params() {
        let cmd = parse_command(b"MAIL FROM:<a@x.test> SIZE=1200 BODY=8BITMIME").unwrap();
        assert_eq!(
            cmd,
            Command::Mail {
                from: "a@x.test".into(),
                params: vec![
                    Param {
                        keyword: "SIZE".into(),
                        value: Some("1200".into())
                    },
                    Param {
                        keyword: "BODY".into(),
                        value: Some("8BITMIME".into())
                    },
                ],
            }
        );
    }

    #[test]
    fn accepts_null_sender_lowercase_and_space_after_colon() {
        assert_eq!(
            parse_command(b"mail from: <>").unwrap(),
            Command::Mail {
                from: String::new(),
                params: vec![]
            }
        );
    }

    #[test]
    fn drops_source_routes() {
        assert_eq!(
            parse_command(b"RCPT TO:<@hop1,@hop2:b@y.test>").unwrap(),
            Command::Rcpt {
                to: "b@y.test".into(),
                params: vec![]
            }
        );
    }

    #[test]
    fn rejects_malformed_paths() {
        for line in [
            &b"RCPT TO:b@y.test"[..],
            b"RCPT TO:<>",
            b"MAIL FROM:<a@x.test",
            b"MAIL TO:<a@x.test>",
            b"MAIL FROM:<a b@x.test>",
            b"MAIL FROM:<a@x.test>SIZE=1",
        ] {
            assert!(
                matches!(parse_command(line), Err(CommandError::Syntax { .. })),
                "{}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn simple_verbs_and_unknown() {
        assert_eq!(
            parse_command(b"ehlo client.test").unwrap(),
            Command::Ehlo("client.test".into())
        );
        assert_eq!(parse_command(b"DATA").unwrap(), Command::Data);
        assert!(matches!(
            parse_command(b"DATA x"),
            Err(CommandError::Syntax { .. })
        ));
        assert!(matches!(
            parse_command(b"EHLO"),
            Err(CommandError::Syntax { .. })
        ));
        assert!(matches!(
            parse_command(b"XYZZY"),
            Err(CommandError::Unknown { .. })
        ));
        assert_eq!(
            parse_command(b"AUTH plain AGEAYg==").unwrap(),
            Command::Auth {
                mechanism: "PLAIN".into(),
                initial: Some("AGEAYg==".into())
            }
        );
        assert_eq!(parse_command(b"\xff"), Err(CommandError::NotText));
    }
}
