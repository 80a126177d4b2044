//! What sendmail does to the text on stdin before queueing it: the end-of-input rule for a
//! lone `.`, CRLF line ends, recipients from the headers for `-t`, Bcc removed, and the
//! headers RFC 5322 §3.6 requires (From, Date; Message-ID as §3.6.4 recommends) added when
//! missing, as Postfix's cleanup does.

use std::io::BufRead;

use outbox_mime::{Address, parse_address};
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
    /// A header line that is neither `Name: value` nor a continuation, before the body.
    #[error("unparsable header line {line}: {text:?}")]
    BadHeader {
        /// 1-based line number.
        line: usize,
        /// The line, shortened.
        text: String,
    },
}

/// Reads the message: LF or CRLF line ends in, CRLF out. Without `ignore_dots`, a line
/// holding a single `.` ends the message, as with real sendmail; the rest of the input is
/// not read.
pub fn read_message(input: &mut impl BufRead, ignore_dots: bool) -> std::io::Result<Vec<u8>> {
    let mut data = Vec::new();
    let mut line = Vec::new();
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
        if !ignore_dots && text == b"." {
            break;
        }
        data.extend_from_slice(text);
        if ends_with_newline || !text.is_empty() {
            data.extend_from_slice(b"\r\n");
        }
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

/// Splits CRLF text into header fields and body. A first line that is not a header means
/// the message has no header block at all (`echo hi | sendmail rcpt`), as Postfix reads it;
/// a bad line after real headers is an error.
pub fn parse(data: &[u8]) -> Result<Parsed, MessageError> {
    let mut fields: Vec<Field> = Vec::new();
    let mut offset = 0;
    let mut number = 0;
    while offset < data.len() {
        let end = find_crlf(&data[offset..]).map_or(data.len(), |i| offset + i + 2);
        let line = &data[offset..end];
        number += 1;
        let content = line.strip_suffix(b"\r\n").unwrap_or(line);
        if content.is_empty() {
            offset = end;
            break;
        }
        if content.starts_with(b" ") || content.starts_with(b"\t") {
            match fields.last_mut() {
                Some(field) => field.raw.extend_from_slice(line),
                None => return Ok(no_headers(data)),
            }
        } else if let Some(name) = header_name(content) {
            fields.push(Field {
                name,
                raw: line.to_vec(),
            });
        } else if fields.is_empty() {
            return Ok(no_headers(data));
        } else {
            let text: String = String::from_utf8_lossy(content).chars().take(60).collect();
            return Err(MessageError::BadHeader { line: number, text });
        }
        offset = end;
    }
    Ok(Parsed {
        fields,
        body: data[offset.min(data.len())..].to_vec(),
    })
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

impl Parsed {
    fn get(&self, name: &str) -> impl Iterator<Item = &Field> {
        self.fields
            .iter()
            .filter(move |f| f.name.eq_ignore_ascii_case(name))
    }

    /// Every address in the To, Cc and Bcc headers (RFC 5322 §3.6.3), groups included.
    pub fn header_recipients(&self) -> Result<Vec<String>, MessageError> {
        let mut out = Vec::new();
        for field in self.fields.iter().filter(|f| {
            ["to", "cc", "bcc"]
                .iter()
                .any(|n| f.name.eq_ignore_ascii_case(n))
        }) {
            for address in mailboxes(&field.name, &field.value())? {
                out.push(address.addr_spec());
            }
        }
        Ok(out)
    }

    /// The address of the first mailbox in From, if there is a From header.
    pub fn author_address(&self) -> Result<Option<String>, MessageError> {
        match self.get("from").next() {
            Some(field) => Ok(mailboxes(&field.name, &field.value())?
                .first()
                .map(Address::addr_spec)),
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
    /// From, Date and Message-ID added when missing.
    pub fn into_stored(self, sender: &str, now: OffsetDateTime) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.body.len() + 512);
        let has = |name: &str| self.get(name).next().is_some();
        if !has("from") {
            let from = if sender.is_empty() {
                "MAILER-DAEMON"
            } else {
                sender
            };
            out.extend_from_slice(format!("From: {from}\r\n").as_bytes());
        }
        if !has("date") {
            let date = now
                .format(&Rfc2822)
                .unwrap_or_else(|_| "Thu, 01 Jan 1970 00:00:00 +0000".into());
            out.extend_from_slice(format!("Date: {date}\r\n").as_bytes());
        }
        if !has("message-id") {
            let domain = sender.rsplit_once('@').map_or("localhost", |(_, d)| d);
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

/// The mailboxes of an address header value; a group (`Team: a@x, b@y;`) contributes its
/// members and `undisclosed-recipients:;` none (RFC 5322 §3.4).
fn mailboxes(header: &str, value: &str) -> Result<Vec<Address>, MessageError> {
    let mut out = Vec::new();
    for item in outbox_mime::split_address_list(value) {
        let mut item = item.trim();
        if let Some(members) = split_group(item) {
            item = members;
        }
        let item = item.trim().trim_end_matches(';').trim();
        if item.is_empty() {
            continue;
        }
        let address = parse_address(item).map_err(|err| MessageError::BadAddress {
            header: header.to_string(),
            detail: err.to_string(),
        })?;
        out.push(address);
    }
    Ok(out)
}

/// What follows `display-name:` at the start of a group (outside quotes and angle
/// brackets), or `None` when the item is not a group.
fn split_group(item: &str) -> Option<&str> {
    let mut quoted = false;
    for (i, c) in item.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '<' | '@' if !quoted => return None,
            ':' if !quoted => return Some(&item[i + 1..]),
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(input: &str, ignore_dots: bool) -> String {
        String::from_utf8(read_message(&mut input.as_bytes(), ignore_dots).unwrap()).unwrap()
    }

    #[test]
    fn lone_dot_ends_input_unless_i() {
        assert_eq!(read("a\n.\nb\n", false), "a\r\n");
        assert_eq!(read("a\n.\nb\n", true), "a\r\n.\r\nb\r\n");
        assert_eq!(read("a\r\n..\r\nc", false), "a\r\n..\r\nc\r\n");
        assert_eq!(read("", false), "");
    }

    #[test]
    fn recipients_groups_and_bcc_removal() {
        let data = read(
            "From: Ann <ann@x.test>\nTo: b@y.test,\n \"Lee, C\" <c@y.test>\nCc: Team: d@y.test;\n\
             Bcc: e@z.test\nTo: undisclosed-recipients:;\nSubject: hi\n there\n\nbody\nTo: no@x.test\n",
            true,
        );
        let parsed = parse(data.as_bytes()).unwrap();
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
        let stored = String::from_utf8(parsed.into_stored("ann@x.test", now)).unwrap();
        assert!(!stored.contains("Bcc"), "{stored}");
        assert!(!stored.contains("e@z.test"), "{stored}");
        assert!(stored.starts_with("Date: Thu, 01 Jan 1970 00:00:00 +0000\r\nMessage-ID: <"));
        assert!(stored.ends_with("Subject: hi\r\n there\r\n\r\nbody\r\nTo: no@x.test\r\n"));
    }

    #[test]
    fn bad_input() {
        let err = parse(b"From: a@x.test\r\nnot a header\r\n\r\nbody\r\n")
            .err()
            .unwrap();
        assert_eq!(
            err,
            MessageError::BadHeader {
                line: 2,
                text: "not a header".into()
            }
        );
        let parsed = parse(b"To: nobody\r\n\r\n").unwrap();
        assert!(matches!(
            parsed.header_recipients(),
            Err(MessageError::BadAddress { .. })
        ));
        let bare = parse(b"just text\r\n").unwrap();
        assert!(bare.header_recipients().unwrap().is_empty());
        let stored =
            String::from_utf8(bare.into_stored("me@h.test", OffsetDateTime::now_utc())).unwrap();
        assert!(stored.starts_with("From: me@h.test\r\nDate: "), "{stored}");
        assert!(stored.ends_with("\r\n\r\njust text\r\n"));
    }
}
