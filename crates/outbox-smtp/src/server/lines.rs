//! Bounded line reading and the DATA reader (RFC 5321 §4.1.1.4, §4.5.2, §4.5.3.1).
//!
//! Nothing here buffers without limit: an over-long line is read to its end and discarded,
//! and message text past the size limit is counted but not kept.

use std::time::Duration;

use tokio::io::{AsyncBufRead, AsyncBufReadExt};

/// RFC 5321 §4.5.3.1.4: a command line is at most 512 octets with its CRLF.
pub const MAX_COMMAND_LINE: usize = 512;
/// RFC 4954 §4: an `AUTH` line (with its initial response) may be up to 12 288 octets.
pub const MAX_AUTH_LINE: usize = 12_288;
/// RFC 5321 §4.5.3.1.6 allows 1 000 octets per text line; real mail is sometimes longer, so
/// the server accepts lines up to this many octets and refuses the message beyond that.
pub const MAX_TEXT_LINE: usize = 64 * 1024;

/// One line as read from the client.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// A complete line; the buffer holds it with its line end.
    Complete,
    /// The line was longer than the limit; what was read of it was discarded but its last
    /// two octets, kept in the buffer so the caller can tell CRLF from a bare LF.
    TooLong,
    /// The client closed the connection (possibly mid-line).
    Eof,
}

/// Reads one line ending in LF into `buf` (cleared first), keeping at most `max` octets; a
/// longer line is consumed to its end and reported as [`Line::TooLong`], with only its last
/// two octets left in `buf`.
pub async fn read_line<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<Line> {
    buf.clear();
    let mut too_long = false;
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return Ok(Line::Eof);
        }
        let (chunk, done) = match memchr_lf(available) {
            Some(at) => (&available[..=at], true),
            None => (available, false),
        };
        let used = chunk.len();
        if too_long || buf.len() + chunk.len() > max {
            too_long = true;
            buf.extend_from_slice(&chunk[chunk.len().saturating_sub(2)..]);
            let keep = buf.len().saturating_sub(2);
            buf.drain(..keep);
        } else {
            buf.extend_from_slice(chunk);
        }
        reader.consume(used);
        if done {
            return Ok(if too_long {
                Line::TooLong
            } else {
                Line::Complete
            });
        }
    }
}

fn memchr_lf(bytes: &[u8]) -> Option<usize> {
    bytes.iter().position(|&b| b == b'\n')
}

/// Removes a trailing CRLF or bare LF.
pub fn trim_line_end(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Why message text was refused after the end-of-data mark was read.
#[derive(Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DataProblem {
    /// More than the size limit arrived (RFC 1870 §6: reply 552).
    TooBig {
        /// Octets received in all (after dot-unstuffing).
        received: u64,
    },
    /// A text line was longer than [`MAX_TEXT_LINE`] (RFC 5321 §4.5.3.1.6).
    LineTooLong,
    /// A line ended in a bare LF, or held a bare CR (RFC 5321 §2.3.8 allows neither). Such
    /// text is how SMTP smuggling hides a second message behind a `.` that this server and
    /// the next hop would read differently, so the server refuses it and closes the
    /// connection, as Postfix's `smtpd_forbid_bare_newline = yes` does. The text ended at
    /// the first line holding only `.`, whatever its line end, and nothing after it was read.
    BareNewline,
}

/// The message text as read by [`read_data`].
#[derive(Debug, PartialEq, Eq)]
pub enum Data {
    /// The text up to the end-of-data mark, dot-unstuffed, ending with the CRLF of its last
    /// line (RFC 5321 §4.1.1.4: the first CRLF of `CRLF.CRLF` ends the last text line).
    Complete(Vec<u8>),
    /// The end mark was read but the text is refused; nothing past the limit was kept.
    Refused(DataProblem),
    /// The connection closed before the end-of-data mark.
    Eof,
}

/// Hooks into the DATA reader, used by the fault injector to drop the connection mid-DATA.
pub trait DataObserver {
    /// Called after each line is received with the running total of octets; returning
    /// `false` stops reading at once and makes [`read_data`] return [`Data::Eof`].
    fn keep_going(&mut self, received: u64) -> bool;
}

impl DataObserver for () {
    fn keep_going(&mut self, _received: u64) -> bool {
        true
    }
}

/// Reads message text after `354` until the end-of-data mark `CRLF.CRLF` (RFC 5321
/// §4.1.1.4), removing the leading dot of dot-stuffed lines (§4.5.2) and keeping at most
/// `max_size` octets. Each line must arrive within `line_timeout` (RFC 5321 §4.5.3.2.6 gives
/// 3 minutes per block at least), else the read fails with [`std::io::ErrorKind::TimedOut`].
///
/// Only `CRLF.CRLF` ends clean text: `LF.LF`, `CRLF.LF` or `LF.CRLF` never do. A bare LF or
/// CR anywhere makes the text [`DataProblem::BareNewline`]; the read then stops at the next
/// line that is only `.` (with any line end) and leaves the rest unread, because the
/// caller closes the connection: what follows can never be taken for commands.
pub async fn read_data<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    max_size: u64,
    line_timeout: Duration,
    observer: &mut impl DataObserver,
) -> std::io::Result<Data> {
    let mut data = Vec::new();
    let mut line = Vec::new();
    let mut received: u64 = 0;
    let mut problem = None;
    // The CRLF that ended the DATA command counts as the first CRLF of `CRLF.CRLF`.
    let mut after_crlf = true;
    loop {
        let read = tokio::time::timeout(line_timeout, read_line(reader, &mut line, MAX_TEXT_LINE))
            .await
            .map_err(|_| {
                std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "timeout waiting for message text",
                )
            })??;
        match read {
            Line::Eof => return Ok(Data::Eof),
            Line::TooLong => {
                // `line` holds the over-long line's last octets: its line end.
                after_crlf = ends_with_crlf(&line);
                if !after_crlf {
                    problem = Some(DataProblem::BareNewline);
                    data = Vec::new();
                } else if problem != Some(DataProblem::BareNewline) {
                    problem.get_or_insert(DataProblem::LineTooLong);
                }
                continue;
            }
            Line::Complete => {}
        }
        let crlf = ends_with_crlf(&line);
        if problem == Some(DataProblem::BareNewline) {
            if trim_line_end(&line) == b"." {
                return Ok(Data::Refused(DataProblem::BareNewline));
            }
            continue;
        }
        if after_crlf && line == b".\r\n" {
            return Ok(match problem {
                None => Data::Complete(data),
                Some(DataProblem::TooBig { .. }) => Data::Refused(DataProblem::TooBig { received }),
                Some(other) => Data::Refused(other),
            });
        }
        if !crlf || has_bare_cr(&line) {
            // Takes precedence over a size or line-length problem: the connection must close.
            problem = Some(DataProblem::BareNewline);
            data = Vec::new();
            if trim_line_end(&line) == b"." {
                return Ok(Data::Refused(DataProblem::BareNewline));
            }
            continue;
        }
        after_crlf = true;
        let text = line.strip_prefix(b".").unwrap_or(&line);
        received += text.len() as u64;
        if !observer.keep_going(received) {
            return Ok(Data::Eof);
        }
        if problem.is_none() {
            if received > max_size {
                problem = Some(DataProblem::TooBig { received });
                data = Vec::new();
            } else {
                data.extend_from_slice(text);
            }
        }
    }
}

/// Whether a line read by [`read_line`] ends in CRLF (and not in a bare LF).
pub fn ends_with_crlf(line: &[u8]) -> bool {
    line.ends_with(b"\r\n")
}

/// Whether a line holds a CR that is not part of its final CRLF.
pub fn has_bare_cr(line: &[u8]) -> bool {
    let body = line.strip_suffix(b"\r\n").unwrap_or(line);
    body.contains(&b'\r')
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn data(input: &[u8], max: u64) -> Data {
        let mut reader = input;
        read_data(&mut reader, max, Duration::from_secs(60), &mut ())
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn unstuffs_and_keeps_the_last_crlf() {
        let got = data(b"Subject: x\r\n\r\n..leading dot\r\n.\r\nQUIT\r\n", 1000).await;
        assert_eq!(
            got,
            Data::Complete(b"Subject: x\r\n\r\n.leading dot\r\n".to_vec())
        );
    }

    #[tokio::test]
    async fn empty_message() {
        assert_eq!(data(b".\r\n", 10).await, Data::Complete(Vec::new()));
    }

    /// SMTP smuggling: every end mark but CRLF.CRLF is refused, and the read stops there so
    /// the smuggled commands after it are never read.
    #[tokio::test]
    async fn only_crlf_dot_crlf_ends_the_text_and_bare_newlines_are_refused() {
        let smuggled = b"MAIL FROM:<evil@x.test>\r\nRCPT TO:<v@y.test>\r\nDATA\r\n";
        for (name, text) in [
            ("LF.LF", &b"a\r\nb\n.\n"[..]),
            ("CRLF.LF", b"a\r\n.\n"),
            ("LF.CRLF", b"a\n.\r\n"),
            ("bare CR", b"a\r.\r\n"),
            ("CR inside a line", b"a\rb\r\n.\r\n"),
            ("CR.CR", b"a\r\n\r.\r\n"),
        ] {
            let mut input = text.to_vec();
            input.extend_from_slice(smuggled);
            input.extend_from_slice(b"smuggled\r\n.\r\n");
            let mut reader = &input[..];
            let got = read_data(&mut reader, 1000, Duration::from_secs(60), &mut ())
                .await
                .unwrap();
            assert_eq!(got, Data::Refused(DataProblem::BareNewline), "{name}");
        }
        // The refused text ends at its first `.` line: the rest stays unread.
        let mut reader: &[u8] = b"a\n.\nMAIL FROM:<e@x.test>\r\n";
        let got = read_data(&mut reader, 1000, Duration::from_secs(60), &mut ())
            .await
            .unwrap();
        assert_eq!(got, Data::Refused(DataProblem::BareNewline));
        assert_eq!(reader, b"MAIL FROM:<e@x.test>\r\n");
        // A `.` with a bare LF after clean CRLF lines is refused, not taken as the end.
        assert_eq!(
            data(b"a\r\n.\nb\r\n.\r\n", 100).await,
            Data::Refused(DataProblem::BareNewline)
        );
    }

    #[tokio::test]
    async fn a_dot_inside_a_line_is_not_the_end() {
        let got = data(b"a.\r\n.b\r\n.\r\n", 100).await;
        assert_eq!(got, Data::Complete(b"a.\r\nb\r\n".to_vec()));
    }

    #[tokio::test]
    async fn over_size_is_refused_after_the_end_mark() {
        let got = data(b"0123456789\r\n0123456789\r\n.\r\n", 15).await;
        assert_eq!(got, Data::Refused(DataProblem::TooBig { received: 24 }));
        // Exactly at the limit is fine.
        assert_eq!(
            data(b"01234\r\n.\r\n", 7).await,
            Data::Complete(b"01234\r\n".to_vec())
        );
    }

    #[tokio::test]
    async fn an_endless_line_is_refused_not_buffered() {
        let mut input = vec![b'x'; MAX_TEXT_LINE + 10];
        input.extend_from_slice(b"\r\n.\r\n");
        assert_eq!(
            data(&input, u64::MAX).await,
            Data::Refused(DataProblem::LineTooLong)
        );
    }

    #[tokio::test]
    async fn eof_before_the_end_mark() {
        assert_eq!(data(b"text\r\n", 100).await, Data::Eof);
    }

    #[tokio::test]
    async fn read_line_limits() {
        let mut reader: &[u8] = b"short\r\nwaytoolongline\r\nok\r\n";
        let mut buf = Vec::new();
        assert_eq!(
            read_line(&mut reader, &mut buf, 8).await.unwrap(),
            Line::Complete
        );
        assert_eq!(buf, b"short\r\n");
        assert_eq!(
            read_line(&mut reader, &mut buf, 8).await.unwrap(),
            Line::TooLong
        );
        assert_eq!(
            read_line(&mut reader, &mut buf, 8).await.unwrap(),
            Line::Complete
        );
        assert_eq!(buf, b"ok\r\n");
        assert_eq!(
            read_line(&mut reader, &mut buf, 8).await.unwrap(),
            Line::Eof
        );
    }
}
