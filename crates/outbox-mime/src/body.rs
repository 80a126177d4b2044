//! The body structure of DESIGN §3: text/plain, text/html, multipart/alternative,
//! multipart/related for inline images, multipart/mixed for attachments.

use std::borrow::Cow;
use std::path::Path;

use crate::encoding::{Charset, TransferEncoding, normalize_crlf, normalize_text};
use crate::error::ComposeError;
use crate::header;
use crate::merge::contains_marker;
use crate::part::{Boundaries, Node};
use crate::spec::{EmailSpec, PartSource};

/// What the body builder needs from the spec, validated.
pub(crate) struct BodyOptions<'a> {
    pub charset: Charset,
    pub transfer_encoding: Option<TransferEncoding>,
    /// A Content-Type override for a single-part body (already validated).
    pub content_type: Option<&'a str>,
    /// The largest file read for an image or attachment `path`.
    pub max_file_size: u64,
}

/// Builds the body tree of `spec`, or `None` when it has no body at all.
pub(crate) fn build<'a>(
    spec: &'a EmailSpec,
    options: &BodyOptions<'_>,
    boundaries: &mut Boundaries,
) -> Result<Option<Node<'a>>, ComposeError> {
    let text = spec
        .text
        .as_deref()
        .map(|text| text_leaf("text", text, "plain", options))
        .transpose()?;
    let html = match spec.html.as_deref() {
        None => {
            if !spec.html_images.is_empty() {
                return Err(ComposeError::Missing { field: "html" });
            }
            None
        }
        Some(html) => Some(html_node(html, &spec.html_images, options, boundaries)?),
    };
    let mut body = match (text, html) {
        (Some(text), Some(html)) => Some(boundaries.multipart("alternative", vec![text, html])),
        (text, html) => text.or(html),
    };
    if !spec.attachments.is_empty() {
        let mut children = Vec::with_capacity(spec.attachments.len() + 1);
        children.extend(body.take());
        for source in &spec.attachments {
            children.push(source_node(
                "attachments",
                source,
                Disposition::Attachment,
                options,
            )?);
        }
        body = Some(if children.len() == 1 {
            children.remove(0)
        } else {
            boundaries.multipart("mixed", children)
        });
    }
    if options.content_type.is_some() && matches!(body, Some(Node::Multipart { .. })) {
        return Err(ComposeError::ContentTypeOnMultipart);
    }
    if let (Some(content_type), Some(Node::Leaf { headers, .. })) =
        (options.content_type, &mut body)
        && let Some(slot) = headers.iter_mut().find(|(name, _)| *name == "Content-Type")
    {
        let is_text = slot.1.starts_with("text/");
        slot.1 = header::content_type_value(content_type);
        // A text body keeps saying which charset it is in.
        if is_text && !content_type.to_ascii_lowercase().contains("charset=") {
            slot.1
                .push_str(&format!("; charset={}", options.charset.as_str()));
        }
    }
    Ok(body)
}

/// A text/SUBTYPE leaf in the spec's charset and transfer encoding. A text that carries
/// `#NAME#` markers is never base64-encoded (quoted-printable instead), so the merge step
/// can find them.
fn text_leaf(
    field: &'static str,
    text: &str,
    subtype: &str,
    options: &BodyOptions<'_>,
) -> Result<Node<'static>, ComposeError> {
    let (normalized, longest) = normalize_text(text);
    let has_nul = normalized.contains('\0');
    let body = options
        .charset
        .encode_owned(normalized.into_owned())
        .ok_or(ComposeError::Unrepresentable {
            field,
            charset: options.charset.as_str(),
        })?;
    let unfit = |encoding, reason| ComposeError::TransferEncodingUnfit {
        field,
        encoding,
        reason,
    };
    let encoding = match options.transfer_encoding {
        None if body.is_ascii() && !has_nul && longest <= 998 => TransferEncoding::SevenBit,
        None => TransferEncoding::QuotedPrintable,
        Some(TransferEncoding::Base64) if contains_marker(text) => {
            TransferEncoding::QuotedPrintable
        }
        Some(TransferEncoding::SevenBit) if !body.is_ascii() => {
            return Err(unfit(TransferEncoding::SevenBit, "non-ASCII text"));
        }
        Some(e @ (TransferEncoding::SevenBit | TransferEncoding::EightBit)) if longest > 998 => {
            return Err(unfit(e, "a line longer than 998 octets"));
        }
        Some(e @ (TransferEncoding::SevenBit | TransferEncoding::EightBit)) if has_nul => {
            return Err(unfit(e, "a NUL character"));
        }
        Some(e) => e,
    };
    let headers = vec![
        (
            "Content-Type",
            format!("text/{subtype}; charset={}", options.charset.as_str()),
        ),
        ("Content-Transfer-Encoding", encoding.as_str().to_string()),
    ];
    Ok(Node::leaf(headers, Cow::Owned(body), encoding))
}

/// The html part, with its inline images as multipart/related when there are any.
fn html_node<'a>(
    html: &str,
    images: &'a [PartSource],
    options: &BodyOptions<'_>,
    boundaries: &mut Boundaries,
) -> Result<Node<'a>, ComposeError> {
    if images.is_empty() {
        return text_leaf("html", html, "html", options);
    }
    let mut html = Cow::Borrowed(html);
    let mut children = vec![];
    for source in images {
        let node = source_node("html_images", source, Disposition::Inline, options)?;
        if let Some((reference, id)) = image_reference(source)
            && let Cow::Owned(rewritten) = rewrite_src(&html, &reference, &format!("cid:{id}"))
        {
            html = Cow::Owned(rewritten);
        }
        children.push(node);
    }
    children.insert(0, text_leaf("html", &html, "html", options)?);
    Ok(boundaries.multipart("related", children))
}

/// For an inline image: the `src` value that refers to it and its Content-ID. A path image
/// is referred to by its path exactly and identified by its file name; a named image (data,
/// or `NAME=PATH`) is referred to and identified by its name (DESIGN §3).
fn image_reference(source: &PartSource) -> Option<(String, String)> {
    match source {
        PartSource::Path {
            path, name: None, ..
        } => {
            let file_name = path.file_name()?.to_string_lossy().into_owned();
            Some((path.to_string_lossy().into_owned(), content_id(&file_name)))
        }
        PartSource::Path {
            name: Some(name), ..
        }
        | PartSource::Data { name, .. } => Some((name.clone(), content_id(name))),
        PartSource::Mime(_) => None,
    }
}

/// A Content-ID from a file name: characters that cannot appear in a msg-id (RFC 5322 §3.6.4)
/// are percent-encoded, as a `cid:` URL would write them (RFC 2392). A msg-id cannot be
/// folded, so an id longer than 60 characters is shortened to its first 40 and a hash of
/// the whole name (the same name always gives the same id, which the `src` rewrite needs).
fn content_id(name: &str) -> String {
    let mut id = String::with_capacity(name.len());
    for &b in name.as_bytes() {
        if b.is_ascii_alphanumeric() || b"!#$&'*+-/=?^_`{|}~.@".contains(&b) {
            id.push(char::from(b));
        } else {
            id.push_str(&format!("%{b:02X}"));
        }
    }
    if id.len() <= 60 {
        return id;
    }
    // Cut before a %XX triplet rather than through it.
    let mut cut = 40;
    if let Some(percent) = id[cut - 2..cut].find('%') {
        cut = cut - 2 + percent;
    }
    // FNV-1a: stable across runs and Rust versions, unlike `DefaultHasher`.
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("{}.{hash:016x}", &id[..cut])
}

/// Replaces every `src="REFERENCE"` (or single-quoted) attribute value equal to `reference`
/// with `replacement`. Borrowed when nothing matched.
fn rewrite_src<'a>(html: &'a str, reference: &str, replacement: &str) -> Cow<'a, str> {
    let mut out = String::new();
    let mut copied = 0;
    let lower = html.to_ascii_lowercase();
    let mut search = 0;
    while let Some(found) = lower[search..].find("src") {
        let at = search + found;
        search = at + 3;
        let preceded = at > 0 && html.as_bytes()[at - 1].is_ascii_whitespace();
        let rest = html[at + 3..].trim_start();
        let Some(rest) = rest.strip_prefix('=') else {
            continue;
        };
        let rest = rest.trim_start();
        let Some(quote) = rest.chars().next().filter(|q| *q == '"' || *q == '\'') else {
            continue;
        };
        let value_start = html.len() - rest.len() + 1;
        let Some(len) = html[value_start..].find(quote) else {
            continue;
        };
        if preceded && &html[value_start..value_start + len] == reference {
            out.push_str(&html[copied..value_start]);
            out.push_str(replacement);
            copied = value_start + len;
            search = copied;
        }
    }
    if copied == 0 {
        return Cow::Borrowed(html);
    }
    out.push_str(&html[copied..]);
    Cow::Owned(out)
}

/// How a file part is presented.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Disposition {
    Attachment,
    Inline,
}

/// A leaf for an attachment or inline image: read, typed, base64-encoded.
fn source_node<'a>(
    field: &'static str,
    source: &'a PartSource,
    disposition: Disposition,
    options: &BodyOptions<'_>,
) -> Result<Node<'a>, ComposeError> {
    let (name, data, given_type) = match source {
        PartSource::Mime(raw) => return raw_node(field, raw),
        PartSource::Path {
            path,
            name,
            content_type,
        } => {
            let data = crate::file::read_file(path, options.max_file_size).map_err(|error| {
                ComposeError::UnreadableFile {
                    field,
                    path: path.clone(),
                    error,
                }
            })?;
            let name = match name {
                Some(name) => name.clone(),
                None => file_name(path).ok_or_else(|| ComposeError::InvalidPartName {
                    field,
                    name: path.display().to_string(),
                })?,
            };
            (name, Cow::Owned(data), content_type.as_deref())
        }
        PartSource::Data {
            name,
            data,
            content_type,
        } => (
            name.clone(),
            Cow::Borrowed(data.as_slice()),
            content_type.as_deref(),
        ),
    };
    if name.is_empty() || name.contains(['\r', '\n']) {
        return Err(ComposeError::InvalidPartName { field, name });
    }
    let content_type = match given_type {
        Some(given) => header::content_type_value(validate_content_type(field, given)?),
        None => mime_guess::from_path(&name)
            .first_or_octet_stream()
            .essence_str()
            .to_string(),
    };
    let charset = text_charset(&content_type, &data);
    let mut headers = vec![(
        "Content-Type",
        format!(
            "{content_type}{charset}{}",
            header::file_name_parameter("name", &name)
        ),
    )];
    let kind = match disposition {
        Disposition::Attachment => "attachment",
        Disposition::Inline => "inline",
    };
    headers.push((
        "Content-Disposition",
        format!("{kind}{}", header::file_name_parameter("filename", &name)),
    ));
    headers.push(("Content-Transfer-Encoding", "base64".to_string()));
    if disposition == Disposition::Inline {
        let id = match image_reference(source) {
            Some((_, id)) => id,
            None => content_id(&name),
        };
        headers.push(("Content-ID", format!("<{id}>")));
    }
    Ok(Node::leaf(headers, data, TransferEncoding::Base64))
}

/// The `charset` parameter (with its `; `) of a text/* file part whose content type does
/// not name one: `us-ascii` for ASCII content, `utf-8` for valid UTF-8. Content that is
/// neither gets no charset claim at all: Outbox cannot know which 8-bit charset it is in,
/// and a wrong claim would garble it, while a missing one leaves the reader's default.
fn text_charset(content_type: &str, data: &[u8]) -> &'static str {
    let lower = content_type.to_ascii_lowercase();
    if !lower.starts_with("text/") || lower.contains("charset=") {
        return "";
    }
    if data.is_ascii() {
        "; charset=us-ascii"
    } else if std::str::from_utf8(data).is_ok() {
        "; charset=utf-8"
    } else {
        ""
    }
}

/// The last component of a path, when it is valid text.
fn file_name(path: &Path) -> Option<String> {
    path.file_name().map(|n| n.to_string_lossy().into_owned())
}

/// A raw part: line ends made CRLF, a header block required, lines limited to 998 octets.
fn raw_node(field: &'static str, raw: &[u8]) -> Result<Node<'static>, ComposeError> {
    let raw = normalize_crlf(raw);
    let Some(blank) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Err(ComposeError::InvalidRawPart {
            field,
            reason: "has no blank line after its header",
        });
    };
    if raw[..blank].starts_with(b" ") || !raw[..blank].contains(&b':') {
        return Err(ComposeError::InvalidRawPart {
            field,
            reason: "does not start with header fields",
        });
    }
    // Long lines are fitted as in a raw message (quoted-printable, folding); only what
    // cannot be fitted is refused.
    let raw = match crate::long_lines::fit_part(&raw) {
        Ok(Cow::Borrowed(_)) => raw,
        Ok(Cow::Owned(fitted)) => fitted,
        Err(_) => {
            return Err(ComposeError::InvalidRawPart {
                field,
                reason: "has a line longer than 998 octets that cannot be folded or re-encoded",
            });
        }
    };
    Ok(Node::Raw(raw))
}

/// Checks `type/subtype[; parameters]` (RFC 2045 §5.1) and returns it trimmed.
pub(crate) fn validate_content_type<'a>(
    field: &'static str,
    value: &'a str,
) -> Result<&'a str, ComposeError> {
    let invalid = || ComposeError::InvalidContentType {
        field,
        value: value.to_string(),
    };
    if value.contains(['\r', '\n']) {
        return Err(ComposeError::HeaderInjection {
            field: field.to_string(),
        });
    }
    let value = value.trim();
    let essence = value.split(';').next().unwrap_or("").trim();
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?=".contains(&b))
    };
    match essence.split_once('/') {
        Some((kind, sub)) if token(kind) && token(sub) && value.is_ascii() => Ok(value),
        _ => Err(invalid()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn src_rewriting_matches_exact_values_only() {
        let html = r#"<img src="/a.gif"><img SRC='/a.gif'><img src="/a.gif2"><img data-src="/a.gif"><img src="cid:a.gif">"#;
        assert_eq!(
            rewrite_src(html, "/a.gif", "cid:a.gif"),
            r#"<img src="cid:a.gif"><img SRC='cid:a.gif'><img src="/a.gif2"><img data-src="/a.gif"><img src="cid:a.gif">"#
        );
        assert!(matches!(
            rewrite_src(html, "/b.gif", "cid:b"),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn content_ids_escape_what_a_msg_id_cannot_hold() {
        assert_eq!(content_id("apache_pb.gif"), "apache_pb.gif");
        assert_eq!(content_id("my pic.png"), "my%20pic.png");
        let long = content_id(&"é".repeat(100));
        assert_eq!(long.len(), 39 + 1 + 16, "{long}");
        assert!(long.starts_with("%C3%A9%C3%A9"));
        assert_eq!(long, content_id(&"é".repeat(100)));
        assert_ne!(long, content_id(&"é".repeat(101)));
    }

    #[test]
    fn content_types_are_checked() {
        assert!(validate_content_type("content_type", "text/enriched; charset=utf-8").is_ok());
        assert!(validate_content_type("content_type", "text").is_err());
        assert!(validate_content_type("content_type", "text/plain\r\nBcc: x").is_err());
    }
}
