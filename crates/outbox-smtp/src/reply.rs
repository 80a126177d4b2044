//! SMTP replies: the [`Reply`] type and a sans-I/O parser for replies as they arrive on the
//! wire (RFC 5321 §4.2), with RFC 3463 enhanced status codes.
//!
//! The parser works on a byte buffer: [`parse_reply`] either finds one complete reply at the
//! start of the buffer and says how many bytes it used, or asks for more bytes. It never
//! panics and caps what it accepts ([`MAX_REPLY_BYTES`], [`MAX_REPLY_LINES`]) so a hostile
//! peer cannot make a client buffer without bound.

use std::fmt;

/// The most bytes one reply may take on the wire, all lines included.
pub const MAX_REPLY_BYTES: usize = 64 * 1024;
/// The most lines one multi-line reply may have.
pub const MAX_REPLY_LINES: usize = 100;

/// An RFC 3463 enhanced status code, `class.subject.detail` (e.g. `5.1.1`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EnhancedCode {
    /// 2 (success), 4 (persistent transient failure) or 5 (permanent failure).
    pub class: u8,
    /// The subject, 0 to 999.
    pub subject: u16,
    /// The detail, 0 to 999.
    pub detail: u16,
}

impl EnhancedCode {
    /// A code from its three parts.
    pub const fn new(class: u8, subject: u16, detail: u16) -> Self {
        EnhancedCode {
            class,
            subject,
            detail,
        }
    }

    /// Parses `class.subject.detail` at the start of `text` (RFC 3463 §2: class is 2, 4 or 5;
    /// subject and detail are one to three digits) and returns the code with the rest of the
    /// text after one separating space.
    pub fn parse_prefix(text: &str) -> Option<(EnhancedCode, &str)> {
        let end = text.find(' ').unwrap_or(text.len());
        let mut parts = text[..end].split('.');
        let class = parts.next()?;
        let subject = parts.next()?;
        let detail = parts.next()?;
        if parts.next().is_some() {
            return None;
        }
        let class = match class {
            "2" => 2,
            "4" => 4,
            "5" => 5,
            _ => return None,
        };
        let number = |part: &str| -> Option<u16> {
            if part.is_empty() || part.len() > 3 || !part.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            part.parse().ok()
        };
        let code = EnhancedCode::new(class, number(subject)?, number(detail)?);
        let rest = text[end..].strip_prefix(' ').unwrap_or(&text[end..]);
        Some((code, rest))
    }
}

impl fmt::Display for EnhancedCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.class, self.subject, self.detail)
    }
}

/// The class of a reply, from its first digit (RFC 5321 §4.2.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplyClass {
    /// 1xx: positive preliminary (not used by SMTP itself).
    Preliminary,
    /// 2xx: the command succeeded.
    Completion,
    /// 3xx: go on (354 after DATA, 334 during AUTH).
    Intermediate,
    /// 4xx: failed for now; the same command may succeed later.
    TransientFailure,
    /// 5xx: failed; do not repeat it unchanged.
    PermanentFailure,
}

/// One SMTP reply: a three-digit code, the enhanced status code when the first line carries
/// one, and the text of each line (after `CODE-` / `CODE `, enhanced code included, exactly as
/// received).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// The reply code, 100 to 599.
    pub code: u16,
    /// The RFC 3463 enhanced status code of the first line, when present and consistent with
    /// the reply code's class.
    pub enhanced: Option<EnhancedCode>,
    /// The text of each line without the code and separator; at least one (maybe empty) line.
    pub lines: Vec<String>,
}

impl Reply {
    /// A reply with one or more lines of text, each given as it would follow the code on the
    /// wire (an enhanced code at the start of the first line is recognised).
    pub fn new<I, T>(code: u16, lines: I) -> Reply
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        let mut lines: Vec<String> = lines.into_iter().map(Into::into).collect();
        if lines.is_empty() {
            lines.push(String::new());
        }
        let enhanced = enhanced_for(code, &lines[0]);
        Reply {
            code,
            enhanced,
            lines,
        }
    }

    /// The class of this reply, from its first digit.
    pub fn class(&self) -> ReplyClass {
        match self.code / 100 {
            1 => ReplyClass::Preliminary,
            2 => ReplyClass::Completion,
            3 => ReplyClass::Intermediate,
            4 => ReplyClass::TransientFailure,
            _ => ReplyClass::PermanentFailure,
        }
    }

    /// 2xx.
    pub fn is_success(&self) -> bool {
        self.class() == ReplyClass::Completion
    }

    /// 3xx.
    pub fn is_intermediate(&self) -> bool {
        self.class() == ReplyClass::Intermediate
    }

    /// 4xx.
    pub fn is_transient(&self) -> bool {
        self.class() == ReplyClass::TransientFailure
    }

    /// 5xx (and anything outside 1xx–4xx, which a client must not treat as success).
    pub fn is_permanent(&self) -> bool {
        self.class() == ReplyClass::PermanentFailure
    }

    /// The text of all lines joined by a space, with the enhanced code removed from the start
    /// of each line that carries it.
    pub fn message(&self) -> String {
        self.lines
            .iter()
            .map(|line| match EnhancedCode::parse_prefix(line) {
                Some((code, rest)) if Some(code) == self.enhanced => rest,
                _ => line.as_str(),
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The reply as it goes on the wire: `CODE-text` lines then a final `CODE text`, each
    /// ending in CRLF (RFC 5321 §4.2.1).
    pub fn to_wire(&self) -> String {
        let mut out = String::new();
        let last = self.lines.len().saturating_sub(1);
        for (i, line) in self.lines.iter().enumerate() {
            let sep = if i == last { ' ' } else { '-' };
            out.push_str(&format!("{:03}{sep}{line}\r\n", self.code));
        }
        if self.lines.is_empty() {
            out.push_str(&format!("{:03} \r\n", self.code));
        }
        out
    }
}

/// One line: `250 2.0.0 Ok`; several lines are joined by ` / ` so a reply fits a log line.
impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.code)?;
        for (i, line) in self.lines.iter().enumerate() {
            let sep = if i == 0 { " " } else { " / " };
            if !line.is_empty() {
                write!(f, "{sep}{line}")?;
            }
        }
        Ok(())
    }
}

/// Why bytes from the server are not a valid reply.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReplyError {
    /// A line does not start with a three-digit code followed by `-`, space or the line end.
    #[error("malformed SMTP reply line: {line:?}")]
    Malformed {
        /// The offending line, cut to 100 characters.
        line: String,
    },
    /// The lines of one multi-line reply carry different codes.
    #[error("SMTP reply mixes codes {first} and {other}")]
    MixedCodes {
        /// The code of the first line.
        first: u16,
        /// The code of a later line.
        other: u16,
    },
    /// More than [`MAX_REPLY_BYTES`] bytes without the reply ending.
    #[error("SMTP reply longer than {limit} bytes")]
    TooLong {
        /// The byte limit.
        limit: usize,
    },
    /// More than [`MAX_REPLY_LINES`] lines.
    #[error("SMTP reply has more than {limit} lines")]
    TooManyLines {
        /// The line limit.
        limit: usize,
    },
}

/// Looks for one complete reply at the start of `buf`.
///
/// Returns `Ok(Some((reply, used)))` with the number of bytes the reply took, `Ok(None)` when
/// more bytes are needed, or an error for bytes that can never become a valid reply. Lines end
/// in CRLF; a bare LF is tolerated as a line end (servers that get this wrong exist, and
/// accepting it cannot smuggle anything into a reply).
pub fn parse_reply(buf: &[u8]) -> Result<Option<(Reply, usize)>, ReplyError> {
    let mut pos = 0;
    let mut code = None;
    let mut lines = Vec::new();
    loop {
        let Some(nl) = buf[pos..].iter().position(|&b| b == b'\n') else {
            if buf.len() > MAX_REPLY_BYTES {
                return Err(ReplyError::TooLong {
                    limit: MAX_REPLY_BYTES,
                });
            }
            // A line that has started can already be judged on its first four bytes.
            let partial = &buf[pos..];
            if !partial.is_empty() {
                check_prefix(partial)?;
            }
            return Ok(None);
        };
        let end = pos + nl + 1;
        if end > MAX_REPLY_BYTES {
            return Err(ReplyError::TooLong {
                limit: MAX_REPLY_BYTES,
            });
        }
        let mut line = &buf[pos..pos + nl];
        if let Some(stripped) = line.strip_suffix(b"\r") {
            line = stripped;
        }
        let (line_code, last, text) = parse_line(line)?;
        match code {
            None => code = Some(line_code),
            Some(first) if first != line_code => {
                return Err(ReplyError::MixedCodes {
                    first,
                    other: line_code,
                });
            }
            Some(_) => {}
        }
        if lines.len() == MAX_REPLY_LINES {
            return Err(ReplyError::TooManyLines {
                limit: MAX_REPLY_LINES,
            });
        }
        lines.push(text);
        pos = end;
        if last {
            let code = code.unwrap_or(line_code);
            let enhanced = enhanced_for(code, &lines[0]);
            return Ok(Some((
                Reply {
                    code,
                    enhanced,
                    lines,
                },
                pos,
            )));
        }
    }
}

/// Checks the start of an unfinished line so garbage is refused without waiting for a line end.
fn check_prefix(partial: &[u8]) -> Result<(), ReplyError> {
    let ok = partial.iter().take(3).enumerate().all(|(i, b)| match i {
        0 => (b'1'..=b'5').contains(b),
        _ => b.is_ascii_digit(),
    }) && partial
        .get(3)
        .is_none_or(|b| matches!(b, b' ' | b'-' | b'\r'));
    if ok { Ok(()) } else { Err(malformed(partial)) }
}

/// Splits one line (without its line end) into code, "is the last line", and text.
fn parse_line(line: &[u8]) -> Result<(u16, bool, String), ReplyError> {
    if line.len() < 3
        || !line[..3].iter().all(u8::is_ascii_digit)
        || !(b'1'..=b'5').contains(&line[0])
    {
        return Err(malformed(line));
    }
    let code = u16::from(line[0] - b'0') * 100
        + u16::from(line[1] - b'0') * 10
        + u16::from(line[2] - b'0');
    let (last, text) = match line.get(3) {
        None => (true, &[][..]),
        Some(b' ') => (true, &line[4..]),
        Some(b'-') => (false, &line[4..]),
        Some(_) => return Err(malformed(line)),
    };
    if text.contains(&b'\r') {
        return Err(malformed(line));
    }
    Ok((code, last, String::from_utf8_lossy(text).into_owned()))
}

fn malformed(line: &[u8]) -> ReplyError {
    let text = String::from_utf8_lossy(line);
    ReplyError::Malformed {
        line: text.chars().take(100).collect(),
    }
}

/// The enhanced code at the start of `first_line`, kept only when its class matches the reply
/// code's first digit (RFC 3463 §2), so text that merely starts with digits is not misread.
fn enhanced_for(code: u16, first_line: &str) -> Option<EnhancedCode> {
    EnhancedCode::parse_prefix(first_line)
        .map(|(enhanced, _)| enhanced)
        .filter(|enhanced| u16::from(enhanced.class) == code / 100)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(bytes: &[u8]) -> Reply {
        let (reply, used) = parse_reply(bytes).unwrap().unwrap();
        assert_eq!(used, bytes.len());
        reply
    }

    #[test]
    fn single_line_with_enhanced_code() {
        let reply = parse_all(b"250 2.1.0 Sender ok\r\n");
        assert_eq!(reply.code, 250);
        assert_eq!(reply.enhanced, Some(EnhancedCode::new(2, 1, 0)));
        assert_eq!(reply.lines, ["2.1.0 Sender ok"]);
        assert_eq!(reply.message(), "Sender ok");
        assert!(reply.is_success());
    }

    #[test]
    fn multi_line_reply_is_one_reply() {
        let bytes = b"250-mx.test Hello\r\n250-PIPELINING\r\n250 SIZE 1000\r\n";
        let reply = parse_all(bytes);
        assert_eq!(reply.lines, ["mx.test Hello", "PIPELINING", "SIZE 1000"]);
        assert_eq!(reply.enhanced, None);
        assert_eq!(reply.to_wire().as_bytes(), bytes);
    }

    #[test]
    fn incomplete_reply_asks_for_more() {
        assert_eq!(parse_reply(b"").unwrap(), None);
        assert_eq!(parse_reply(b"25").unwrap(), None);
        assert_eq!(parse_reply(b"250-first\r\n250 sec").unwrap(), None);
    }

    #[test]
    fn two_replies_in_one_buffer_are_taken_one_at_a_time() {
        let bytes = b"250 ok\r\n354 go on\r\n";
        let (first, used) = parse_reply(bytes).unwrap().unwrap();
        assert_eq!(first.code, 250);
        let (second, _) = parse_reply(&bytes[used..]).unwrap().unwrap();
        assert_eq!(second.code, 354);
    }

    #[test]
    fn code_without_text_and_bare_lf() {
        assert_eq!(parse_all(b"250\r\n").lines, [""]);
        assert_eq!(parse_all(b"221 bye\n").code, 221);
    }

    #[test]
    fn enhanced_code_of_the_wrong_class_is_ignored() {
        assert_eq!(parse_all(b"550 2.0.0 odd\r\n").enhanced, None);
        assert_eq!(
            parse_all(b"550 5.7.1 no\r\n").enhanced,
            Some(EnhancedCode::new(5, 7, 1))
        );
        assert_eq!(parse_all(b"250 1.2.3 x\r\n").enhanced, None);
        assert_eq!(parse_all(b"250 2.1000.0 x\r\n").enhanced, None);
    }

    #[test]
    fn malformed_lines_are_errors() {
        for bad in [
            &b"hello\r\n"[..],
            b"25x ok\r\n",
            b"250ok\r\n",
            b"650 what\r\n",
            b"HTTP/1.1 400",
            b"250 a\rb\r\n",
        ] {
            assert!(
                matches!(parse_reply(bad), Err(ReplyError::Malformed { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn mixed_codes_are_errors() {
        assert_eq!(
            parse_reply(b"250-a\r\n251 b\r\n"),
            Err(ReplyError::MixedCodes {
                first: 250,
                other: 251
            })
        );
    }

    #[test]
    fn oversized_replies_are_capped() {
        let mut long = b"250 ".to_vec();
        long.extend(std::iter::repeat_n(b'a', MAX_REPLY_BYTES + 1));
        assert_eq!(
            parse_reply(&long),
            Err(ReplyError::TooLong {
                limit: MAX_REPLY_BYTES
            })
        );
        let many = "250-x\r\n".repeat(MAX_REPLY_LINES + 1);
        assert_eq!(
            parse_reply(many.as_bytes()),
            Err(ReplyError::TooManyLines {
                limit: MAX_REPLY_LINES
            })
        );
    }

    #[test]
    fn display_is_one_line() {
        let reply = Reply::new(550, ["5.1.1 no such user", "see you"]);
        assert_eq!(reply.to_string(), "550 5.1.1 no such user / see you");
        assert_eq!(reply.enhanced, Some(EnhancedCode::new(5, 1, 1)));
        assert!(reply.is_permanent());
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
                if let Ok(Some((_, used))) = parse_reply(&bytes) {
                    prop_assert!(used <= bytes.len());
                }
            }

            #[test]
            fn wire_form_round_trips(
                code in 200u16..600,
                lines in proptest::collection::vec("[ -~]{0,40}", 1..8),
            ) {
                let reply = Reply::new(code, lines);
                let wire = reply.to_wire();
                let (parsed, used) = parse_reply(wire.as_bytes()).unwrap().unwrap();
                prop_assert_eq!(used, wire.len());
                prop_assert_eq!(parsed, reply);
            }
        }
    }
}
