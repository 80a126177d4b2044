//! Body encodings: Content-Transfer-Encoding (RFC 2045 §6) and the character sets a text
//! part may be written in.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// Content-Transfer-Encoding of a part (RFC 2045 §6.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum TransferEncoding {
    /// ASCII only, lines of at most 998 octets.
    #[serde(rename = "7bit")]
    SevenBit,
    /// Any octet but NUL, lines of at most 998 octets (needs 8BITMIME, RFC 6152).
    #[serde(rename = "8bit")]
    EightBit,
    /// Quoted-printable (RFC 2045 §6.7).
    #[serde(rename = "quoted-printable")]
    QuotedPrintable,
    /// Base64 (RFC 2045 §6.8), lines of 76 characters.
    #[serde(rename = "base64")]
    Base64,
}

impl TransferEncoding {
    /// The header value: `7bit`, `8bit`, `quoted-printable` or `base64`.
    pub fn as_str(self) -> &'static str {
        match self {
            TransferEncoding::SevenBit => "7bit",
            TransferEncoding::EightBit => "8bit",
            TransferEncoding::QuotedPrintable => "quoted-printable",
            TransferEncoding::Base64 => "base64",
        }
    }
}

impl fmt::Display for TransferEncoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A transfer encoding name that is not one of the four of RFC 2045.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown transfer encoding {0:?} (expected 7bit, 8bit, quoted-printable or base64)")]
pub struct UnknownTransferEncoding(pub String);

impl FromStr for TransferEncoding {
    type Err = UnknownTransferEncoding;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "7bit" => Ok(TransferEncoding::SevenBit),
            "8bit" => Ok(TransferEncoding::EightBit),
            "quoted-printable" => Ok(TransferEncoding::QuotedPrintable),
            "base64" => Ok(TransferEncoding::Base64),
            _ => Err(UnknownTransferEncoding(s.to_string())),
        }
    }
}

/// The character sets a text part can be written in. Text arrives as Rust strings (UTF-8);
/// other charsets are produced by transcoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Charset {
    /// UTF-8 (the default).
    Utf8,
    /// US-ASCII: text must be ASCII.
    UsAscii,
    /// ISO-8859-1 (Latin-1): text must be in U+0000..U+00FF.
    Latin1,
}

/// A charset name that Outbox cannot write.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown charset {0:?} (expected utf-8, us-ascii or iso-8859-1)")]
pub struct UnknownCharset(pub String);

impl FromStr for Charset {
    type Err = UnknownCharset;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "utf-8" | "utf8" => Ok(Charset::Utf8),
            "us-ascii" | "ascii" => Ok(Charset::UsAscii),
            "iso-8859-1" | "latin1" | "latin-1" | "iso8859-1" => Ok(Charset::Latin1),
            _ => Err(UnknownCharset(s.to_string())),
        }
    }
}

impl Charset {
    /// The MIME name used in `charset=` (RFC 2046 §4.1.2).
    pub fn as_str(self) -> &'static str {
        match self {
            Charset::Utf8 => "utf-8",
            Charset::UsAscii => "us-ascii",
            Charset::Latin1 => "iso-8859-1",
        }
    }

    /// Encodes `text` in this charset; `None` when a character has no code in it.
    pub fn encode(self, text: &str) -> Option<Vec<u8>> {
        match self {
            Charset::Utf8 => Some(text.as_bytes().to_vec()),
            Charset::UsAscii => text.is_ascii().then(|| text.as_bytes().to_vec()),
            Charset::Latin1 => text
                .chars()
                .map(|c| u8::try_from(u32::from(c)).ok())
                .collect(),
        }
    }

    /// Encodes an owned `text`, moving its bytes when the charset is UTF-8 (or US-ASCII and
    /// the text is ASCII); `None` when a character has no code in this charset.
    pub fn encode_owned(self, text: String) -> Option<Vec<u8>> {
        match self {
            Charset::Utf8 => Some(text.into_bytes()),
            Charset::UsAscii => text.is_ascii().then(|| text.into_bytes()),
            Charset::Latin1 => self.encode(&text),
        }
    }

    /// Encodes `text`, replacing characters that have no code in this charset with `?`.
    pub fn encode_lossy(self, text: &str) -> Vec<u8> {
        match self {
            Charset::Utf8 => text.as_bytes().to_vec(),
            Charset::UsAscii => text
                .chars()
                .map(|c| if c.is_ascii() { c as u8 } else { b'?' })
                .collect(),
            Charset::Latin1 => text
                .chars()
                .map(|c| u8::try_from(u32::from(c)).unwrap_or(b'?'))
                .collect(),
        }
    }

    /// Decodes bytes in this charset (invalid UTF-8 is replaced).
    pub fn decode(self, bytes: &[u8]) -> String {
        match self {
            Charset::Utf8 | Charset::UsAscii => String::from_utf8_lossy(bytes).into_owned(),
            Charset::Latin1 => bytes.iter().map(|&b| char::from(b)).collect(),
        }
    }
}

/// Converts every line end (`\r\n`, `\n`, lone `\r`) to CRLF, copying whole lines at a time.
pub fn normalize_crlf(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + text.len() / 32 + 2);
    let mut rest = text;
    while let Some(end) = rest.iter().position(|&b| b == b'\r' || b == b'\n') {
        out.extend_from_slice(&rest[..end]);
        out.extend_from_slice(b"\r\n");
        let skip = if rest[end] == b'\r' && rest.get(end + 1) == Some(&b'\n') {
            2
        } else {
            1
        };
        rest = &rest[end + skip..];
    }
    out.extend_from_slice(rest);
    out
}

/// A text with every line end (`\r\n`, `\n`, lone `\r`) made CRLF, and the length in
/// octets of its longest line. Lines are found with `str`'s memchr-based search, so a text
/// is copied a line at a time.
pub fn normalize_text(text: &str) -> (Cow<'_, str>, usize) {
    let mut longest = 0;
    if !text.contains('\r') {
        let mut lines = text.split('\n');
        let mut out = String::with_capacity(text.len() + text.len() / 32 + 2);
        if let Some(first) = lines.next() {
            longest = first.len();
            out.push_str(first);
        }
        for line in lines {
            longest = longest.max(line.len());
            out.push_str("\r\n");
            out.push_str(line);
        }
        return (Cow::Owned(out), longest);
    }
    let bytes = normalize_crlf(text.as_bytes());
    longest = longest_line(&bytes);
    let out = String::from_utf8(bytes).expect("line ends replaced on ASCII bytes only");
    (Cow::Owned(out), longest)
}

/// The longest line of CRLF-separated `data`, in octets (without the CRLF).
pub fn longest_line(data: &[u8]) -> usize {
    data.split(|&b| b == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line).len())
        .max()
        .unwrap_or(0)
}

/// Octets per base64 line: 57 input octets become 76 characters (RFC 2045 §6.8).
const B64_LINE_INPUT: usize = 57;

/// Appends `data` base64-encoded in lines of 76 characters, each ending in CRLF, straight
/// into `out` (RFC 2045 §6.8).
pub fn base64_lines_into(data: &[u8], out: &mut Vec<u8>) {
    let lines = data.len().div_ceil(B64_LINE_INPUT);
    let start = out.len();
    out.resize(start + lines * 78, 0);
    let mut at = start;
    for chunk in data.chunks(B64_LINE_INPUT) {
        let written = STANDARD
            .encode_slice(chunk, &mut out[at..])
            .expect("buffer sized for 76 characters per 57 octets");
        at += written;
        out[at] = b'\r';
        out[at + 1] = b'\n';
        at += 2;
    }
    out.truncate(at);
}

/// Encodes `body` (already in its charset, CRLF line ends) with `encoding`, appending to `out`.
/// The encoded text ends with CRLF only when `body` does (base64 always does); a multipart
/// writer adds the CRLF that belongs to the next boundary (RFC 2046 §5.1.1), and a single-part
/// message is ended by [`end_single_part`].
pub fn encode_body_into(body: &[u8], encoding: TransferEncoding, out: &mut Vec<u8>) {
    match encoding {
        TransferEncoding::SevenBit | TransferEncoding::EightBit => out.extend_from_slice(body),
        TransferEncoding::QuotedPrintable => out.extend_from_slice(&quoted_printable::encode(body)),
        TransferEncoding::Base64 => base64_lines_into(body, out),
    }
}

/// Ends a single-part message body with CRLF, as SMTP needs. For quoted-printable this is a
/// soft line break (`=` CRLF), so the decoded text gains nothing.
pub fn end_single_part(out: &mut Vec<u8>, encoding: TransferEncoding) {
    if !out.ends_with(b"\r\n") {
        if encoding == TransferEncoding::QuotedPrintable {
            out.push(b'=');
        }
        out.extend_from_slice(b"\r\n");
    }
}

/// Decodes a body written with `encoding` (lenient: what cannot be decoded is kept).
pub fn decode_body(body: &[u8], encoding: TransferEncoding) -> Vec<u8> {
    match encoding {
        TransferEncoding::SevenBit | TransferEncoding::EightBit => body.to_vec(),
        TransferEncoding::QuotedPrintable => {
            quoted_printable::decode(body, quoted_printable::ParseMode::Robust)
                .unwrap_or_else(|_| body.to_vec())
        }
        TransferEncoding::Base64 => {
            let compact: Vec<u8> = body
                .iter()
                .copied()
                .filter(|b| !b.is_ascii_whitespace())
                .collect();
            STANDARD.decode(&compact).unwrap_or_else(|_| body.to_vec())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_lines_are_76_columns() {
        let data: Vec<u8> = (0..=255u8).cycle().take(200).collect();
        let mut out = Vec::new();
        base64_lines_into(&data, &mut out);
        let lines: Vec<&[u8]> = out.split(|&b| b == b'\n').collect();
        assert_eq!(lines[0].len(), 77); // 76 + CR
        assert!(out.ends_with(b"\r\n"));
        assert_eq!(decode_body(&out, TransferEncoding::Base64), data);
    }

    #[test]
    fn quoted_printable_ends_with_soft_break_when_text_has_no_final_newline() {
        let mut out = Vec::new();
        encode_body_into(
            "café".as_bytes(),
            TransferEncoding::QuotedPrintable,
            &mut out,
        );
        end_single_part(&mut out, TransferEncoding::QuotedPrintable);
        assert_eq!(out, b"caf=C3=A9=\r\n");
        assert_eq!(
            decode_body(&out, TransferEncoding::QuotedPrintable),
            "café".as_bytes()
        );
    }

    #[test]
    fn names_parse_case_insensitively() {
        assert_eq!(
            "Quoted-Printable".parse(),
            Ok(TransferEncoding::QuotedPrintable)
        );
        assert!("binary".parse::<TransferEncoding>().is_err());
        assert_eq!("UTF-8".parse(), Ok(Charset::Utf8));
        assert!("koi8-r".parse::<Charset>().is_err());
        assert_eq!(Charset::Latin1.encode("é").as_deref(), Some(&[0xe9][..]));
        assert_eq!(Charset::UsAscii.encode("é"), None);
    }

    #[test]
    fn line_ends_become_crlf() {
        assert_eq!(normalize_crlf(b"a\nb\rc\r\nd"), b"a\r\nb\r\nc\r\nd");
        assert_eq!(normalize_text("ab\nc\rd\r\n").0, "ab\r\nc\r\nd\r\n");
        assert_eq!(normalize_text("abc\nd").1, 3);
        assert_eq!(normalize_text("a\rbcde").1, 4);
    }
}
