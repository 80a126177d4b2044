//! The "relaxed" canonicalizations of RFC 6376 §3.4.2 (headers) and §3.4.4 (body), and the
//! split of a message into header fields and body that they work on.
//!
//! Lines may end in CRLF or a bare LF (SMTP sends both as CRLF); nothing here panics on any
//! input.

use ring::digest;

/// One header field as it appears in the message: its name and its whole raw text
/// (name, colon, value and continuation lines, without the final line break).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HeaderField<'a> {
    pub name: &'a [u8],
    pub raw: &'a [u8],
}

impl HeaderField<'_> {
    /// The value after the colon, unfolded and trimmed (lossy UTF-8).
    pub fn value(&self) -> String {
        let colon = self
            .raw
            .iter()
            .position(|&b| b == b':')
            .unwrap_or(self.raw.len());
        let value = self.raw.get(colon + 1..).unwrap_or_default();
        let mut out = Vec::with_capacity(value.len());
        relaxed_value_into(value, &mut out);
        String::from_utf8_lossy(&out).into_owned()
    }
}

/// Why a message's header could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HeaderSyntax {
    /// A header line that is neither a field (`name:`) nor a continuation.
    LineWithoutColon,
}

/// Splits `message` into its header fields and the offset where the body starts (after the
/// empty line; the message's length when there is none).
pub(crate) fn split(message: &[u8]) -> Result<(Vec<HeaderField<'_>>, usize), HeaderSyntax> {
    let mut fields: Vec<HeaderField<'_>> = Vec::new();
    let mut pos = 0;
    // (start, end) of the field being read.
    let mut current: Option<(usize, usize)> = None;
    while pos < message.len() {
        let line_end = memchr_lf(&message[pos..]).map_or(message.len(), |i| pos + i);
        let next = (line_end + 1).min(message.len());
        let mut content_end = line_end;
        if content_end > pos && message[content_end - 1] == b'\r' {
            content_end -= 1;
        }
        let line = &message[pos..content_end];
        if line.is_empty() {
            if let Some(field) = current.take() {
                fields.push(field_at(message, field));
            }
            return Ok((fields, next));
        }
        if line[0] == b' ' || line[0] == b'\t' {
            match current.as_mut() {
                Some(field) => field.1 = content_end,
                None => return Err(HeaderSyntax::LineWithoutColon),
            }
        } else {
            if let Some(field) = current.take() {
                fields.push(field_at(message, field));
            }
            if !line.contains(&b':') {
                return Err(HeaderSyntax::LineWithoutColon);
            }
            current = Some((pos, content_end));
        }
        pos = next;
    }
    if let Some(field) = current.take() {
        fields.push(field_at(message, field));
    }
    Ok((fields, message.len()))
}

fn field_at(message: &[u8], (start, end): (usize, usize)) -> HeaderField<'_> {
    let raw = &message[start..end];
    let colon = raw.iter().position(|&b| b == b':').unwrap_or(raw.len());
    let mut name = &raw[..colon];
    while let [rest @ .., b' ' | b'\t'] = name {
        name = rest;
    }
    HeaderField { name, raw }
}

fn memchr_lf(bytes: &[u8]) -> Option<usize> {
    bytes.iter().position(|&b| b == b'\n')
}

fn is_wsp(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// Appends a header value unfolded, with runs of whitespace reduced to one space and no
/// whitespace at either end (RFC 6376 §3.4.2).
fn relaxed_value_into(value: &[u8], out: &mut Vec<u8>) {
    let mut pending_space = false;
    for &b in value {
        if b == b'\r' || b == b'\n' {
            continue;
        }
        if is_wsp(b) {
            pending_space = true;
            continue;
        }
        if pending_space && !out.is_empty() {
            out.push(b' ');
        }
        pending_space = false;
        out.push(b);
    }
}

/// The relaxed canonical form of a raw header field `name:value`, with the final CRLF
/// (RFC 6376 §3.4.2): lowercase name, no whitespace around the colon, the value unfolded and
/// its whitespace runs reduced to one space.
pub(crate) fn relaxed_header(raw: &[u8], out: &mut Vec<u8>) {
    let colon = raw.iter().position(|&b| b == b':').unwrap_or(raw.len());
    let mut name = &raw[..colon];
    while let [rest @ .., b' ' | b'\t'] = name {
        name = rest;
    }
    out.extend(name.iter().map(u8::to_ascii_lowercase));
    out.push(b':');
    let start = out.len();
    relaxed_value_into(raw.get(colon + 1..).unwrap_or_default(), out);
    // `relaxed_value_into` drops leading whitespace only when `out` is empty; here it is
    // not, so strip a leading space it may have written.
    if out.get(start) == Some(&b' ') {
        out.remove(start);
    }
    out.extend_from_slice(b"\r\n");
}

/// SHA-256 of the body in relaxed canonical form (RFC 6376 §3.4.4): trailing whitespace of
/// each line removed, inner runs reduced to one space, empty lines at the end removed, and a
/// non-empty body ending in CRLF. Streams: no copy of the body is made.
pub(crate) fn relaxed_body_hash(body: &[u8]) -> digest::Digest {
    let mut hasher = digest::Context::new(&digest::SHA256);
    let mut empty_lines = 0usize;
    let mut line = Vec::with_capacity(1000);
    let mut rest = body;
    while !rest.is_empty() {
        let (raw, next) = match memchr_lf(rest) {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, &rest[rest.len()..]),
        };
        rest = next;
        line.clear();
        relaxed_body_line(raw, &mut line);
        if line.is_empty() {
            empty_lines += 1;
            continue;
        }
        for _ in 0..empty_lines {
            hasher.update(b"\r\n");
        }
        empty_lines = 0;
        hasher.update(&line);
        hasher.update(b"\r\n");
    }
    hasher.finish()
}

/// One body line in relaxed form (no line break): whitespace runs become one space and
/// trailing whitespace goes (RFC 6376 §3.4.4).
fn relaxed_body_line(raw: &[u8], line: &mut Vec<u8>) {
    let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
    let mut pending_space = false;
    for &b in raw {
        if is_wsp(b) {
            pending_space = true;
        } else {
            if pending_space {
                line.push(b' ');
            }
            pending_space = false;
            line.push(b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn relaxed_headers(message: &[u8]) -> Vec<u8> {
        let (fields, _) = split(message).unwrap();
        let mut out = Vec::new();
        for field in fields {
            relaxed_header(field.raw, &mut out);
        }
        out
    }

    fn relaxed_body(body: &[u8]) -> Vec<u8> {
        // The reference form, for the hash test: the same rules, materialised.
        let mut lines: Vec<Vec<u8>> = Vec::new();
        for raw in body.split(|&b| b == b'\n') {
            let mut line = Vec::new();
            relaxed_body_line(raw, &mut line);
            lines.push(line);
        }
        while lines.last().is_some_and(Vec::is_empty) {
            lines.pop();
        }
        let mut out = Vec::new();
        for line in lines {
            out.extend_from_slice(&line);
            out.extend_from_slice(b"\r\n");
        }
        out
    }

    /// RFC 6376 §3.4.5, the relaxed example ("A: <SP> X <CRLF> B <SP> : <SP> Y <HTAB><CRLF>
    /// <HTAB> Z <SP><SP><CRLF>").
    #[test]
    fn rfc6376_example_headers() {
        let message = b"A: X\r\nB : Y\t\r\n\tZ  \r\n\r\n C \r\nD \t E\r\n\r\n\r\n";
        assert_eq!(relaxed_headers(message), b"a:X\r\nb:Y Z\r\n");
    }

    #[test]
    fn rfc6376_example_body() {
        let message = b"A: X\r\nB : Y\t\r\n\tZ  \r\n\r\n C \r\nD \t E\r\n\r\n\r\n";
        let (_, body) = split(message).unwrap();
        assert_eq!(relaxed_body(&message[body..]), b" C\r\nD E\r\n");
        let hash = relaxed_body_hash(&message[body..]);
        let expected = digest::digest(&digest::SHA256, b" C\r\nD E\r\n");
        assert_eq!(hash.as_ref(), expected.as_ref());
    }

    #[test]
    fn an_empty_body_hashes_as_empty() {
        // RFC 6376 §3.4.4: the relaxed form of an empty body is empty.
        for body in [&b""[..], b"\r\n", b"\r\n\r\n  \r\n"] {
            let hash = relaxed_body_hash(body);
            assert_eq!(hash.as_ref(), digest::digest(&digest::SHA256, b"").as_ref());
        }
    }

    #[test]
    fn bare_lf_and_crlf_bodies_hash_alike() {
        let crlf = relaxed_body_hash(b"a  b \r\n\r\nc\r\n\r\n");
        let lf = relaxed_body_hash(b"a  b \n\nc\n\n");
        assert_eq!(crlf.as_ref(), lf.as_ref());
        assert_eq!(
            crlf.as_ref(),
            digest::digest(&digest::SHA256, b"a b\r\n\r\nc\r\n").as_ref()
        );
    }

    #[test]
    fn a_body_without_a_final_line_break_gets_one() {
        let hash = relaxed_body_hash(b"last line");
        assert_eq!(
            hash.as_ref(),
            digest::digest(&digest::SHA256, b"last line\r\n").as_ref()
        );
    }

    #[test]
    fn split_finds_folded_fields_and_the_body() {
        let message = b"From: a@example.com\r\nSubject: one\r\n two\r\n\r\nbody\r\n";
        let (fields, body) = split(message).unwrap();
        assert_eq!(fields.len(), 2);
        assert_eq!(fields[1].name, b"Subject");
        assert_eq!(fields[1].raw, b"Subject: one\r\n two");
        assert_eq!(fields[1].value(), "one two");
        assert_eq!(&message[body..], b"body\r\n");
    }

    #[test]
    fn a_line_without_colon_is_refused() {
        assert_eq!(
            split(b"From: a@b\r\nnot a header\r\n\r\n"),
            Err(HeaderSyntax::LineWithoutColon)
        );
        assert_eq!(
            split(b" leading continuation\r\n\r\n"),
            Err(HeaderSyntax::LineWithoutColon)
        );
    }
}
