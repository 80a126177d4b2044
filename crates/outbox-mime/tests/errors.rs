//! Every kind of bad input is refused with an error that names the field (and the address
//! or path) at fault.

use outbox_mime::{ComposeError, EmailSpec, PartSource, compose};

fn valid() -> outbox_mime::EmailBuilder {
    EmailSpec::builder()
        .from("ann@example.com")
        .to("bob@example.com")
        .subject("Hi")
        .text("x")
}

/// Composes and returns the error, its field and its message.
fn refused(spec: EmailSpec) -> (ComposeError, String, String) {
    let err = compose(&spec).expect_err("should be refused");
    let field = err.field().to_string();
    let message = err.to_string();
    assert!(!message.contains('\n'), "one line: {message}");
    (err, field, message)
}

#[test]
fn invalid_addresses_name_field_and_address() {
    let (_, field, message) = refused(valid().to("bob@@example").into_spec());
    assert_eq!(field, "to");
    assert!(message.contains("bob@@example"), "{message}");
    let (_, field, _) = refused(valid().from("not an address").into_spec());
    assert_eq!(field, "from");
    let (_, field, _) = refused(valid().cc("a@b.test, <broken").into_spec());
    assert_eq!(field, "cc");
    let (_, field, _) = refused(valid().reply_to("x@").into_spec());
    assert_eq!(field, "reply_to");
    let (err, field, _) = refused(valid().sender("a@b.test, c@d.test").into_spec());
    assert_eq!(field, "sender");
    assert!(matches!(err, ComposeError::NotOneAddress { count: 2, .. }));
    let (_, field, _) = refused(valid().merge("nobody", "First", "x").into_spec());
    assert_eq!(field, "merge");
}

#[test]
fn missing_fields() {
    let mut spec = valid().into_spec();
    spec.from.clear();
    assert_eq!(refused(spec).1, "from");
    let mut spec = valid().into_spec();
    spec.subject.clear();
    assert_eq!(refused(spec).1, "subject");
    let mut spec = valid().into_spec();
    spec.to.clear();
    let (err, _, message) = refused(spec);
    assert!(matches!(err, ComposeError::NoRecipients), "{message}");
    let mut spec = valid().into_spec();
    spec.text = None;
    let (err, _, message) = refused(spec);
    assert!(matches!(err, ComposeError::NoBody), "{message}");
    // simple_form needs no body, and refuses one.
    let mut spec = valid().simple_form(true).into_spec();
    assert_eq!(refused(spec.clone()).1, "text");
    spec.text = None;
    assert!(compose(&spec).is_ok());
}

#[test]
fn unreadable_attachment_names_the_path() {
    let (_, field, message) = refused(valid().attach("/nonexistent/report.pdf").into_spec());
    assert_eq!(field, "attachments");
    assert!(message.contains("/nonexistent/report.pdf"), "{message}");
    let (_, field, _) = refused(
        valid()
            .html("<img src=x>")
            .into_spec()
            .tap(|s| s.html_images.push(PartSource::path("/nonexistent/x.png"))),
    );
    assert_eq!(field, "html_images");
}

#[test]
fn line_breaks_in_header_values_are_refused() {
    let cases = [
        (
            "subject",
            valid().subject("Hi\r\nBcc: victim@example.com").into_spec(),
        ),
        ("subject", valid().subject("Hi\nthere").into_spec()),
        (
            "to",
            valid().to("bob@example.com\r\nBcc: x@y.test").into_spec(),
        ),
        (
            "from",
            valid().from("Ann\r\n <ann@example.com>").into_spec(),
        ),
        (
            "headers (X-A)",
            valid().header("X-A", "v\r\nBcc: x@y.test").into_spec(),
        ),
        (
            "content_type",
            valid().content_type("text/plain\r\nX: y").into_spec(),
        ),
        ("relay", valid().relay("smtp://h\r\n").into_spec()),
    ];
    for (want, spec) in cases {
        let (err, field, message) = refused(spec);
        assert!(
            matches!(
                err,
                ComposeError::HeaderInjection { .. } | ComposeError::Address { .. }
            ),
            "{message}"
        );
        assert_eq!(field, want, "{message}");
    }
    let (err, _, _) = refused(valid().header("X-A\r\nBcc", "v").into_spec());
    assert!(matches!(err, ComposeError::HeaderInjection { .. }));
    let (err, _, _) = refused(valid().header("Bad Name", "v").into_spec());
    assert!(matches!(err, ComposeError::InvalidHeaderName { .. }));
    let (err, _, _) = refused(valid().header("subject", "v").into_spec());
    assert!(matches!(
        err,
        ComposeError::ReservedHeader {
            field: "subject",
            ..
        }
    ));
}

#[test]
fn unknown_charset_and_unfit_encodings() {
    let (_, field, message) = refused(valid().charset("klingon-8").into_spec());
    assert_eq!(field, "charset");
    assert!(message.contains("klingon-8"));
    let (_, field, _) = refused(valid().charset("us-ascii").text("é").into_spec());
    assert_eq!(field, "text");
    let (_, field, _) = refused(
        valid()
            .text("é")
            .transfer_encoding(outbox_mime::TransferEncoding::SevenBit)
            .into_spec(),
    );
    assert_eq!(field, "transfer_encoding");
    let (_, field, _) = refused(
        valid()
            .text("x".repeat(1200))
            .transfer_encoding(outbox_mime::TransferEncoding::EightBit)
            .into_spec(),
    );
    assert_eq!(field, "transfer_encoding");
    assert!("binary".parse::<outbox_mime::TransferEncoding>().is_err());
}

#[test]
fn content_type_and_parts() {
    assert_eq!(
        refused(valid().content_type("nonsense").into_spec()).1,
        "content_type"
    );
    let (err, _, _) = refused(valid().html("<p>").content_type("text/x").into_spec());
    assert!(matches!(err, ComposeError::ContentTypeOnMultipart));
    let (_, field, _) = refused(valid().raw_part(b"no header block".to_vec()).into_spec());
    assert_eq!(field, "attachments");
    let (_, field, _) = refused(valid().attach_data("", b"x".to_vec()).into_spec());
    assert_eq!(field, "attachments");
    let (_, field, _) = refused(valid().token("bad name", "x").into_spec());
    assert_eq!(field, "tokens");
}

#[test]
fn unknown_json_fields_are_refused() {
    let err = serde_json::from_str::<EmailSpec>(r#"{"from":"a@b.test","bodyy":"x"}"#).unwrap_err();
    assert!(err.to_string().contains("bodyy"));
    let err = serde_json::from_str::<EmailSpec>(r#"{"transfer_encoding":"binary"}"#).unwrap_err();
    assert!(err.to_string().contains("binary"));
    let err = serde_json::from_str::<EmailSpec>(r#"{"priority":"urgent"}"#).unwrap_err();
    assert!(err.to_string().contains("urgent"));
    let err = serde_json::from_str::<EmailSpec>(r#"{"send_at":"tomorrow"}"#).unwrap_err();
    assert!(
        err.to_string().contains("send_at") || err.to_string().contains("invalid"),
        "{err}"
    );
}

/// Lets a test adjust a spec inline.
trait Tap: Sized {
    fn tap(self, f: impl FnOnce(&mut Self)) -> Self;
}

impl Tap for EmailSpec {
    fn tap(mut self, f: impl FnOnce(&mut Self)) -> Self {
        f(&mut self);
        self
    }
}
