//! [`compose`]: an [`EmailSpec`] validated and written as a message (RFC 5322 + MIME), or
//! as a bare part with [`compose_part`].

use time::OffsetDateTime;
use time::format_description::well_known::Rfc2822;

use crate::address::{Address, parse_address_list};
use crate::body::{self, BodyOptions};
use crate::encoding::Charset;
use crate::error::ComposeError;
use crate::header;
use crate::merge::is_token_name;
use crate::part::{Boundaries, Node, Part, write_field};
use crate::spec::EmailSpec;

/// A composed message: its MIME bytes (merge markers still in place) and its envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    data: Vec<u8>,
    from: String,
    recipients: Vec<String>,
    message_id: String,
    smtputf8: bool,
}

impl Message {
    /// The MIME text: CRLF line ends, no line over 998 octets.
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// The MIME text, by value.
    pub fn into_data(self) -> Vec<u8> {
        self.data
    }

    /// The envelope sender: the `from` address (`local@domain`, domain in ASCII).
    pub fn from(&self) -> &str {
        &self.from
    }

    /// The envelope recipients: to, cc and bcc, in that order, each once.
    pub fn recipients(&self) -> &[String] {
        &self.recipients
    }

    /// The Message-ID, with its angle brackets.
    pub fn message_id(&self) -> &str {
        &self.message_id
    }

    /// True when an envelope address has a non-ASCII local part (RFC 6531 SMTPUTF8).
    pub fn needs_smtputf8(&self) -> bool {
        self.smtputf8
    }
}

/// What would otherwise make every composition different: the date, the Message-ID and the
/// multipart boundaries. Tests set them to get the same bytes every time.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct ComposeOptions {
    /// The Date header (default: now, in UTC).
    pub date: Option<OffsetDateTime>,
    /// The Message-ID, with or without angle brackets (default: `<ULID@domain of from>`).
    pub message_id: Option<String>,
    /// Seed of the multipart boundaries (default: random).
    pub boundary_seed: Option<u64>,
    /// The largest attachment or inline image file read from a `path`, in bytes (default:
    /// [`crate::DEFAULT_MAX_FILE_SIZE`]). A larger file is refused before it is read; the
    /// binary passes `delivery.max_message_size`.
    pub max_file_size: Option<u64>,
}

/// Validates `spec` and composes it (DESIGN §2, §3). Merge markers are left in place; see
/// [`crate::merge_message`].
pub fn compose(spec: &EmailSpec) -> Result<Message, ComposeError> {
    compose_with(spec, &ComposeOptions::default())
}

/// [`compose`] with a fixed date, Message-ID or boundary seed, or a file size limit.
pub fn compose_with(spec: &EmailSpec, options: &ComposeOptions) -> Result<Message, ComposeError> {
    if spec.from.trim().is_empty() {
        return Err(ComposeError::Missing { field: "from" });
    }
    let from = one_address("from", &spec.from)?;
    let to = addresses("to", &spec.to)?;
    let cc = addresses("cc", &spec.cc)?;
    let bcc = addresses("bcc", &spec.bcc)?;
    if to.is_empty() && cc.is_empty() && bcc.is_empty() {
        return Err(ComposeError::NoRecipients);
    }
    if spec.subject.trim().is_empty() {
        return Err(ComposeError::Missing { field: "subject" });
    }
    no_line_break("subject", &spec.subject)?;
    let reply_to = match &spec.reply_to {
        Some(list) => addresses("reply_to", std::slice::from_ref(list))?,
        None => vec![],
    };
    let sender = spec
        .sender
        .as_deref()
        .map(|s| one_address("sender", s))
        .transpose()?;
    validate_delivery_fields(spec)?;
    let extra = extra_headers(&spec.headers, spec.list_unsubscribe)?;
    let body_options = body_options(spec, options)?;
    let mut boundaries = Boundaries::new(options.boundary_seed.unwrap_or_else(rand::random));
    let body = if spec.simple_form {
        for (field, given) in [
            ("text", spec.text.is_some()),
            ("html", spec.html.is_some()),
            ("html_images", !spec.html_images.is_empty()),
            ("attachments", !spec.attachments.is_empty()),
        ] {
            if given {
                return Err(ComposeError::BodyWithSimpleForm { field });
            }
        }
        None
    } else {
        Some(body::build(spec, &body_options, &mut boundaries)?.ok_or(ComposeError::NoBody)?)
    };

    let date = match find_header(&extra, "Date") {
        Some(date) => header::unstructured("Date", date),
        None => {
            let now = options.date.unwrap_or_else(OffsetDateTime::now_utc);
            now.format(&Rfc2822).expect("a date in years 1900..9999")
        }
    };
    let message_id = match find_header(&extra, "Message-ID").or(options.message_id.as_deref()) {
        Some(id) if id.starts_with('<') => id.to_string(),
        Some(id) => format!("<{id}>"),
        None => format!("<{}@{}>", ulid::Ulid::new(), from.domain()),
    };

    let mut data = Vec::with_capacity(body.as_ref().map_or(0, Node::size_hint) + 1024);
    write_field(&mut data, "Date", &date);
    write_field(
        &mut data,
        "From",
        &header::mailbox_list("From", std::slice::from_ref(&from)),
    );
    if let Some(sender) = &sender {
        write_field(
            &mut data,
            "Sender",
            &header::mailbox_list("Sender", std::slice::from_ref(sender)),
        );
    }
    if !reply_to.is_empty() {
        write_field(
            &mut data,
            "Reply-To",
            &header::mailbox_list("Reply-To", &reply_to),
        );
    }
    if !to.is_empty() {
        write_field(&mut data, "To", &header::mailbox_list("To", &to));
    }
    if !cc.is_empty() {
        write_field(&mut data, "Cc", &header::mailbox_list("Cc", &cc));
    }
    write_field(
        &mut data,
        "Subject",
        &header::unstructured("Subject", &spec.subject),
    );
    write_field(&mut data, "Message-ID", &message_id);
    write_field(&mut data, "MIME-Version", "1.0");
    for (name, value) in &extra {
        if !name.eq_ignore_ascii_case("Date") && !name.eq_ignore_ascii_case("Message-ID") {
            write_field(&mut data, name, &header::unstructured(name, value));
        }
    }
    check_header_lines(&data)?;
    match &body {
        Some(node) => node.write(&mut data, true),
        None => data.extend_from_slice(b"\r\n"),
    }

    let mut recipients: Vec<String> = Vec::with_capacity(to.len() + cc.len() + bcc.len());
    let mut smtputf8 = from.needs_smtputf8();
    for address in to.iter().chain(&cc).chain(&bcc) {
        smtputf8 |= address.needs_smtputf8();
        let spec = address.addr_spec();
        if !recipients.iter().any(|r| r.eq_ignore_ascii_case(&spec)) {
            recipients.push(spec);
        }
    }
    Ok(Message {
        data,
        from: from.addr_spec(),
        recipients,
        message_id,
        smtputf8,
    })
}

/// Composes the body of `spec` as a bare MIME part: no From, To, Subject or Date (the
/// `email_compose` object created without addresses). Its extra `headers` go in the part's
/// header. Nest it with [`crate::PartSource::Mime`].
pub fn compose_part(spec: &EmailSpec) -> Result<Part, ComposeError> {
    compose_part_with(spec, &ComposeOptions::default())
}

/// [`compose_part`] with a fixed boundary seed or a file size limit.
pub fn compose_part_with(spec: &EmailSpec, options: &ComposeOptions) -> Result<Part, ComposeError> {
    let extra = extra_headers(&spec.headers, spec.list_unsubscribe)?;
    let body_options = body_options(spec, options)?;
    let mut boundaries = Boundaries::new(options.boundary_seed.unwrap_or_else(rand::random));
    let node = body::build(spec, &body_options, &mut boundaries)?.ok_or(ComposeError::NoBody)?;
    let mut head = Vec::new();
    for (name, value) in &extra {
        write_field(&mut head, name, &header::unstructured(name, value));
    }
    Ok(Part::from_node(&head, &node))
}

/// Charset, transfer encoding and content type, validated.
fn body_options<'a>(
    spec: &'a EmailSpec,
    options: &ComposeOptions,
) -> Result<BodyOptions<'a>, ComposeError> {
    let charset = match &spec.charset {
        Some(name) => name.parse::<Charset>()?,
        None => Charset::Utf8,
    };
    let content_type = spec
        .content_type
        .as_deref()
        .map(|ct| body::validate_content_type("content_type", ct))
        .transpose()?;
    Ok(BodyOptions {
        charset,
        transfer_encoding: spec.transfer_encoding,
        content_type,
        max_file_size: options
            .max_file_size
            .unwrap_or(crate::file::DEFAULT_MAX_FILE_SIZE),
    })
}

/// The fields composition does not use but a queue would: checked here so that a spec that
/// composes is also one that can be queued.
fn validate_delivery_fields(spec: &EmailSpec) -> Result<(), ComposeError> {
    for name in spec.tokens.keys() {
        if !is_token_name(name) {
            return Err(ComposeError::InvalidTokenName {
                field: "tokens",
                name: name.clone(),
            });
        }
    }
    for (address, values) in &spec.merge {
        one_address("merge", address)?;
        if let Some(name) = values.keys().find(|name| !is_token_name(name)) {
            return Err(ComposeError::InvalidTokenName {
                field: "merge",
                name: name.clone(),
            });
        }
    }
    if let Some(relay) = &spec.relay {
        no_line_break("relay", relay)?;
    }
    Ok(())
}

/// Refuses CR and LF in a value that becomes a header (header injection).
fn no_line_break(field: &str, value: &str) -> Result<(), ComposeError> {
    if value.contains(['\r', '\n']) {
        return Err(ComposeError::HeaderInjection {
            field: field.to_string(),
        });
    }
    Ok(())
}

/// Every item of a recipient field, each of which may be a comma-separated list.
fn addresses(field: &'static str, items: &[String]) -> Result<Vec<Address>, ComposeError> {
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        no_line_break(field, item)?;
        let parsed =
            parse_address_list(item).map_err(|error| ComposeError::Address { field, error })?;
        out.extend(parsed);
    }
    Ok(out)
}

/// A field that holds exactly one address.
fn one_address(field: &'static str, value: &str) -> Result<Address, ComposeError> {
    let mut list = addresses(field, &[value.to_string()])?;
    match list.len() {
        1 => Ok(list.remove(0)),
        0 => Err(ComposeError::Missing { field }),
        count => Err(ComposeError::NotOneAddress { field, count }),
    }
}

/// Header fields Outbox writes from spec fields, and those fields.
const RESERVED: &[(&str, &str)] = &[
    ("From", "from"),
    ("To", "to"),
    ("Cc", "cc"),
    ("Bcc", "bcc"),
    ("Subject", "subject"),
    ("Reply-To", "reply_to"),
    ("Sender", "sender"),
    ("MIME-Version", "content_type"),
    ("Content-Type", "content_type"),
    ("Content-Transfer-Encoding", "transfer_encoding"),
];

/// Extra headers checked: names are printable ASCII without `:` (RFC 5322 §2.2), values
/// hold no line break, and none replaces a header written from a spec field. `Date` and
/// `Message-ID` may be given: they replace the generated ones. With `list_unsubscribe`,
/// the two unsubscribe headers are Outbox's too (written per recipient at delivery).
fn extra_headers(
    headers: &[(String, String)],
    list_unsubscribe: bool,
) -> Result<Vec<(String, String)>, ComposeError> {
    let mut out = Vec::with_capacity(headers.len());
    for (name, value) in headers {
        let name = name.trim();
        if name.contains(['\r', '\n']) {
            return Err(ComposeError::HeaderInjection {
                field: format!("headers ({})", name.escape_debug()),
            });
        }
        // `Name: ` must leave room on the first line: a field name cannot be folded.
        if name.is_empty()
            || name.len() > 76
            || !name
                .bytes()
                .all(|b| (b'!'..=b'~').contains(&b) && b != b':')
        {
            return Err(ComposeError::InvalidHeaderName {
                name: name.to_string(),
            });
        }
        let unsubscribe = list_unsubscribe
            && ["List-Unsubscribe", "List-Unsubscribe-Post"]
                .iter()
                .any(|n| n.eq_ignore_ascii_case(name));
        if unsubscribe {
            return Err(ComposeError::ReservedHeader {
                name: name.to_string(),
                field: "list_unsubscribe",
            });
        }
        if let Some((_, field)) = RESERVED.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)) {
            return Err(ComposeError::ReservedHeader {
                name: name.to_string(),
                field,
            });
        }
        no_line_break(&format!("headers ({name})"), value)?;
        out.push((name.to_string(), value.trim().to_string()));
    }
    Ok(out)
}

/// Refuses a header block with a line over 998 octets. Folding keeps every value under 78
/// columns where it has a place to break; what is left is a value that has none (a long
/// Message-ID, given by the caller), named in the error.
fn check_header_lines(head: &[u8]) -> Result<(), ComposeError> {
    let mut field = "";
    for line in head.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if let Some(colon) = line.iter().position(|&b| b == b':')
            && !line.starts_with(b" ")
        {
            field = std::str::from_utf8(&line[..colon]).unwrap_or("headers");
        }
        if line.len() > 998 {
            return Err(ComposeError::HeaderTooLong {
                field: field.to_string(),
            });
        }
    }
    Ok(())
}

fn find_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}
