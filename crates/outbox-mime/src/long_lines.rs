//! [`fit_line_length`]: a message that came in whole (sendmail, the SMTP listener, the HTTP
//! `raw`/`mime` fields) made deliverable when it has lines over the 998 octets that RFC 5322
//! §2.1.1 allows and strict servers refuse (`500 Line too long`).
//!
//! What is changed, and only where a line is too long:
//! - a header field with a long line is unfolded and folded again between words (a field
//!   with no place to break is refused);
//! - a leaf part in 7bit, 8bit, binary or no transfer encoding is re-encoded as
//!   quoted-printable and its `Content-Transfer-Encoding` says so; decoding it gives the
//!   original content exactly (line ends as CRLF, as on the wire);
//! - a base64 or quoted-printable part with long lines is decoded and encoded again in
//!   lines of 76 characters (undecodable base64, or another encoding, is refused);
//! - multiparts and `message/rfc822` parts are walked, other parts copied byte for byte;
//! - a long line in a multipart's preamble or epilogue (text readers never show) is broken;
//! - a message without MIME headers (plain RFC 822, as PHP's `mail()` sends) whose body is
//!   re-encoded gets `MIME-Version: 1.0` and `Content-Type: text/plain` with `charset=utf-8`
//!   (valid UTF-8), `us-ascii` (ASCII), or no charset (other 8-bit data: its charset is not
//!   known, and a wrong claim would garble it).
//!
//! A message without a long line is returned borrowed, after one scan.

use std::borrow::Cow;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::encoding::{base64_lines_into, normalize_crlf};
use crate::header::fold_bytes;
use crate::mime_merge::{delimiter_lines, located_fields, parameter, split_head, unfold};

/// The longest line SMTP may carry, without its CRLF (RFC 5321 §4.5.3.1.6).
pub const MAX_LINE: usize = 998;

/// A message whose long lines cannot be made short without changing what it says.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LineLengthError {
    /// A header field longer than 998 octets with no place to fold it.
    #[error("header {field}: a line longer than 998 octets that cannot be folded")]
    Header {
        /// The field name (or `header` for a line that is not a field).
        field: String,
    },
    /// A part with long lines in an encoding that cannot be redone exactly.
    #[error("a {encoding} part has a line longer than 998 octets and cannot be re-encoded")]
    Body {
        /// The part's Content-Transfer-Encoding (or what is wrong with it).
        encoding: String,
    },
    /// A signed message or part with a long line: any re-encoding would break the signature,
    /// so the signer must produce short lines itself.
    #[error(
        "the message is signed ({signature}) and has a line longer than 998 octets; \
         re-encoding it would break the signature"
    )]
    Signed {
        /// What signs it: `DKIM-Signature`, `multipart/signed`, ...
        signature: String,
    },
}

/// True when some line of `data` is longer than 998 octets (line ends: LF or CRLF).
pub fn has_long_line(data: &[u8]) -> bool {
    use std::io::BufRead as _;
    // `BufRead::skip_until` on a slice finds each LF with the platform's memchr and copies
    // nothing: every queued message goes through this check.
    let mut rest = data;
    loop {
        let before = rest;
        let taken = rest.skip_until(b'\n').unwrap_or(0);
        if taken == 0 {
            return false;
        }
        let line = &before[..taken];
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.len() > MAX_LINE {
            return true;
        }
    }
}

/// `data` (a whole message) with no line over 998 octets: borrowed and unchanged when it
/// has none; otherwise the long lines are folded or their parts re-encoded as the module
/// documentation says, everything else kept byte for byte.
pub fn fit_line_length(data: &[u8]) -> Result<Cow<'_, [u8]>, LineLengthError> {
    if !has_long_line(data) {
        return Ok(Cow::Borrowed(data));
    }
    Ok(Cow::Owned(fit_entity(data, true)?))
}

/// A body part (headers, blank line, body) with its long lines fitted, as
/// [`fit_line_length`] does for a message.
pub(crate) fn fit_part(part: &[u8]) -> Result<Cow<'_, [u8]>, LineLengthError> {
    if !has_long_line(part) {
        return Ok(Cow::Borrowed(part));
    }
    Ok(Cow::Owned(fit_entity(part, false)?))
}

/// The line end an entity uses: CRLF unless its first line ends in a bare LF.
fn eol_of(data: &[u8]) -> &'static [u8] {
    match data.iter().position(|&b| b == b'\n') {
        Some(lf) if lf == 0 || data[lf - 1] != b'\r' => b"\n",
        _ => b"\r\n",
    }
}

/// Header fields whose signature covers the message as it is.
const SIGNATURE_FIELDS: &[&str] = &["DKIM-Signature", "ARC-Message-Signature"];

/// Content types whose body is signed or encrypted as it is.
const SIGNED_TYPES: &[&str] = &[
    "multipart/signed",
    "multipart/encrypted",
    "application/pkcs7-mime",
    "application/x-pkcs7-mime",
];

/// What a header block says about its body.
struct Info {
    essence: String,
    boundary: Option<String>,
    encoding: Option<String>,
    has_content_type: bool,
    has_mime_version: bool,
    /// The name of a signature field in this header block (`DKIM-Signature`, ...).
    signed_by: Option<String>,
}

fn info(head: &[u8]) -> Info {
    let mut info = Info {
        essence: "text/plain".to_string(),
        boundary: None,
        encoding: None,
        has_content_type: false,
        has_mime_version: false,
        signed_by: None,
    };
    for (_, _, name, raw) in located_fields(head) {
        if name.eq_ignore_ascii_case("content-type") {
            let value = unfold(raw);
            info.has_content_type = true;
            info.essence = value
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            info.boundary = parameter(&value, "boundary");
        } else if name.eq_ignore_ascii_case("content-transfer-encoding") {
            info.encoding = Some(unfold(raw).to_ascii_lowercase());
        } else if name.eq_ignore_ascii_case("mime-version") {
            info.has_mime_version = true;
        } else if SIGNATURE_FIELDS
            .iter()
            .any(|field| name.eq_ignore_ascii_case(field))
        {
            info.signed_by = Some(name.to_string());
        }
    }
    info
}

/// An entity (a message when `message`, else a body part) with its long lines fitted.
fn fit_entity(entity: &[u8], message: bool) -> Result<Vec<u8>, LineLengthError> {
    let (head, body) = split_head(entity);
    let separator = &entity[head.len()..entity.len() - body.len()];
    let eol = eol_of(entity);
    let info = info(head);
    // A signature covers these bytes (RFC 6376 §3.7, RFC 1847 §2.1): refuse rather than
    // send something that can only fail verification.
    if let Some(field) = &info.signed_by {
        return Err(LineLengthError::Signed {
            signature: field.clone(),
        });
    }
    if SIGNED_TYPES.contains(&info.essence.as_str()) {
        return Err(LineLengthError::Signed {
            signature: info.essence.clone(),
        });
    }
    let mut new_head = fit_head(head, eol)?;
    let new_body: Cow<'_, [u8]> = if !has_long_line(body) {
        Cow::Borrowed(body)
    } else if info.essence.starts_with("multipart/") {
        let Some(boundary) = &info.boundary else {
            return Err(LineLengthError::Body {
                encoding: "multipart without a boundary".to_string(),
            });
        };
        Cow::Owned(fit_multipart(body, boundary, eol)?)
    } else if matches!(info.essence.as_str(), "message/rfc822" | "message/global") {
        Cow::Owned(fit_entity(body, true)?)
    } else {
        let encoded = reencode(body, info.encoding.as_deref(), message)?;
        // The header without its Content-Transfer-Encoding fields, then the new ones.
        let mut head = Vec::with_capacity(new_head.len() + 128);
        let mut copied = 0;
        for (start, end, name, _) in located_fields(&new_head) {
            if name.eq_ignore_ascii_case("content-transfer-encoding") {
                head.extend_from_slice(&new_head[copied..start]);
                copied = end;
            }
        }
        head.extend_from_slice(&new_head[copied..]);
        if !head.is_empty() && !head.ends_with(b"\n") {
            head.extend_from_slice(eol);
        }
        if message && !info.has_mime_version {
            push_field(&mut head, "MIME-Version: 1.0", eol);
        }
        if message && !info.has_content_type {
            let charset = if body.is_ascii() {
                "; charset=us-ascii"
            } else if std::str::from_utf8(body).is_ok() {
                "; charset=utf-8"
            } else {
                ""
            };
            push_field(
                &mut head,
                &format!("Content-Type: text/plain{charset}"),
                eol,
            );
        }
        push_field(
            &mut head,
            &format!("Content-Transfer-Encoding: {}", encoded.1),
            eol,
        );
        new_head = Cow::Owned(head);
        Cow::Owned(encoded.0)
    };
    let mut out = Vec::with_capacity(new_head.len() + separator.len() + new_body.len());
    out.extend_from_slice(&new_head);
    if separator.is_empty() && !new_body.is_empty() {
        out.extend_from_slice(eol);
    } else {
        out.extend_from_slice(separator);
    }
    out.extend_from_slice(&new_body);
    Ok(out)
}

fn push_field(head: &mut Vec<u8>, field: &str, eol: &[u8]) {
    head.extend_from_slice(field.as_bytes());
    head.extend_from_slice(eol);
}

/// A header block with every field that has a long line unfolded and folded again.
fn fit_head<'a>(head: &'a [u8], eol: &[u8]) -> Result<Cow<'a, [u8]>, LineLengthError> {
    if !has_long_line(head) {
        return Ok(Cow::Borrowed(head));
    }
    let mut out = Vec::with_capacity(head.len() + head.len() / 32);
    let mut copied = 0;
    for (start, end, name, raw) in located_fields(head) {
        let field = &head[start..end];
        if !has_long_line(field) {
            continue;
        }
        out.extend_from_slice(&head[copied..start]);
        // Unfolding removes the line breaks only (RFC 5322 §2.2.3), keeping the spaces.
        let value: Vec<u8> = raw
            .iter()
            .copied()
            .filter(|&b| b != b'\r' && b != b'\n')
            .collect();
        let folded = fold_bytes(name.len() + 1, &value, eol, false);
        let mut new_field = Vec::with_capacity(folded.len() + name.len() + 3);
        new_field.extend_from_slice(&field[..field.len() - raw.len()]);
        new_field.extend_from_slice(&folded);
        new_field.extend_from_slice(eol);
        if has_long_line(&new_field) {
            // The name goes into an error message: only a plausible field name.
            let plausible = name.len() <= 76 && name.bytes().all(|b| b.is_ascii_graphic());
            return Err(LineLengthError::Header {
                field: if plausible {
                    name.to_string()
                } else {
                    "(a line without a field name)".to_string()
                },
            });
        }
        out.extend_from_slice(&new_field);
        copied = end;
    }
    out.extend_from_slice(&head[copied..]);
    // A long line left over is not a header field at all (no colon).
    if has_long_line(&out) {
        return Err(LineLengthError::Header {
            field: "(a line without a field name)".to_string(),
        });
    }
    Ok(Cow::Owned(out))
}

/// A leaf body with long lines, encoded again: `(body, encoding name)`.
fn reencode(
    body: &[u8],
    encoding: Option<&str>,
    message: bool,
) -> Result<(Vec<u8>, &'static str), LineLengthError> {
    let mut out = Vec::with_capacity(body.len() + body.len() / 16);
    match encoding.unwrap_or("7bit") {
        // Line ends in text are CRLF on the wire (the SMTP writer makes every line end CRLF),
        // so the content is the text with CRLF line ends.
        "7bit" | "8bit" => out = quoted_printable::encode(normalize_crlf(body)),
        // Binary content is kept octet for octet: a CR or LF that is not a CRLF pair is
        // encoded, not turned into a line break.
        "binary" => out = quoted_printable::encode(body),
        "quoted-printable" => {
            let decoded =
                quoted_printable::decode(normalize_crlf(body), quoted_printable::ParseMode::Robust)
                    .map_err(|_| LineLengthError::Body {
                        encoding: "quoted-printable (undecodable)".to_string(),
                    })?;
            out = quoted_printable::encode(decoded);
        }
        "base64" => {
            let compact: Vec<u8> = body
                .iter()
                .copied()
                .filter(|b| !b.is_ascii_whitespace())
                .collect();
            let decoded = STANDARD
                .decode(&compact)
                .map_err(|_| LineLengthError::Body {
                    encoding: "base64 (undecodable)".to_string(),
                })?;
            base64_lines_into(&decoded, &mut out);
            return Ok((out, "base64"));
        }
        other => {
            return Err(LineLengthError::Body {
                encoding: other.to_string(),
            });
        }
    }
    if message {
        crate::encoding::end_single_part(
            &mut out,
            crate::encoding::TransferEncoding::QuotedPrintable,
        );
    }
    Ok((out, "quoted-printable"))
}

/// A multipart body with each part that has a long line fitted on its own, and long lines
/// of the preamble and epilogue broken.
fn fit_multipart(body: &[u8], boundary: &str, eol: &[u8]) -> Result<Vec<u8>, LineLengthError> {
    let marks = delimiter_lines(body, boundary);
    let Some(&first) = marks.first() else {
        return Ok(break_lines(body, eol));
    };
    let mut out = break_lines(&body[..first], eol);
    let mut copied = first;
    for pair in marks.windows(2) {
        let Some(line_end) = body[pair[0]..]
            .iter()
            .position(|&b| b == b'\n')
            .map(|p| pair[0] + p + 1)
        else {
            break;
        };
        // The part ends before the line end that precedes the next delimiter.
        let mut part_end = pair[1];
        if part_end > line_end && body[part_end - 1] == b'\n' {
            part_end -= 1;
            if part_end > line_end && body[part_end - 1] == b'\r' {
                part_end -= 1;
            }
        }
        if part_end <= line_end || !has_long_line(&body[line_end..part_end]) {
            continue;
        }
        out.extend_from_slice(&body[copied..line_end]);
        out.extend_from_slice(&fit_entity(&body[line_end..part_end], false)?);
        copied = part_end;
    }
    // The rest: the last delimiter line and the epilogue.
    let last = *marks.last().unwrap_or(&first);
    let epilogue = body[last..]
        .iter()
        .position(|&b| b == b'\n')
        .map_or(body.len(), |p| last + p + 1)
        .max(copied);
    out.extend_from_slice(&body[copied..epilogue]);
    out.extend_from_slice(&break_lines(&body[epilogue..], eol));
    Ok(out)
}

/// Text no reader shows (a preamble, an epilogue) with lines over 998 octets broken.
fn break_lines(text: &[u8], eol: &[u8]) -> Vec<u8> {
    if !has_long_line(text) {
        return text.to_vec();
    }
    let mut out = Vec::with_capacity(text.len() + text.len() / 900);
    for (i, line) in text.split(|&b| b == b'\n').enumerate() {
        if i > 0 {
            out.push(b'\n');
        }
        let mut chunks = line.chunks(MAX_LINE).peekable();
        while let Some(chunk) = chunks.next() {
            out.extend_from_slice(chunk);
            if chunks.peek().is_some() {
                out.extend_from_slice(eol);
            }
        }
    }
    out
}
