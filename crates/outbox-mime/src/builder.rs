//! A consuming builder for Rust users: `EmailSpec::builder().from(..).to(..).build()`.

use std::path::PathBuf;

use crate::compose::{Message, compose};
use crate::encoding::TransferEncoding;
use crate::error::ComposeError;
use crate::part::Part;
use crate::spec::{EmailSpec, PartSource, Priority};

/// Builds an [`EmailSpec`] step by step; [`EmailBuilder::build`] validates and composes it.
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct EmailBuilder {
    spec: EmailSpec,
}

impl EmailSpec {
    /// A builder starting from an empty spec.
    pub fn builder() -> EmailBuilder {
        EmailBuilder::default()
    }
}

impl EmailBuilder {
    /// The author (`addr` or `Name <addr>`).
    pub fn from(mut self, from: impl Into<String>) -> Self {
        self.spec.from = from.into();
        self
    }

    /// Adds To recipients (one address or a comma-separated list).
    pub fn to(mut self, to: impl Into<String>) -> Self {
        self.spec.to.push(to.into());
        self
    }

    /// Adds Cc recipients.
    pub fn cc(mut self, cc: impl Into<String>) -> Self {
        self.spec.cc.push(cc.into());
        self
    }

    /// Adds Bcc recipients (envelope only).
    pub fn bcc(mut self, bcc: impl Into<String>) -> Self {
        self.spec.bcc.push(bcc.into());
        self
    }

    /// The subject.
    pub fn subject(mut self, subject: impl Into<String>) -> Self {
        self.spec.subject = subject.into();
        self
    }

    /// The text/plain body.
    pub fn text(mut self, text: impl Into<String>) -> Self {
        self.spec.text = Some(text.into());
        self
    }

    /// The text/html body.
    pub fn html(mut self, html: impl Into<String>) -> Self {
        self.spec.html = Some(html.into());
        self
    }

    /// An inline image from a file; `<img src>` equal to the path becomes `cid:FILE_NAME`.
    pub fn html_image(mut self, path: impl Into<PathBuf>) -> Self {
        self.spec.html_images.push(PartSource::path(path));
        self
    }

    /// An inline image from bytes; `<img src>` equal to `name` becomes `cid:NAME`.
    pub fn html_image_data(mut self, name: impl Into<String>, data: impl Into<Vec<u8>>) -> Self {
        self.spec.html_images.push(PartSource::data(name, data));
        self
    }

    /// An attachment from a file.
    pub fn attach(mut self, path: impl Into<PathBuf>) -> Self {
        self.spec.attachments.push(PartSource::path(path));
        self
    }

    /// An attachment from bytes.
    pub fn attach_data(mut self, name: impl Into<String>, data: impl Into<Vec<u8>>) -> Self {
        self.spec.attachments.push(PartSource::data(name, data));
        self
    }

    /// An image or attachment source of any kind.
    pub fn attachment(mut self, source: PartSource) -> Self {
        self.spec.attachments.push(source);
        self
    }

    /// A composed part (see [`crate::compose_part`]), nested unchanged (`addPart`).
    pub fn part(mut self, part: Part) -> Self {
        self.spec.attachments.push(part.into());
        self
    }

    /// A raw, already formatted MIME part, inserted unchanged (`addPart`).
    pub fn raw_part(mut self, mime: impl Into<Vec<u8>>) -> Self {
        self.spec.attachments.push(PartSource::Mime(mime.into()));
        self
    }

    /// A default merge value.
    pub fn token(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.spec.tokens.insert(name.into(), value.into());
        self
    }

    /// A merge value for one recipient.
    pub fn merge(
        mut self,
        address: impl Into<String>,
        name: impl Into<String>,
        value: impl Into<String>,
    ) -> Self {
        self.spec
            .merge
            .entry(address.into())
            .or_default()
            .insert(name.into(), value.into());
        self
    }

    /// The delivery priority.
    pub fn priority(mut self, priority: Priority) -> Self {
        self.spec.priority = priority;
        self
    }

    /// The Reply-To header.
    pub fn reply_to(mut self, reply_to: impl Into<String>) -> Self {
        self.spec.reply_to = Some(reply_to.into());
        self
    }

    /// The Sender header.
    pub fn sender(mut self, sender: impl Into<String>) -> Self {
        self.spec.sender = Some(sender.into());
        self
    }

    /// An extra header; order is kept.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.spec.headers.push((name.into(), value.into()));
        self
    }

    /// The charset of the text parts.
    pub fn charset(mut self, charset: impl Into<String>) -> Self {
        self.spec.charset = Some(charset.into());
        self
    }

    /// The transfer encoding of the text parts.
    pub fn transfer_encoding(mut self, encoding: TransferEncoding) -> Self {
        self.spec.transfer_encoding = Some(encoding);
        self
    }

    /// The Content-Type of a single-part message.
    pub fn content_type(mut self, content_type: impl Into<String>) -> Self {
        self.spec.content_type = Some(content_type.into());
        self
    }

    /// Not delivered before this time.
    pub fn send_at(mut self, at: time::OffsetDateTime) -> Self {
        self.spec.send_at = Some(at);
        self
    }

    /// A server spec to deliver through.
    pub fn relay(mut self, relay: impl Into<String>) -> Self {
        self.spec.relay = Some(relay.into());
        self
    }

    /// The mailing list the message belongs to (suppression list and unsubscribe links);
    /// default: the `from` address.
    pub fn list(mut self, list: impl Into<String>) -> Self {
        self.spec.list = Some(list.into());
        self
    }

    /// One-click unsubscribe headers per recipient (RFC 8058), written at delivery.
    pub fn list_unsubscribe(mut self, on: bool) -> Self {
        self.spec.list_unsubscribe = on;
        self
    }

    /// Headers only, no body.
    pub fn simple_form(mut self, yes: bool) -> Self {
        self.spec.simple_form = yes;
        self
    }

    /// Deliver at once, bypassing the queue.
    pub fn immediate(mut self, yes: bool) -> Self {
        self.spec.immediate = yes;
        self
    }

    /// The spec as built, unvalidated.
    pub fn into_spec(self) -> EmailSpec {
        self.spec
    }

    /// Validates and composes the message.
    pub fn build(self) -> Result<Message, ComposeError> {
        compose(&self.spec)
    }
}
