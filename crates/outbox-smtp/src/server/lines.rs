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
    /// The line was longer than the limit; what was read of it was discarded.
    TooLong,
    /// The client closed the connection (possibly mid-line).
    Eof,
}

/// Reads one line ending in LF into `buf` (cleared first), keeping at most `max` octets; a
/// longer line is consumed to its end and reported as [`Line::TooLong`].
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
        if !too_long {
            if buf.len() + chunk.len() > max {
                too_long = true;
                buf.clear();
            } else {
                buf.extend_from_slice(chunk);
            }
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
pub enum DataProblem {
    /// More than the size limit arrived (RFC 1870 §6: reply 552).
    TooBig {
        /// Octets received in all (after dot-unstuffing).
        received: u64,
    },
    /// A text line was longer than [`MAX_TEXT_LINE`] (RFC 5321 §4.5.3.1.6).
    LineTooLong,
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

/// Reads message text after `354` until the line `.` (RFC 5321 §4.1.1.4), removing the
/// leading dot of dot-stuffed lines (§4.5.2) and keeping at most `max_size` octets. Each
/// line must arrive within `line_timeout` (RFC 5321 §4.5.3.2.6 gives 3 minutes per block at
/// least), else the read fails with [`std::io::ErrorKind::TimedOut`].
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
                problem.get_or_insert(DataProblem::LineTooLong);
                continue;
            }
            Line::Complete => {}
        }
        if trim_line_end(&line) == b"." {
            return Ok(match problem {
                None => Data::Complete(data),
                Some(DataProblem::TooBig { .. }) => Data::Refused(DataProblem::TooBig { received }),
                Some(other) => Data::Refused(other),
            });
        }
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
    async fn empty_message_and_bare_lf_end() {
        assert_eq!(data(b".\r\n", 10).await, Data::Complete(Vec::new()));
        assert_eq!(data(b"a\n.\n", 10).await, Data::Complete(b"a\n".to_vec()));
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
