//! What sendmail does to the text on stdin before queueing it: the end-of-input rule for a
//! lone `.`, CRLF line ends, recipients from the headers for `-t`, Bcc removed, and the
//! headers RFC 5322 §3.6 requires (From, Date; Message-ID as §3.6.4 recommends) added when
//! missing, as Postfix's cleanup does.

use std::io::BufRead;

use outbox_mime::Address;

use super::qualify;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc2822;

/// Why the message cannot be queued (`EX_DATAERR`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    /// An address header that is not a list of mailboxes.
    #[error("invalid address in the {header} header: {detail}")]
    BadAddress {
        /// The header's name as written.
        header: String,
        /// What the address parser said.
        detail: String,
    },
}

/// Why stdin could not be read into a message.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// Reading failed (the caller may retry: `EX_TEMPFAIL`).
    #[error("cannot read stdin: {0}")]
    Io(#[from] std::io::Error),
    /// More than `limit` bytes: nothing more is read (`EX_DATAERR`).
    #[error("message is over the size limit")]
    TooLarge {
        /// The limit, in bytes.
        limit: u64,
    },
}

/// Reads the message: LF or CRLF line ends in, CRLF out. Without `ignore_dots`, a line
/// holding a single `.` ends the message, as with real sendmail; the rest of the input is
/// not read. A first line `From sender date` (an mbox separator, not a header) is dropped,
/// as Postfix's sendmail does. At most `limit` bytes (after the CRLF conversion) are kept
/// and at most `limit + 1` read, so a runaway producer cannot fill memory.
pub fn read_message(
    input: &mut impl BufRead,
    ignore_dots: bool,
    limit: u64,
) -> Result<Vec<u8>, ReadError> {
    let mut input = std::io::Read::take(input, limit.saturating_add(1));
    let mut data = Vec::new();
    let mut line = Vec::new();
    let mut first = true;
    loop {
        line.clear();
        if input.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        let ends_with_newline = line.last() == Some(&b'\n');
        let mut text: &[u8] = &line;
        if let Some(rest) = text.strip_suffix(b"\n") {
            text = rest.strip_suffix(b"\r").unwrap_or(rest);
        }
        if std::mem::take(&mut first) && text.starts_with(b"From ") && ends_with_newline {
            continue;
        }
        if !ignore_dots && text == b"." {
            return Ok(data);
        }
        data.extend_from_slice(text);
        if ends_with_newline || !text.is_empty() {
            data.extend_from_slice(b"\r\n");
        }
        if data.len() as u64 > limit {
            return Err(ReadError::TooLarge { limit });
        }
    }
    if input.limit() == 0 {
        return Err(ReadError::TooLarge { limit });
    }
    Ok(data)
}

/// One header field: its name and its (possibly folded) raw lines.
struct Field {
    name: String,
    raw: Vec<u8>,
}

impl Field {
    /// The value, unfolded (RFC 5322 §2.2.3).
    fn value(&self) -> String {
        let text = String::from_utf8_lossy(&self.raw);
        let after = text.split_once(':').map_or("", |(_, v)| v);
        after
            .split("\r\n")
            .map(str::trim)
            .filter(|part| !part.is_empty())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// A message split into header fields and body (after the blank line).
pub struct Parsed {
    fields: Vec<Field>,
    body: Vec<u8>,
}

/// Splits CRLF text into header fields and body, as Postfix's cleanup reads it: a first
/// line that is not a header means the message has no header block at all
/// (`echo hi | sendmail rcpt`), and the first line after the headers that is neither a
/// header nor a continuation starts the body even without the blank line (the blank line is
/// put back when the message is stored).
pub fn parse(data: &[u8]) -> Parsed {
    let mut fields: Vec<Field> = Vec::new();
    let mut offset = 0;
    while offset < data.len() {
        let end = find_crlf(&data[offset..]).map_or(data.len(), |i| offset + i + 2);
        let line = &data[offset..end];
        let content = line.strip_suffix(b"\r\n").unwrap_or(line);
        if content.is_empty() {
            offset = end;
            break;
        }
        if content.starts_with(b" ") || content.starts_with(b"\t") {
            match fields.last_mut() {
                Some(field) => field.raw.extend_from_slice(line),
                None => return no_headers(data),
            }
        } else if let Some(name) = header_name(content) {
            fields.push(Field {
                name,
                raw: line.to_vec(),
            });
        } else {
            break;
        }
        offset = end;
    }
    Parsed {
        fields,
        body: data[offset.min(data.len())..].to_vec(),
    }
}

fn no_headers(data: &[u8]) -> Parsed {
    Parsed {
        fields: Vec::new(),
        body: data.to_vec(),
    }
}

/// `Name:` with a name of printable ASCII except colon (RFC 5322 §2.2).
fn header_name(line: &[u8]) -> Option<String> {
    let colon = line.iter().position(|&b| b == b':')?;
    let name = &line[..colon];
    let valid = !name.is_empty() && name.iter().all(|&b| (b'!'..=b'~').contains(&b));
    valid.then(|| String::from_utf8_lossy(name).into_owned())
}

fn find_crlf(data: &[u8]) -> Option<usize> {
    data.windows(2).position(|w| w == b"\r\n")
}

/// The headers whose addresses are completed with `[sendmail] domain` (RFC 5322 §3.6.2,
/// §3.6.3), as Postfix rewrites them for local submissions.
const ADDRESS_HEADERS: &[&str] = &["from", "sender", "reply-to", "to", "cc", "bcc"];

impl Parsed {
    fn get(&self, name: &str) -> impl Iterator<Item = &Field> {
        self.fields
            .iter()
            .filter(move |f| f.name.eq_ignore_ascii_case(name))
    }

    /// Completes every address without a domain in the address headers with `domain`
    /// (`From: root (Cron Daemon)` becomes `From: root@DOMAIN (Cron Daemon)`); comments,
    /// display names and folding are kept. A header that is not an address list is refused.
    pub fn qualify(&mut self, domain: &str) -> Result<(), MessageError> {
        for field in &mut self.fields {
            if !ADDRESS_HEADERS
                .iter()
                .any(|n| field.name.eq_ignore_ascii_case(n))
            {
                continue;
            }
            // An address is ASCII or UTF-8 (RFC 6532); other bytes would become U+FFFD
            // and a recipient nobody wrote.
            let Ok(raw) = String::from_utf8(field.raw.clone()) else {
                return Err(MessageError::BadAddress {
                    header: field.name.clone(),
                    detail: "not valid UTF-8".to_string(),
                });
            };
            let colon = raw.find(':').map_or(raw.len(), |i| i + 1);
            let (_, rewritten) =
                qualify::qualify_list(&raw[colon..], domain).map_err(|err| bad(field, err))?;
            if let Some(value) = rewritten {
                field.raw = format!("{}{value}", &raw[..colon]).into_bytes();
            }
        }
        Ok(())
    }

    fn addresses(field: &Field) -> Result<Vec<Address>, MessageError> {
        // Already qualified: any domain will do, none is added.
        let (addresses, _) =
            qualify::qualify_list(&field.value(), "invalid").map_err(|err| bad(field, err))?;
        Ok(addresses)
    }

    /// Every address in the To, Cc and Bcc headers (RFC 5322 §3.6.3), groups included.
    pub fn header_recipients(&self) -> Result<Vec<String>, MessageError> {
        let mut out = Vec::new();
        for field in self.fields.iter().filter(|f| {
            ["to", "cc", "bcc"]
                .iter()
                .any(|n| f.name.eq_ignore_ascii_case(n))
        }) {
            for address in Self::addresses(field)? {
                out.push(address.addr_spec());
            }
        }
        Ok(out)
    }

    /// The address of the first mailbox in From, if there is a From header.
    pub fn author_address(&self) -> Result<Option<String>, MessageError> {
        match self.get("from").next() {
            Some(field) => Ok(Self::addresses(field)?.first().map(Address::addr_spec)),
            None => Ok(None),
        }
    }

    /// The unfolded Subject, for listings.
    pub fn subject(&self) -> String {
        self.get("subject")
            .next()
            .map(Field::value)
            .unwrap_or_default()
    }

    /// The message to store: Bcc removed (its recipients must not see each other), and
    /// From (with `full_name`, sendmail's `-F`, as its display name), Date and Message-ID
    /// added when missing; the null sender's From is MAILER-DAEMON at `domain`.
    pub fn into_stored(
        self,
        sender: &str,
        full_name: Option<&str>,
        domain: &str,
        now: OffsetDateTime,
    ) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.body.len() + 512);
        let has = |name: &str| self.get(name).next().is_some();
        if !has("from") {
            let from = if sender.is_empty() {
                format!("MAILER-DAEMON@{domain}")
            } else {
                sender.to_string()
            };
            let line = match full_name.map(str::trim).filter(|n| !n.is_empty()) {
                Some(name) => format!("From: {} <{from}>\r\n", qualify::phrase(name)),
                None => format!("From: {from}\r\n"),
            };
            out.extend_from_slice(line.as_bytes());
        }
        if !has("date") {
            let date = now
                .format(&Rfc2822)
                .unwrap_or_else(|_| "Thu, 01 Jan 1970 00:00:00 +0000".into());
            out.extend_from_slice(format!("Date: {date}\r\n").as_bytes());
        }
        if !has("message-id") {
            let domain = sender.rsplit_once('@').map_or(domain, |(_, d)| d);
            out.extend_from_slice(
                format!("Message-ID: <{}@{domain}>\r\n", ulid::Ulid::new()).as_bytes(),
            );
        }
        for field in &self.fields {
            if !field.name.eq_ignore_ascii_case("bcc") {
                out.extend_from_slice(&field.raw);
            }
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.body);
        out
    }
}

fn bad(field: &Field, err: outbox_mime::AddressError) -> MessageError {
    MessageError::BadAddress {
        header: field.name.clone(),
        detail: err.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(input: &str, ignore_dots: bool) -> String {
        let data = read_message(&mut input.as_bytes(), ignore_dots, 1000).unwrap();
        String::from_utf8(data).unwrap()
    }

    #[test]
    fn lone_dot_ends_input_unless_i() {
        assert_eq!(read("a\n.\nb\n", false), "a\r\n");
        assert_eq!(read("a\n.\nb\n", true), "a\r\n.\r\nb\r\n");
        assert_eq!(read("a\r\n..\r\nc", false), "a\r\n..\r\nc\r\n");
        assert_eq!(read("", false), "");
    }

    #[test]
    fn a_leading_mbox_from_line_is_dropped() {
        let input = "From root@h.test Mon Nov 30 03:26:16 2026\nSubject: s\n\nFrom the body\n";
        assert_eq!(read(input, true), "Subject: s\r\n\r\nFrom the body\r\n");
        assert_eq!(
            read("From: a@x.test\n\nb\n", true),
            "From: a@x.test\r\n\r\nb\r\n"
        );
    }

    #[test]
    fn reading_stops_at_the_limit() {
        let ok = read_message(&mut "0123456\r\n".as_bytes(), true, 9).unwrap();
        assert_eq!(ok, b"0123456\r\n");
        // LF becomes CRLF: 9 bytes in, 10 kept, over the limit.
        let grown = read_message(&mut "01234567\n".as_bytes(), true, 9);
        assert!(matches!(grown, Err(ReadError::TooLarge { limit: 9 })));
        // A line without end is not read whole: the reader gives up after limit + 1 bytes.
        let mut endless = std::io::BufReader::new(std::io::repeat(b'x'));
        let err = read_message(&mut endless, true, 1 << 16).unwrap_err();
        assert!(matches!(err, ReadError::TooLarge { limit: 65536 }));
        // A lone dot before the limit ends the message in time.
        let mut dotted = std::io::BufReader::new(std::io::Read::chain(
            "a\n.\n".as_bytes(),
            std::io::repeat(b'x'),
        ));
        assert_eq!(read_message(&mut dotted, false, 100).unwrap(), b"a\r\n");
    }

    #[test]
    fn recipients_groups_and_bcc_removal() {
        let data = read(
            "From: Ann <ann@x.test>\nTo: b@y.test,\n \"Lee, C\" <c@y.test>\nCc: Team: d@y.test;\n\
             Bcc: e@z.test\nTo: undisclosed-recipients:;\nSubject: hi\n there\n\nbody\nTo: no@x.test\n",
            true,
        );
        let parsed = parse(data.as_bytes());
        assert_eq!(
            parsed.header_recipients().unwrap(),
            ["b@y.test", "c@y.test", "d@y.test", "e@z.test"]
        );
        assert_eq!(
            parsed.author_address().unwrap().as_deref(),
            Some("ann@x.test")
        );
        assert_eq!(parsed.subject(), "hi there");
        let now = OffsetDateTime::from_unix_timestamp(0).unwrap();
        let stored =
            String::from_utf8(parsed.into_stored("ann@x.test", None, "h.test", now)).unwrap();
        assert!(!stored.contains("Bcc"), "{stored}");
        assert!(!stored.contains("e@z.test"), "{stored}");
        assert!(stored.starts_with("Date: Thu, 01 Jan 1970 00:00:00 +0000\r\nMessage-ID: <"));
        assert!(stored.ends_with("Subject: hi\r\n there\r\n\r\nbody\r\nTo: no@x.test\r\n"));
    }

    #[test]
    fn cron_headers_are_qualified_in_place() {
        let data = "From: root (Cron Daemon)\r\nTo: root\r\nCc: ops,\r\n \"Ann\" <ann>\r\n\
                    Subject: Cron <root@h> job\r\nX-Cron-Env: <SHELL=/bin/sh>\r\n\r\nout\r\n";
        let mut parsed = parse(data.as_bytes());
        parsed.qualify("h.test").unwrap();
        assert_eq!(
            parsed.header_recipients().unwrap(),
            ["root@h.test", "ops@h.test", "ann@h.test"]
        );
        assert_eq!(
            parsed.author_address().unwrap().as_deref(),
            Some("root@h.test")
        );
        let now = OffsetDateTime::from_unix_timestamp(0).unwrap();
        let stored =
            String::from_utf8(parsed.into_stored("root@h.test", Some("CronDaemon"), "h.test", now))
                .unwrap();
        assert!(
            stored.contains(
                "\r\nFrom: root@h.test (Cron Daemon)\r\nTo: root@h.test\r\n\
             Cc: ops@h.test,\r\n \"Ann\" <ann@h.test>\r\nSubject: Cron <root@h> job\r\n\
             X-Cron-Env: <SHELL=/bin/sh>\r\n\r\nout\r\n"
            ),
            "{stored}"
        );
        assert!(
            !stored.contains("CronDaemon"),
            "-F only when there is no From: {stored}"
        );
    }

    #[test]
    fn full_name_and_missing_blank_line() {
        let mut parsed = parse(b"To: a@x.test\r\nSubject: s\r\nno blank line\r\nmore\r\n");
        parsed.qualify("h.test").unwrap();
        let now = OffsetDateTime::from_unix_timestamp(0).unwrap();
        let stored =
            String::from_utf8(parsed.into_stored("me@h.test", Some("Lee, Ann"), "h.test", now))
                .unwrap();
        assert!(
            stored.starts_with("From: \"Lee, Ann\" <me@h.test>\r\n"),
            "{stored}"
        );
        assert!(
            stored.ends_with("\r\nSubject: s\r\n\r\nno blank line\r\nmore\r\n"),
            "{stored}"
        );
        let null = parse(b"x\r\n").into_stored("", None, "h.test", now);
        assert!(null.starts_with(b"From: MAILER-DAEMON@h.test\r\n"));
    }

    #[test]
    fn bad_input() {
        let mut parsed = parse(b"To: nobody at all\r\n\r\n");
        assert!(matches!(
            parsed.qualify("h.test"),
            Err(MessageError::BadAddress { .. })
        ));
        let mut latin1 = parse(b"To: r\xf6ot\r\n\r\n");
        assert_eq!(
            latin1.qualify("h.test").unwrap_err().to_string(),
            "invalid address in the To header: not valid UTF-8"
        );
        let bare = parse(b"just text\r\n");
        assert!(bare.header_recipients().unwrap().is_empty());
        let stored = String::from_utf8(bare.into_stored(
            "me@h.test",
            None,
            "h.test",
            OffsetDateTime::now_utc(),
        ))
        .unwrap();
        assert!(stored.starts_with("From: me@h.test\r\nDate: "), "{stored}");
        assert!(stored.ends_with("\r\n\r\njust text\r\n"));
    }
}
