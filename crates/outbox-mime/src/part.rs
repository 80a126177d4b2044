//! The MIME tree: leaves (a text part, an attachment, an inline image), multiparts, and raw
//! parts inserted unchanged; and its serialisation with CRLF line ends (RFC 2046 §5.1.1).

use std::borrow::Cow;

use crate::encoding::{TransferEncoding, encode_body_into, end_single_part};

/// A node of the MIME tree being composed.
#[derive(Debug, Clone)]
pub(crate) enum Node<'a> {
    /// One body part: its header fields (values already encoded) and its content, encoded
    /// with `encoding` straight into the output when written (no intermediate copy; bytes
    /// given in the spec are borrowed, not cloned).
    Leaf {
        headers: Vec<(&'static str, String)>,
        body: Cow<'a, [u8]>,
        encoding: TransferEncoding,
    },
    /// `multipart/SUBTYPE` around its children.
    Multipart {
        subtype: &'static str,
        boundary: String,
        children: Vec<Node<'a>>,
    },
    /// A complete part (header, blank line, body), written as it is.
    Raw(Vec<u8>),
}

impl<'a> Node<'a> {
    /// A leaf whose `body` (raw content) will be encoded with `encoding`.
    pub(crate) fn leaf(
        headers: Vec<(&'static str, String)>,
        body: Cow<'a, [u8]>,
        encoding: TransferEncoding,
    ) -> Node<'a> {
        Node::Leaf {
            headers,
            body,
            encoding,
        }
    }

    /// True when `needle` appears in this node's written form. Base64 and quoted-printable
    /// bodies cannot hold the `=_` that every boundary starts with, so only 7bit, 8bit and raw
    /// parts are searched.
    fn contains(&self, needle: &[u8]) -> bool {
        let find = |hay: &[u8]| hay.windows(needle.len()).any(|w| w == needle);
        match self {
            Node::Leaf { body, encoding, .. } => match encoding {
                TransferEncoding::SevenBit | TransferEncoding::EightBit => find(body),
                _ => false,
            },
            Node::Multipart { children, .. } => children.iter().any(|c| c.contains(needle)),
            Node::Raw(raw) => find(raw),
        }
    }

    /// True when this node's written form may hold a boundary of ours: a 7bit, 8bit or raw
    /// part that contains the `=_outbox_` prefix. A cheap scan, so the exact search of
    /// [`Node::contains`] runs only in the rare case where it can find something.
    fn mentions_boundary(&self) -> bool {
        let scan = |hay: &[u8]| match std::str::from_utf8(hay) {
            Ok(text) => text.contains(BOUNDARY_PREFIX),
            Err(_) => hay
                .iter()
                .enumerate()
                .any(|(i, &b)| b == b'=' && hay[i..].starts_with(BOUNDARY_PREFIX.as_bytes())),
        };
        match self {
            Node::Leaf { body, encoding, .. } => match encoding {
                TransferEncoding::SevenBit | TransferEncoding::EightBit => scan(body),
                _ => false,
            },
            Node::Multipart { children, .. } => children.iter().any(Node::mentions_boundary),
            Node::Raw(raw) => scan(raw),
        }
    }

    /// A rough size of the written form, to reserve the output buffer once.
    pub(crate) fn size_hint(&self) -> usize {
        match self {
            Node::Leaf { headers, body, .. } => {
                body.len()
                    + headers
                        .iter()
                        .map(|(n, v)| n.len() + v.len() + 4)
                        .sum::<usize>()
            }
            Node::Multipart { children, .. } => {
                children.iter().map(|c| c.size_hint() + 64).sum::<usize>() + 128
            }
            Node::Raw(raw) => raw.len(),
        }
    }

    /// Writes the node's header fields (not the blank line) then, after the blank line,
    /// its body. `top` marks the message body itself, which must end with CRLF.
    pub(crate) fn write(&self, out: &mut Vec<u8>, top: bool) {
        match self {
            Node::Leaf {
                headers,
                body,
                encoding,
            } => {
                for (name, value) in headers {
                    write_field(out, name, value);
                }
                out.extend_from_slice(b"\r\n");
                encode_body_into(body, *encoding, out);
                if top {
                    end_single_part(out, *encoding);
                }
            }
            Node::Multipart {
                subtype,
                boundary,
                children,
            } => {
                let value = format!("multipart/{subtype};\r\n boundary=\"{boundary}\"");
                write_field(out, "Content-Type", &value);
                out.extend_from_slice(b"\r\n");
                for child in children {
                    out.extend_from_slice(b"--");
                    out.extend_from_slice(boundary.as_bytes());
                    out.extend_from_slice(b"\r\n");
                    child.write(out, false);
                    // This CRLF belongs to the next delimiter (RFC 2046 §5.1.1).
                    out.extend_from_slice(b"\r\n");
                }
                out.extend_from_slice(b"--");
                out.extend_from_slice(boundary.as_bytes());
                out.extend_from_slice(b"--\r\n");
            }
            Node::Raw(raw) => {
                out.extend_from_slice(raw);
                if top && !raw.ends_with(b"\r\n") {
                    out.extend_from_slice(b"\r\n");
                }
            }
        }
    }
}

/// Writes `Name: value` CRLF. Values are already encoded; they are folded here
/// ([`crate::header::fold`]) wherever a line would pass 78 characters.
pub(crate) fn write_field(out: &mut Vec<u8>, name: &str, value: &str) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(crate::header::fold(name.len() + 2, value).as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// What every boundary starts with.
const BOUNDARY_PREFIX: &str = "=_outbox_";

/// Hands out multipart boundaries: `=_outbox_SEED_N`. `=_` cannot occur in base64 or
/// quoted-printable text (RFC 2045 §6.7), and 7bit, 8bit and raw parts are checked.
#[derive(Debug)]
pub(crate) struct Boundaries {
    seed: u64,
    next: u32,
}

impl Boundaries {
    pub(crate) fn new(seed: u64) -> Self {
        Boundaries { seed, next: 0 }
    }

    /// A multipart node whose boundary occurs in none of its children.
    pub(crate) fn multipart<'a>(
        &mut self,
        subtype: &'static str,
        children: Vec<Node<'a>>,
    ) -> Node<'a> {
        let check = children.iter().any(Node::mentions_boundary);
        loop {
            let boundary = format!("{BOUNDARY_PREFIX}{:016x}_{}", self.seed, self.next);
            self.next += 1;
            let delimiter = format!("--{boundary}");
            if !check || !children.iter().any(|c| c.contains(delimiter.as_bytes())) {
                return Node::Multipart {
                    subtype,
                    boundary,
                    children,
                };
            }
        }
    }
}

/// A composed MIME part without message headers (no From, To, Subject, Date): the
/// `email_compose` object created without addresses. Nest it in another message with
/// [`crate::PartSource::Mime`] (or `From<Part>`), or take its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    bytes: Vec<u8>,
}

impl Part {
    /// `head` holds extra header fields (already written), placed before the node's own.
    pub(crate) fn from_node(head: &[u8], node: &Node<'_>) -> Part {
        let mut bytes = Vec::with_capacity(head.len() + node.size_hint());
        bytes.extend_from_slice(head);
        node.write(&mut bytes, false);
        Part { bytes }
    }

    /// The part's MIME text: header fields, blank line, body.
    pub fn data(&self) -> &[u8] {
        &self.bytes
    }

    /// The part's MIME text, by value.
    pub fn into_data(self) -> Vec<u8> {
        self.bytes
    }
}

impl From<Part> for crate::PartSource {
    fn from(part: Part) -> Self {
        crate::PartSource::Mime(part.bytes)
    }
}
