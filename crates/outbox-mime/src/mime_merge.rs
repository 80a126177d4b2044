//! The MIME walk behind [`crate::merge_message`]: header fields, then the body by content
//! type: multiparts recursively (RFC 2046 §5.1), text parts decoded, merged and re-encoded,
//! everything else copied.

use crate::encoding::{
    Charset, TransferEncoding, decode_body, encode_body_into, end_single_part, longest_line,
};
use crate::header;
use crate::merge::{TokenLookup, replace_markers};

/// True when `data` starts with a header block naming MIME-Version or Content-Type.
pub(crate) fn looks_like_mime(data: &[u8]) -> bool {
    let (head, _) = split_head(data);
    let Some(first) = head.split(|&b| b == b'\n').next() else {
        return false;
    };
    let Some(colon) = first.iter().position(|&b| b == b':') else {
        return false;
    };
    if colon == 0 || !first[..colon].iter().all(|&b| (b'!'..=b'~').contains(&b)) {
        return false;
    }
    fields(head).any(|(name, _)| {
        name.eq_ignore_ascii_case("mime-version") || name.eq_ignore_ascii_case("content-type")
    })
}

/// Splits an entity into its header block (including the final line end) and its body.
pub(crate) fn split_head(entity: &[u8]) -> (&[u8], &[u8]) {
    if entity.starts_with(b"\r\n") {
        return (&[], &entity[2..]);
    }
    if entity.starts_with(b"\n") {
        return (&[], &entity[1..]);
    }
    let crlf = entity
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i + 2, i + 4));
    let lf = entity
        .windows(2)
        .position(|w| w == b"\n\n")
        .map(|i| (i + 1, i + 2));
    match (crlf, lf) {
        (Some(a), Some(b)) if b.0 < a.0 => (&entity[..b.0], &entity[b.1..]),
        (Some((head, body)), _) | (None, Some((head, body))) => (&entity[..head], &entity[body..]),
        (None, None) => (entity, &[]),
    }
}

/// The header fields of a block as (name, raw value with its folding and line end).
pub(crate) fn fields(head: &[u8]) -> impl Iterator<Item = (&str, &[u8])> {
    located_fields(head).map(|(_, _, name, raw)| (name, raw))
}

/// The header fields of a block as (start, end, name, raw value).
pub(crate) fn located_fields(head: &[u8]) -> impl Iterator<Item = (usize, usize, &str, &[u8])> {
    let mut starts = vec![];
    let mut at = 0;
    while at < head.len() {
        if at == 0 || !matches!(head[at], b' ' | b'\t') {
            starts.push(at);
        }
        at += head[at..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(head.len() - at, |i| i + 1);
    }
    starts.push(head.len());
    let ranges: Vec<(usize, usize)> = starts.windows(2).map(|w| (w[0], w[1])).collect();
    ranges.into_iter().filter_map(move |(from, to)| {
        let field = &head[from..to];
        let colon = field.iter().position(|&b| b == b':')?;
        let name = std::str::from_utf8(&field[..colon]).ok()?.trim();
        Some((from, to, name, &field[colon + 1..]))
    })
}

/// A raw header value unfolded and trimmed (RFC 5322 §2.2.3).
pub(crate) fn unfold(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    text.replace("\r\n", "")
        .replace('\n', "")
        .trim()
        .to_string()
}

/// What the header block says about the body.
struct ContentInfo {
    essence: String,
    boundary: Option<String>,
    charset: Option<String>,
    encoding: Option<TransferEncoding>,
    /// `Content-Disposition: attachment`: a file, never merged.
    attachment: bool,
}

/// A parameter of a structured field value (`; name=value` or `; name="value"`).
pub(crate) fn parameter(value: &str, wanted: &str) -> Option<String> {
    value.split(';').skip(1).find_map(|param| {
        let (name, v) = param.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case(wanted)
            .then(|| v.trim().trim_matches('"').to_string())
    })
}

fn content_info(head: &[u8]) -> ContentInfo {
    let mut info = ContentInfo {
        essence: "text/plain".to_string(),
        boundary: None,
        charset: None,
        encoding: None,
        attachment: false,
    };
    for (name, raw) in fields(head) {
        if name.eq_ignore_ascii_case("content-type") {
            let value = unfold(raw);
            info.essence = value
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            info.boundary = parameter(&value, "boundary");
            info.charset = parameter(&value, "charset");
        } else if name.eq_ignore_ascii_case("content-transfer-encoding") {
            info.encoding = unfold(raw).parse().ok();
        } else if name.eq_ignore_ascii_case("content-disposition") {
            let value = unfold(raw);
            let kind = value.split(';').next().unwrap_or("").trim();
            info.attachment = kind.eq_ignore_ascii_case("attachment");
        }
    }
    info
}

/// Header fields whose values are never merged: MIME structure and identity.
fn is_unmerged_field(name: &str) -> bool {
    [
        "content-type",
        "content-transfer-encoding",
        "content-id",
        "content-disposition",
        "mime-version",
        "message-id",
        "date",
    ]
    .iter()
    .any(|n| name.eq_ignore_ascii_case(n))
}

/// Address fields: a value goes in as-is when it is a plain phrase, else as encoded-words.
fn is_address_field(name: &str) -> bool {
    ["from", "to", "cc", "bcc", "reply-to", "sender"]
        .iter()
        .any(|n| name.eq_ignore_ascii_case(n))
}

/// A merge value made safe for a header: line breaks become spaces, so a value can never
/// inject a header field.
fn header_safe(value: &str) -> String {
    value.replace(['\r', '\n'], " ")
}

/// Merges one header field; `None` when it has no known marker.
fn merge_field(name: &str, raw: &[u8], values: &impl TokenLookup) -> Option<Vec<u8>> {
    if is_unmerged_field(name) || !raw.contains(&b'#') && !raw.windows(2).any(|w| w == b"=?") {
        return None;
    }
    let value = if is_address_field(name) {
        let unfolded = unfold(raw);
        let merged = replace_markers(unfolded.as_bytes(), values, |v, out| {
            let v = header_safe(v);
            let plain = v
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b" !#$%&'*+-/=?^_`{|}~.".contains(&b));
            if plain && !v.contains("=?") {
                out.extend_from_slice(v.as_bytes());
            } else {
                out.extend_from_slice(header::encoded_words(&v, " ").as_bytes());
            }
        })?;
        // Encoded-words for a long value can make the line long: fold between them.
        header::fold(name.len() + 2, &String::from_utf8(merged).ok()?)
    } else {
        let decoded = header::decode_unstructured(&unfold(raw));
        let merged = replace_markers(decoded.as_bytes(), values, |v, out| {
            out.extend_from_slice(header_safe(v).as_bytes());
        })?;
        header::unstructured(name, &String::from_utf8(merged).ok()?)
    };
    let mut out = Vec::with_capacity(name.len() + value.len() + 4);
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(b"\r\n");
    Some(out)
}

/// Merges an entity (a message when `top`, else a body part); `None` when nothing changed.
pub(crate) fn merge_entity(entity: &[u8], values: &impl TokenLookup, top: bool) -> Option<Vec<u8>> {
    let (head, body) = split_head(entity);
    let info = content_info(head);
    let mut new_encoding = None;
    let new_body =
        if let (true, Some(boundary)) = (info.essence.starts_with("multipart/"), &info.boundary) {
            merge_multipart(body, boundary, values)
        } else if info.essence.starts_with("text/") && !info.attachment {
            let merged = merge_text_body(body, &info, values, top);
            if let Some((_, encoding)) = &merged
                && Some(*encoding) != info.encoding
            {
                new_encoding = Some(*encoding);
            }
            merged.map(|(bytes, _)| bytes)
        } else {
            None
        };
    let mut new_head: Option<Vec<u8>> = None;
    let mut copied = 0;
    for (start, end, name, raw) in located_fields(head) {
        let replacement =
            if new_encoding.is_some() && name.eq_ignore_ascii_case("content-transfer-encoding") {
                Some(format!("{name}: {}\r\n", new_encoding?.as_str()).into_bytes())
            } else {
                merge_field(name, raw, values)
            };
        if let Some(replacement) = replacement {
            let buffer = new_head.get_or_insert_with(|| Vec::with_capacity(head.len() + 64));
            buffer.extend_from_slice(&head[copied..start]);
            buffer.extend_from_slice(&replacement);
            copied = end;
        }
    }
    if new_head.is_none() && new_body.is_none() {
        return None;
    }
    let mut out = Vec::with_capacity(entity.len() + 256);
    match new_head {
        Some(mut merged) => {
            merged.extend_from_slice(&head[copied..]);
            out.extend_from_slice(&merged);
        }
        None => out.extend_from_slice(head),
    }
    out.extend_from_slice(&entity[head.len()..entity.len() - body.len()]);
    out.extend_from_slice(new_body.as_deref().unwrap_or(body));
    Some(out)
}

/// A text body decoded, merged and re-encoded: the part's charset for the values, the same
/// transfer encoding unless a value no longer fits it (non-ASCII in 7bit, a long line), in
/// which case quoted-printable.
fn merge_text_body(
    body: &[u8],
    info: &ContentInfo,
    values: &impl TokenLookup,
    top: bool,
) -> Option<(Vec<u8>, TransferEncoding)> {
    let charset = match &info.charset {
        Some(name) => name.parse::<Charset>().ok()?,
        None => Charset::UsAscii,
    };
    let encoding = info.encoding.unwrap_or(TransferEncoding::SevenBit);
    let decoded = decode_body(body, encoding);
    let merged = replace_markers(&decoded, values, |v, out| {
        out.extend_from_slice(&crate::encoding::normalize_crlf(&charset.encode_lossy(v)));
    })?;
    let encoding = match encoding {
        TransferEncoding::SevenBit if !merged.is_ascii() || longest_line(&merged) > 998 => {
            TransferEncoding::QuotedPrintable
        }
        TransferEncoding::EightBit if longest_line(&merged) > 998 => {
            TransferEncoding::QuotedPrintable
        }
        other => other,
    };
    let mut out = Vec::with_capacity(merged.len() + 64);
    encode_body_into(&merged, encoding, &mut out);
    if top {
        end_single_part(&mut out, encoding);
    }
    Some((out, encoding))
}

/// Where each `--BOUNDARY` delimiter line of a multipart body starts (RFC 2046 §5.1.1): at
/// the very start of the body or right after a line end.
pub(crate) fn delimiter_lines(body: &[u8], boundary: &str) -> Vec<usize> {
    let delimiter = format!("--{boundary}");
    let delimiter = delimiter.as_bytes();
    let mut marks = vec![];
    let mut i = 0;
    while let Some(p) = body[i..]
        .windows(delimiter.len())
        .position(|w| w == delimiter)
    {
        let at = i + p;
        if at == 0 || body[at - 1] == b'\n' {
            marks.push(at);
        }
        i = at + delimiter.len();
    }
    marks
}

/// A multipart body: the preamble and epilogue are kept, each part merged on its own.
fn merge_multipart(body: &[u8], boundary: &str, values: &impl TokenLookup) -> Option<Vec<u8>> {
    let marks = delimiter_lines(body, boundary);
    if marks.len() < 2 {
        return None;
    }
    let mut out: Option<Vec<u8>> = None;
    let mut copied = 0;
    for pair in marks.windows(2) {
        // The part runs from after the delimiter line to before the line end that precedes
        // the next delimiter.
        let line_end = body[pair[0]..]
            .iter()
            .position(|&b| b == b'\n')
            .map(|p| pair[0] + p + 1)?;
        let mut part_end = pair[1];
        if part_end > line_end && body[part_end - 1] == b'\n' {
            part_end -= 1;
            if part_end > line_end && body[part_end - 1] == b'\r' {
                part_end -= 1;
            }
        }
        if part_end < line_end {
            continue;
        }
        if let Some(merged) = merge_entity(&body[line_end..part_end], values, false) {
            let buffer = out.get_or_insert_with(|| Vec::with_capacity(body.len() + 256));
            buffer.extend_from_slice(&body[copied..line_end]);
            buffer.extend_from_slice(&merged);
            copied = part_end;
        }
    }
    let mut out = out?;
    out.extend_from_slice(&body[copied..]);
    Some(out)
}
